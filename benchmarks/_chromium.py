"""Headless Chromium over the DevTools protocol: open a bokeh map, time its first paint, hover a point.

Shared by tests/test_browser.py and benchmarks/_scale_map.py (one copy). websocket-client is already a Jupyter
dependency, so no selenium or playwright is needed; CI installs Debian's `chromium`.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
TIMEOUT = 30.0  # seconds for any single wait (browser start, page load, a tooltip)
# No GPU here: --disable-gpu, and WebGL in software (SwiftShader), which newer Chromium only enables on request.
FLAGS = ("--disable-gpu", "--enable-unsafe-swiftshader")


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome binary ($EMBEDLAB_CHROMIUM first), or None."""
    explicit = os.environ.get("EMBEDLAB_CHROMIUM")
    if explicit:
        return explicit
    return next((path for path in map(shutil.which, CHROMIUM_NAMES) if path), None)


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


def _command(profile: Path, extra: tuple[str, ...]) -> list[str]:
    """Chromium's command line: headless, its own profile, nothing phoning home, a fixed window."""
    binary = find_chromium()
    if binary is None:
        raise RuntimeError("headless chromium not installed (apt-get install chromium)")
    quiet = ("--disable-background-networking", "--disable-component-update", "--disable-sync", "--mute-audio")
    return [
        binary,
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-extensions",
        *quiet,
        *extra,
        "--remote-debugging-port=0",
        "--remote-allow-origins=*",
        f"--user-data-dir={profile}",
        "--window-size=1200,900",
        "about:blank",
    ]


def _page_client(profile: Path) -> DevTools:
    """Connect to the page target of the browser that writes its DevTools port into `profile`."""
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
    return client


@contextlib.contextmanager
def chromium(profile: Path | None = None) -> Iterator[DevTools]:
    """A fresh headless Chromium (own profile, a temporary one by default) and a DevTools client of its page;
    killed afterwards."""
    with contextlib.ExitStack() as stack:
        if profile is None:
            profile = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="embedlab-chromium-")))
        process = subprocess.Popen(
            _command(profile, FLAGS), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        client = None
        try:
            client = _page_client(profile)
            yield client
        finally:
            if client is not None:
                client.close()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # chromium's own session: the browser and its helpers
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

# Rendered: bokeh has laid the plot out and every view reports its drawing finished.
PLOT_READY = (
    "typeof Bokeh !== 'undefined' && Object.values(Bokeh.index).length > 0 && "
    "Object.values(Bokeh.index)[0].frame.bbox.width > 100 && Object.values(Bokeh.index)[0].has_finished()"
)

WEBGL_IN_USE = "(v => v.webgl != null && v.webgl.regl_wrapper.has_webgl)(Object.values(Bokeh.index)[0].canvas_view)"


def open_page(devtools: DevTools, html: Path, timeout: float = TIMEOUT) -> dict[str, Any]:
    """Load the page, wait until bokeh has drawn the plot; return the frame geometry and `first_paint_ms`
    (from the start of navigation until the plot was drawn, on the page's own clock)."""
    devtools.send("Page.navigate", url=html.resolve().as_uri())
    wait_for(lambda: devtools.evaluate(PLOT_READY), "bokeh to render the plot", timeout=timeout, interval=0.05)
    geometry = devtools.evaluate(PLOT_GEOMETRY)
    geometry["first_paint_ms"] = devtools.evaluate("performance.now()")
    return geometry


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


# The visible tooltip: its thumbnail (inline data URI or linked file), text, whether the image loaded, and
# traces of injected markup (an <img src=x> element, or its onerror having run).
TOOLTIP_STATE = (
    DEEP_ALL
    + """
(() => {
  const thumb = img => img.src.startsWith('data:image/') || img.src.includes('/thumbs/');
  const images = deepAll('img').filter(img => thumb(img) && img.offsetParent !== null);
  const text = images.map(img => img.parentElement.textContent).join(' | ');
  return {images: images.length, text: text, src: images.length ? images[0].src : '',
          natural_width: images.length && images[0].complete ? images[0].naturalWidth : 0,
          bogus: deepAll('img').filter(img => img.getAttribute('src') === 'x').length,
          xss: typeof window.__xss};
})()
"""
)


def hover(devtools: DevTools, position: tuple[float, float], expected_text: str, timeout: float = TIMEOUT) -> dict:
    """Move the mouse onto `position`, wait until a tooltip showing `expected_text` is visible; return its state
    with `hover_ms`, the wall time from the mouse move until then (polled every 20 ms)."""
    devtools.send("Input.dispatchMouseEvent", type="mouseMoved", x=1, y=1)  # off the plot: reset any tooltip
    start = time.perf_counter()
    devtools.send("Input.dispatchMouseEvent", type="mouseMoved", x=position[0], y=position[1])

    def shown() -> dict[str, Any] | None:
        state = devtools.evaluate(TOOLTIP_STATE)
        return state if state["images"] and expected_text in state["text"] else None

    state = wait_for(shown, f"a tooltip containing {expected_text!r}", timeout=timeout, interval=0.02)
    state["hover_ms"] = (time.perf_counter() - start) * 1000
    return state
