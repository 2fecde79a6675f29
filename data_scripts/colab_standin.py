#!/usr/bin/env python
"""A stand-in for a fresh Colab runtime: Colab's Python minor version with Colab's pinned packages, where every
notebook runs alone through its own setup cell, with a fake `google.colab` so the Google Drive branch is taken.

    sudo python data_scripts/colab_standin.py --wheel dist/embedlab-0.1.0-py3-none-any.whl --report standin.json

What it does (as root, with Debian's debootstrap and access to deb.debian.org and PyPI):
1. Builds a Debian trixie root with Python 3.13 (Colab's minor version; Colab's own Ubuntu 22.04 ships no 3.13).
2. Makes a venv there and installs, at Colab's versions (data_scripts/colab_pip_freeze.txt), every Colab package
   that embedlab and the notebook runner need. PyPI's torch 2.11.0 stands in for Colab's 2.11.0+cpu (same release,
   a CUDA build that runs on the CPU).
3. Runs notebooks 00-06 one by one with their test settings, each in an emptied /content with an emptied Drive; the
   first setup cell really runs `%pip install "embedlab @ ..."` (pointed at the wheel), the later ones find it done.
4. Reports Colab packages that changed (must be none), what the install added, and each notebook's result; exit 1
   when anything failed or changed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PINS = REPO / "data_scripts" / "colab_pip_freeze.txt"
RUNNER = REPO / "data_scripts" / "run_notebook_alone.py"
COLAB_PYTHON = "3.13"  # backend-info's os-info.txt: Python 3.13.15
DEBIAN_SUITE = "trixie"  # the Debian release whose python3 is 3.13
MIRROR = "http://deb.debian.org/debian"
RUNNER_PACKAGES = ("ipykernel", "nbclient", "nbformat")  # Colab has these; the notebook runner needs them
# The CUDA libraries of PyPI's torch build are the stand-in's, not Colab's (its torch is the +cpu build): not pinned.
CUDA_BUILD_PARTS = re.compile(r"^(nvidia-|cuda-|triton$)")
STEP_TIMEOUT_S = 1800

FAKE_COLAB = {
    "colab/google/colab/__init__.py": '"""A stand-in for Colab\'s google.colab (only what the notebooks use)."""\n',
    "colab/google/colab/drive.py": (
        '"""drive.mount as Colab does it, minus Google: the mount point gets a MyDrive folder."""\n'
        "import os\n\n\n"
        "def mount(mountpoint, force_remount=False, timeout_ms=120000, readonly=False):\n"
        '    os.makedirs(os.path.join(mountpoint, "MyDrive"), exist_ok=True)\n'
        '    print(f"Mounted at {mountpoint}")\n'
    ),
    # Colab's kernel has google.colab imported before the first cell runs
    "root/.ipython/profile_default/startup/00-google-colab.py": (
        'import sys\nsys.path.insert(0, "/colab")\nimport google.colab  # noqa: E402,F401\n'
    ),
}


def colab_pins(path: Path = PINS) -> dict[str, str]:
    """{normalized name: version} of Colab's freeze; a wheel URL's version without its local tag (+cpu)."""
    pins: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if exact := re.match(r"([A-Za-z0-9_.-]+)==([^\s;]+)$", line.strip()):
            pins[normalize(exact[1])] = exact[2]
        elif url := re.match(r"([A-Za-z0-9_.-]+) @ https://\S+/[^/-]+-([0-9][^-%+]*)(?:%2B|\+)?[^-]*-", line):
            pins[normalize(url[1])] = url[2]
    return pins


def normalize(name: str) -> str:
    """A distribution name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


# ------------------------------------------------------------------------------------------------- the root
def build_root(root: Path) -> None:
    """A minimal Debian root with Colab's Python minor version and its venv module (skipped when already built)."""
    if (root / "usr" / "bin" / f"python{COLAB_PYTHON}").exists():
        return
    include = f"python{COLAB_PYTHON},python{COLAB_PYTHON}-venv,ca-certificates"
    run(["debootstrap", "--variant=minbase", f"--include={include}", DEBIAN_SUITE, str(root), MIRROR])


@contextlib.contextmanager
def entered(root: Path) -> Iterator[None]:
    """The host's DNS, hosts and CA bundle copied in; /proc and a private /dev/pts (IPython's `%pip` runs pip in a
    pseudo-terminal) mounted while inside, unmounted after."""
    for name in ("etc/resolv.conf", "etc/hosts", "etc/ssl/certs/ca-certificates.crt"):
        shutil.copy2(Path("/") / name, root / name)
    mounts = [
        (["-t", "proc", "proc"], root / "proc"),
        (["-t", "devpts", "-o", "newinstance,ptmxmode=0666", "devpts"], root / "dev" / "pts"),
    ]
    try:
        for options, point in mounts:
            run(["mount", *options, str(point)])
        yield
    finally:
        for _, point in reversed(mounts):
            subprocess.run(["umount", "-l", str(point)], check=False, capture_output=True)


def mounted_under(root: Path) -> list[str]:
    """Mount points inside root (never delete a root that still has any)."""
    prefix = str(root.resolve()) + "/"
    return [
        line.split()[1] for line in Path("/proc/mounts").read_text().splitlines() if line.split()[1].startswith(prefix)
    ]


def run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run a command; on failure exit with its last output lines."""
    done = subprocess.run(command, capture_output=True, text=True, timeout=STEP_TIMEOUT_S, **kwargs)
    if done.returncode != 0:
        raise SystemExit(f"failed: {' '.join(command)[:300]}\n{(done.stdout + done.stderr)[-4000:]}")
    return done


def chrooted(root: Path, *command: str) -> list[str]:
    """`command` inside the root with a clean environment, as a fresh runtime has."""
    env = ["HOME=/root", "PATH=/venv/bin:/usr/bin:/bin", "LANG=C.UTF-8", "PIP_DISABLE_PIP_VERSION_CHECK=1"]
    return ["chroot", str(root), "/usr/bin/env", "-i", *env, *command]


def in_root(root: Path, *command: str) -> subprocess.CompletedProcess[str]:
    """Run a command inside the root; exit on failure."""
    return run(chrooted(root, *command))


# ---------------------------------------------------------------------------------------------- the packages
def install_colab_packages(root: Path, wheel: str, pins: dict[str, str]) -> dict[str, str]:
    """Install, at Colab's versions, each Colab package that embedlab or the runner would pull in; returns them."""
    in_root(root, f"python{COLAB_PYTHON}", "-m", "venv", "--clear", "/venv")  # a fresh runtime, also on reuse
    in_root(root, "pip", "install", "--quiet", "--dry-run", "--report", "/tmp/closure.json", wheel, *RUNNER_PACKAGES)
    closure = json.loads((root / "tmp" / "closure.json").read_text())["install"]
    wanted = {normalize(item["metadata"]["name"]) for item in closure} & set(pins)
    wanted = {name for name in wanted if not CUDA_BUILD_PARTS.match(name)}
    chosen = {name: pins[name] for name in sorted(wanted)}
    in_root(root, "pip", "install", "--quiet", *(f"{name}=={version}" for name, version in chosen.items()))
    return chosen


def installed(root: Path) -> dict[str, str]:
    """{normalized name: version} of everything in the root's venv."""
    listing = json.loads(in_root(root, "pip", "list", "--format=json").stdout)
    return {normalize(item["name"]): item["version"] for item in listing}


def write_fake_colab(root: Path) -> None:
    """google.colab with drive.mount, imported at kernel start as on Colab."""
    for relative, text in FAKE_COLAB.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


# --------------------------------------------------------------------------------------------- the notebooks
def install_source() -> str:
    """The address the setup cells install from (pyproject's Repository URL at the release tag `v<version>`)."""
    text = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    url = re.search(r'^Repository = "([^"]+)"', text, re.M)[1].rstrip("/")
    version = re.search(r'^version = "([^"]+)"', text, re.M)[1]
    return f"git+{url}@v{version}"


def run_dir_of(notebook: Path) -> str:
    """The run_dir of the notebook's test settings (its nbmake mock), which the Drive branch puts on Drive."""
    sys.path.insert(0, str(RUNNER.parent))
    from run_notebook_alone import parameters_mock

    return str(parameters_mock(json.loads(notebook.read_text(encoding="utf-8")))[1]["run_dir"])


def run_notebook(root: Path, notebook: Path, wheel_url: str) -> dict[str, Any]:
    """One notebook alone: /content and the Drive emptied, then executed by the runner inside the root."""
    content = root / "content"
    if content.exists():
        shutil.rmtree(content)
    (root / "work").mkdir(exist_ok=True)
    shutil.copy2(notebook, root / "work" / notebook.name)
    start = time.perf_counter()
    command = ["python", f"/work/{RUNNER.name}", f"/work/{notebook.name}", "--cwd", "/content"]
    install = ["--install-from", install_source(), "--install-to", wheel_url]
    done = subprocess.run(chrooted(root, *command, *install), capture_output=True, text=True, timeout=STEP_TIMEOUT_S)
    run_dir = root / "content" / "drive" / "MyDrive" / "embedlab" / run_dir_of(notebook)
    return {
        "notebook": notebook.name,
        "ok": done.returncode == 0,
        "seconds": round(time.perf_counter() - start, 1),
        "drive_used": run_dir.is_dir() and any(path.is_file() for path in run_dir.rglob("*")),
        "tail": (done.stdout + done.stderr)[-3000:] if done.returncode else done.stdout.strip()[-300:],
    }


def stand_in(root: Path, wheel: Path, notebooks: list[Path]) -> dict[str, Any]:
    """Build, install, run; the report as a dict."""
    build_root(root)
    (root / "wheels").mkdir(exist_ok=True)
    shutil.copy2(wheel, root / "wheels" / wheel.name)
    (root / "work").mkdir(exist_ok=True)
    shutil.copy2(RUNNER, root / "work" / RUNNER.name)
    wheel_url = f"file:///wheels/{wheel.name}"
    pins = colab_pins()
    with entered(root):
        python = in_root(root, f"python{COLAB_PYTHON}", "--version").stdout.strip()
        chosen = install_colab_packages(root, f"/wheels/{wheel.name}", pins)
        before = installed(root)
        write_fake_colab(root)
        results = [run_notebook(root, path, wheel_url) for path in notebooks]
        after = installed(root)
    changed = {n: f"{v} -> {after.get(n, 'removed')}" for n, v in before.items() if n in chosen and after.get(n) != v}
    return {
        "python": python,
        "colab_packages": chosen,
        "changed": changed,
        "added": {n: v for n, v in after.items() if n not in before},
        "notebooks": results,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", type=Path, required=True, help="the built embedlab wheel")
    parser.add_argument("--root", type=Path, help="where to build the runtime (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the root afterwards (reuse it with --root)")
    parser.add_argument("--report", type=Path, help="write the report as JSON here")
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: notebooks/0*.ipynb")
    args = parser.parse_args(argv)
    notebooks = args.notebooks or sorted((REPO / "notebooks").glob("0[0-9]_*.ipynb"))
    root = args.root or Path(tempfile.mkdtemp(prefix="colab-standin-"))
    try:
        report = stand_in(root.resolve(), args.wheel.resolve(), notebooks)
    finally:
        if not args.keep and not mounted_under(root):
            shutil.rmtree(root, ignore_errors=True)
    if args.report:
        args.report.write_text(json.dumps(report, indent=1), encoding="utf-8")
    for item in report["notebooks"]:
        print(f"{item['notebook']}: {'ok' if item['ok'] else 'FAILED'} in {item['seconds']} s")
    print(f"{report['python']}; Colab packages changed: {report['changed'] or 'none'}; added: {len(report['added'])}")
    return 0 if report["notebooks"] and all(i["ok"] for i in report["notebooks"]) and not report["changed"] else 1


if __name__ == "__main__":
    sys.exit(main())
