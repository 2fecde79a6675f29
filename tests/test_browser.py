"""The interactive HTML in a real browser: points are drawn, hover shows thumbnail + filename, filenames never run.

Headless Chromium driven over the Chrome DevTools Protocol (websocket-client, already a Jupyter dependency), so
no selenium/playwright is needed. CI installs Debian's `chromium`; without it this test skips and says why.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
EVIL_NAME = "<img src=x onerror=window.__xss=1>.png"
TIMEOUT = 30.0  # seconds for any single wait (browser start, page load, a tooltip)


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome binary ($EMBEDLAB_CHROMIUM first), or None."""
    explicit = os.environ.get("EMBEDLAB_CHROMIUM")
    if explicit:
        return explicit
    return next((path for path in map(shutil.which, CHROMIUM_NAMES) if path), None)


pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        find_chromium() is None, reason="headless chromium not installed (apt-get install chromium; CI installs it)"
    ),
]


def wait_for(check: Callable[[], Any], what: str, timeout: float = TIMEOUT, interval: float = 0.1) -> Any:
    """Poll `check` until it returns something truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


class DevTools:
    """A minimal Chrome DevTools Protocol client for one page (commands in, results and events out)."""

    def __init__(self, websocket_url: str) -> None:
        import websocket

        self.socket = websocket.create_connection(websocket_url, timeout=TIMEOUT, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        """Run one CDP command and return its result (events that arrive meanwhile are kept)."""
        self.next_id += 1
        self.socket.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            message = json.loads(self.socket.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise AssertionError(f"{method} failed: {message['error']}")
                return message.get("result", {})
            self.events.append(message)
        raise AssertionError(f"timed out waiting for the reply to {method}")

    def evaluate(self, expression: str) -> Any:
        """Evaluate JavaScript in the page (awaiting promises) and return its JSON value."""
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"JavaScript error: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self) -> Any:
        """The viewport as a PIL image."""
        from PIL import Image

        data = self.send("Page.captureScreenshot", format="png")["data"]
        return Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB")

    def close(self) -> None:
        """Close the websocket."""
        self.socket.close()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[DevTools]:
    """A fresh headless Chromium (own profile in tmp_path) and a DevTools client of its page; killed afterwards."""
    profile = tmp_path / "profile"
    command = [
        find_chromium(),
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--mute-audio",
        "--remote-debugging-port=0",
        "--remote-allow-origins=*",
        f"--user-data-dir={profile}",
        "--window-size=1200,900",
        "about:blank",
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    client = None
    try:
        port_file = profile / "DevToolsActivePort"
        port = wait_for(
            lambda: port_file.is_file() and port_file.read_text().split("\n")[0].strip(),
            "chromium to open its DevTools port",
        )

        def page_target() -> str | None:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as response:
                targets = json.load(response)
            return next((t["webSocketDebuggerUrl"] for t in targets if t.get("type") == "page"), None)

        client = DevTools(wait_for(page_target, "chromium's page target"))
        client.send("Page.enable")
        client.send("Runtime.enable")
        client.send("Emulation.setDeviceMetricsOverride", width=1200, height=900, deviceScaleFactor=1, mobile=False)
        yield client
    finally:
        if client is not None:
            client.close()
        try:
            os.killpg(process.pid, signal.SIGKILL)  # chromium's own session: the browser and its helpers
        except ProcessLookupError:
            pass
        process.wait(timeout=TIMEOUT)


# JavaScript helpers: bokeh draws inside shadow roots, so searches must walk them.
DEEP_ALL = """
function deepAll(selector, root = document) {
  const found = [...root.querySelectorAll(selector)];
  for (const el of root.querySelectorAll('*')) {
    if (el.shadowRoot) found.push(...deepAll(selector, el.shadowRoot));
  }
  return found;
}
"""

PLOT_GEOMETRY = (
    DEEP_ALL
    + """
(() => {
  const view = Object.values(Bokeh.index)[0];
  const frame = view.frame;
  const canvas = deepAll('canvas').map(c => c.getBoundingClientRect()).find(r => r.width > 100);
  const bbox = frame.bbox;
  return {left: canvas.left + bbox.left, top: canvas.top + bbox.top, width: bbox.width, height: bbox.height,
          canvas_left: canvas.left, canvas_top: canvas.top};
})()
"""
)


def point_position(devtools: DevTools, x: float, y: float) -> tuple[float, float]:
    """Viewport pixel of data point (x, y): the frame's own scales plus the canvas offset."""
    return tuple(
        devtools.evaluate(
            DEEP_ALL
            + f"""
(() => {{
  const view = Object.values(Bokeh.index)[0];
  const canvas = deepAll('canvas').map(c => c.getBoundingClientRect()).find(r => r.width > 100);
  return [canvas.left + view.frame.x_scale.compute({x}), canvas.top + view.frame.y_scale.compute({y})];
}})()"""
        )
    )


TOOLTIP_STATE = (
    DEEP_ALL
    + """
(() => {
  const images = deepAll('img').filter(img => img.src.startsWith('data:image/') && img.offsetParent !== null);
  const box = images.length ? images[0].parentElement : null;
  return {images: images.length, text: box ? box.textContent : '', src: images.length ? images[0].src : '',
          bogus: deepAll('img').filter(img => img.getAttribute('src') === 'x').length,
          xss: typeof window.__xss};
})()
"""
)


def hover(devtools: DevTools, position: tuple[float, float], expected_text: str) -> dict[str, Any]:
    """Move the mouse onto `position` and wait until a tooltip showing `expected_text` is visible."""
    devtools.send("Input.dispatchMouseEvent", type="mouseMoved", x=1, y=1)  # off the plot: reset any tooltip
    devtools.send("Input.dispatchMouseEvent", type="mouseMoved", x=position[0], y=position[1])

    def shown() -> dict[str, Any] | None:
        state = devtools.evaluate(TOOLTIP_STATE)
        return state if state["images"] and expected_text in state["text"] else None

    return wait_for(shown, f"a tooltip containing {expected_text!r}")


@pytest.fixture
def scatter_html(tmp_path: Path) -> tuple[Path, np.ndarray, list[str]]:
    """An interactive_scatter page of 7 images in 3 classes, one file named like an HTML injection."""
    from PIL import Image

    from embedlab import plotting

    root = tmp_path / "images"
    filenames = [
        "cats/a.png",
        "cats/b.png",
        "dogs/c.png",
        "dogs/d.png",
        "dogs/e.png",
        "birds/f.png",
        f"birds/{EVIL_NAME}",
    ]
    colors = [(200, 40, 40), (220, 80, 60), (40, 160, 40), (60, 200, 90), (20, 120, 20), (40, 40, 200), (240, 200, 0)]
    for name, color in zip(filenames, colors):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (24, 24), color).save(root / name)
    assert (root / "birds" / EVIL_NAME).is_file()
    points = np.array([[0, 0], [1, 0], [0, 1], [1, 1], [0.5, 0.5], [0.2, 0.8], [0.8, 0.2]], dtype=float)
    labels = [1, 1, 2, 2, 2, 0, 0]
    out = plotting.interactive_scatter(
        points, filenames, labels, ["birds", "cats", "dogs"], root, tmp_path / "scatter.html", title="browser test"
    )
    return out, points, filenames


def open_page(devtools: DevTools, html: Path) -> dict[str, Any]:
    """Load the page, wait until bokeh has laid out the plot, return the plot frame geometry."""
    devtools.send("Page.navigate", url=html.resolve().as_uri())
    ready = (
        "typeof Bokeh !== 'undefined' && Object.values(Bokeh.index).length > 0 && "
        "Object.values(Bokeh.index)[0].frame.bbox.width > 100"
    )
    wait_for(lambda: devtools.evaluate(ready), "bokeh to render the plot")
    return devtools.evaluate(PLOT_GEOMETRY)


def test_points_are_drawn_and_hover_shows_thumbnail_and_filename(browser, scatter_html):
    html, points, _ = scatter_html
    frame = open_page(browser, html)
    assert frame["width"] > 300 and frame["height"] > 300

    def coloured_pixels() -> int:
        """Saturated pixels inside the plot frame (inset past its grey outline): only the dots are coloured."""
        shot = np.asarray(browser.screenshot(), dtype=int)
        top, left = int(frame["top"]) + 3, int(frame["left"]) + 3
        area = shot[top : int(frame["top"] + frame["height"]) - 3, left : int(frame["left"] + frame["width"]) - 3]
        return int((area.max(axis=2) - area.min(axis=2) > 60).sum())

    drawn = wait_for(lambda: coloured_pixels() > 7 * 15, "the points to be drawn")  # 7 dots, ~29 px each
    assert drawn < 7 * 200  # dots, not a filled canvas

    assert browser.evaluate(TOOLTIP_STATE)["images"] == 0  # no tooltip before hovering
    state = hover(browser, point_position(browser, *points[2]), "dogs/c.png")
    assert state["src"].startswith("data:image/jpeg;base64,")
    assert "dogs" in state["text"]


def test_html_in_a_filename_is_shown_as_text_and_never_runs(browser, scatter_html):
    html, points, _ = scatter_html
    open_page(browser, html)
    state = hover(browser, point_position(browser, *points[6]), "birds/")
    assert f"birds/{EVIL_NAME}" in state["text"], state["text"]  # the literal markup, as text
    assert state["bogus"] == 0  # no <img src=x> element was created
    assert state["xss"] == "undefined"  # and its onerror never ran
    time.sleep(0.3)  # give a late error handler a chance to fire before the final check
    assert browser.evaluate("typeof window.__xss") == "undefined"


def test_the_inline_map_draws_and_hovers_like_the_page(browser, scatter_html, tmp_path):
    """show_map's notebook output (bokeh inline, no iframe) renders and shows thumbnails on hover in Chromium."""
    from embedlab import plotting

    _, points, filenames = scatter_html
    shown = plotting.show_map(
        points, filenames, [1, 1, 2, 2, 2, 0, 0], ["birds", "cats", "dogs"], tmp_path / "images", title="inline"
    )
    page = tmp_path / "notebook_output.html"  # what a notebook front end puts into the page: the output as is
    page.write_text(f"<!doctype html><html><head></head><body>{shown._repr_html_()}</body></html>", encoding="utf-8")
    open_page(browser, page)
    state = hover(browser, point_position(browser, *points[2]), "dogs/c.png")
    assert state["src"].startswith("data:image/jpeg;base64,") and state["xss"] == "undefined"
