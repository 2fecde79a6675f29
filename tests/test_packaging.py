"""Packaging: one repository address, a lean install that keeps Colab's torch/ipykernel, a wheel that runs alone.

Offline and fast: the wheel and sdist are built without build isolation from a copy of the sources, clean venvs are
made without pip (the .venv's pip installs into them with --python), and "PyPI" is a folder of tiny fake wheels.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path
from typing import Any

import pytest
import tomllib

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
# Older versions than the lower bounds of current runtimes, as a Colab image may hold them: pip must keep them.
PREINSTALLED = {"torch": "2.2.2", "torchvision": "0.17.2", "ipykernel": "5.5.6"}
RUNNER_STACK = ("papermill", "nbclient", "nbconvert", "nbmake", "jupyterlab", "ipykernel")

pytestmark = pytest.mark.slow


def _stamp_module() -> Any:
    spec = importlib.util.spec_from_file_location("stamp_notebooks", REPO / "data_scripts" / "stamp_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _pyproject() -> dict[str, Any]:
    with open(REPO / "pyproject.toml", "rb") as handle:
        return tomllib.load(handle)


def _setup_install_line(path: Path) -> str:
    """The `%pip install ...` line of a notebook's setup cell."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    setup = next(c for c in nb["cells"] if "stamp-setup" in c["metadata"].get("tags", []))
    lines = [line.strip() for line in "".join(setup["source"]).splitlines() if line.strip().startswith("%pip")]
    assert len(lines) == 1, f"{path.name}: expected one %pip line in the setup cell"
    return lines[0]


def _pip(python: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """The .venv's pip acting on another interpreter (clean venvs are made without pip: much faster)."""
    command = [sys.executable, "-m", "pip", "--python", str(python), "--disable-pip-version-check", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if check:
        assert result.returncode == 0, f"{' '.join(command)}\n{result.stdout}\n{result.stderr}"
    return result


def _clean_venv(where: Path) -> Path:
    """A new venv without pip and without the system's or the .venv's packages; returns its python."""
    venv.EnvBuilder(with_pip=False, clear=True).create(where)
    return where / "bin" / "python"


def _site_packages(python: Path) -> Path:
    out = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(out.stdout.strip())


def fake_wheel(folder: Path, name: str, version: str) -> Path:
    """A tiny wheel of `name` at `version` with no dependencies: a stand-in for a real package on an index."""
    dist = re.sub(r"[-_.]+", "_", name).lower()
    path = folder / f"{dist}-{version}-py3-none-any.whl"
    info = f"{dist}-{version}.dist-info"
    files = {
        f"{dist}/__init__.py": f"__version__ = {version!r}\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: embedlab-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    files[f"{info}/RECORD"] = "".join(f"{f},,\n" for f in [*files, f"{info}/RECORD"])
    with zipfile.ZipFile(path, "w") as archive:
        for member, text in files.items():
            archive.writestr(member, text)
    return path


def _requirement_names(wheel: Path) -> list[str]:
    """Names of the wheel's unconditional dependencies (Requires-Dist without an extra marker)."""
    with zipfile.ZipFile(wheel) as archive:
        meta = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        lines = archive.read(meta).decode().splitlines()
    reqs = [line.split(":", 1)[1].strip() for line in lines if line.startswith("Requires-Dist:")]
    return [re.match(r"[A-Za-z0-9_.-]+", r).group(0) for r in reqs if "extra ==" not in r]


# --------------------------------------------------------------------------------------------- one address
def test_repository_address_lives_in_pyproject_and_stamps_every_notebook(tmp_path: Path) -> None:
    stamp = _stamp_module()
    url = _pyproject()["project"]["urls"]["Repository"].rstrip("/")
    assert stamp.repository_url() == url
    slug = url.removeprefix("https://github.com/")
    for path in NOTEBOOKS:
        text = path.read_text(encoding="utf-8")
        nb = json.loads(text)
        assert text == stamp.render(stamp.stamp(nb, path.name)), f"{path.name}: run `make strip` (address drift)"
        assert f"colab.research.google.com/github/{slug}/blob/main/notebooks/{path.name}" in "".join(
            nb["cells"][0]["source"]
        )
        assert f"git+{url}@v{_pyproject()['project']['version']}" in _setup_install_line(path)  # the release
        assert json.loads(text)["metadata"]["colab"]["gpuType"] == "T4"  # a badge opens a GPU runtime
        for cell in nb["cells"]:
            source = "".join(cell["source"])
            if cell["cell_type"] == "markdown" and source.startswith("**Next:**"):
                for target in re.findall(r"\]\((\d\d_[\w.-]+\.ipynb)\)", source):
                    assert stamp.colab_url(target) in source, f"{path.name}: next link to {target} has no Colab link"
    # a fork: another address in pyproject.toml changes the badge, the install line and the next links together
    fork = tmp_path / "pyproject.toml"
    fork.write_text((REPO / "pyproject.toml").read_text(encoding="utf-8").replace(url, "https://github.com/me/fork"))
    other = stamp.repository_url(fork)
    nb = json.loads(NOTEBOOKS[1].read_text(encoding="utf-8"))
    forked = stamp.render(stamp.stamp(nb, NOTEBOOKS[1].name, other))
    assert slug not in forked and forked.count("github/me/fork/blob/main/notebooks/") >= 2
    assert "git+https://github.com/me/fork" in forked


def test_no_other_file_hard_codes_the_repository_address() -> None:
    slug = _pyproject()["project"]["urls"]["Repository"].removeprefix("https://github.com/").rstrip("/")
    stamped = {REPO / "pyproject.toml", *NOTEBOOKS}
    offenders = []
    for folder in ("src", "data_scripts", "benchmarks"):
        for path in (REPO / folder).rglob("*"):
            if path.is_file() and path.suffix in {".py", ".yaml", ".md", ".toml", ".txt"} and path not in stamped:
                if slug in path.read_text(encoding="utf-8", errors="ignore"):
                    offenders.append(str(path.relative_to(REPO)))
    assert not offenders, f"read the address from pyproject.toml instead: {offenders}"


def test_runtime_dependencies_are_lean() -> None:
    project = _pyproject()["project"]
    names = {re.match(r"[A-Za-z0-9_.-]+", d).group(0).lower() for d in project["dependencies"]}
    assert not names & set(RUNNER_STACK), f"runner stack belongs in extras: {names & set(RUNNER_STACK)}"
    extras = " ".join(" ".join(v) for v in project["optional-dependencies"].values())
    for tool in (*RUNNER_STACK, "build", "twine"):
        assert tool in extras, f"{tool} missing from the extras"
    for spec in project["dependencies"]:
        assert not re.search(r"==|<|~=", spec), f"{spec}: the runtime install keeps lower bounds only"


# --------------------------------------------------------------------------------------------- build + install
def _wheel(dist: Path) -> Path:
    return next(dist.glob("embedlab-*.whl"))


def test_wheel_and_sdist_hold_every_module_and_the_embedded_dataset(dist: Path) -> None:
    modules = {
        f"embedlab/{p.relative_to(REPO / 'src' / 'embedlab').as_posix()}"
        for p in (REPO / "src" / "embedlab").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert any(m.endswith(".gz") for m in modules) and "embedlab/py.typed" in modules
    with zipfile.ZipFile(_wheel(dist)) as archive:
        in_wheel = set(archive.namelist())
    assert modules <= in_wheel, f"missing from the wheel: {sorted(modules - in_wheel)}"
    with tarfile.open(next(dist.glob("embedlab-*.tar.gz"))) as archive:
        in_sdist = {"/".join(n.split("/")[2:]) for n in archive.getnames()}  # drop "embedlab-0.1.0/src/"
    assert modules <= in_sdist, f"missing from the sdist: {sorted(modules - in_sdist)}"


def _notebook_script(path: Path, skip: tuple[str, ...] = ()) -> str:
    """A notebook's code cells as one script, the nbmake mock applied after the parameters cell, magics removed.

    Cells containing any of `skip` are left out.
    """
    parts = []
    for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
        if cell["cell_type"] != "code" or any(s in "".join(cell["source"]) for s in skip):
            continue
        lines = [
            line[: len(line) - len(line.lstrip())] + "pass" if line.lstrip().startswith(("%", "!")) else line
            for line in "".join(cell["source"]).splitlines()
        ]
        parts.append("\n".join(lines))
        mock = cell["metadata"].get("nbmake", {}).get("mock", {})
        parts.extend(f"{name} = {value!r}" for name, value in mock.items())
    script = "\n".join(parts)
    ast.parse(script)
    return script


def test_built_wheel_runs_the_quickstart_in_a_clean_venv(dist: Path, tmp_path: Path) -> None:
    python = _clean_venv(tmp_path / "venv")
    _pip(python, "install", "--quiet", "--no-deps", "--no-index", str(_wheel(dist)))
    # the dependencies come from the .venv, added as a plain path: its editable-install hook (.pth) is not run
    deps = (
        Path(sys.executable).parent.parent
        / "lib"
        / f"python{sys.version_info[0]}.{sys.version_info[1]}"
        / "site-packages"
    )
    (_site_packages(python) / "zz_deps.pth").write_text(f"{deps}\n", encoding="utf-8")
    work = tmp_path / "work"
    work.mkdir()
    guard = (
        f"import importlib, pkgutil, sys, embedlab\nassert {str(REPO / 'src')!r} not in sys.path\n"
        f"assert embedlab.__file__.startswith({str(tmp_path / 'venv')!r}), embedlab.__file__\n"
        f"for m in pkgutil.iter_modules(embedlab.__path__): importlib.import_module('embedlab.' + m.name)\n"
        f"print('EMBEDLAB FROM', embedlab.__file__)\n"
    )
    # every quickstart cell but the UMAP one (numba's first compilation alone takes ~30 s; tests/test_projection.py
    # covers it): prepare the embedded data from the wheel, train, embed, compare
    script = _notebook_script(REPO / "notebooks" / "00_quickstart.ipynb", skip=("project_all(",))
    assert "p = params.check(" in script, "00_quickstart changed: update this smoke's size override"
    # the shipped "demo" preset fills what the tiny mock leaves at the notebook's defaults (backbone, init, ...)
    script = script.replace(
        "p = params.check(",
        "limit_per_class, batch_size = 10, 16  # smaller still: 100 images\npreset = 'demo'\np = params.check(",
        1,
    )
    checks = "\nprint('KNN TABLE', table.shape)\nprint('PRESET', p.train.backbone, p.train.init)\n"
    (work / "quickstart.py").write_text(guard + script + checks, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(EMBEDLAB_ROOT=str(work), MPLBACKEND="Agg", PYTHONNOUSERSITE="1")
    run = subprocess.run([str(python), "quickstart.py"], cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]
    assert "EMBEDLAB FROM" in run.stdout and "KNN TABLE" in run.stdout
    assert "PRESET efficientnet_lite0 imagenet" in run.stdout  # the preset was read from the installed wheel
    assert any((work / "runs").rglob("*.png")), "the quickstart saved no figure"


# --------------------------------------------------------------------------------------------- Colab's install
def _dry_run(python: Path, index: Path, requirement: str, report: Path) -> set[str]:
    """Names pip would install or change for `requirement` against the fake index (pip's --dry-run --report)."""
    _pip(
        python,
        "install",
        "--dry-run",
        "--quiet",
        "--no-index",
        "--find-links",
        str(index),
        "--report",
        str(report),
        requirement,
    )
    return {item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"]}


def test_setup_cell_install_keeps_the_runtimes_torch_and_ipykernel(dist: Path, tmp_path: Path) -> None:
    index = tmp_path / "index"
    index.mkdir()
    wheel = shutil.copy2(_wheel(dist), index)
    for name in {*_requirement_names(_wheel(dist)), *PREINSTALLED}:
        fake_wheel(index, name, "99.0")  # newer versions of everything are on offer
    python = _clean_venv(tmp_path / "colab")
    old = [fake_wheel(tmp_path, name, version) for name, version in PREINSTALLED.items()]
    _pip(python, "install", "--quiet", "--no-deps", "--no-index", *map(str, old))
    line = _setup_install_line(REPO / "notebooks" / "01_download_data.ipynb")
    requirement = re.search(r'"(embedlab[^"]*)"', line).group(1)
    url = _pyproject()["project"]["urls"]["Repository"].rstrip("/")
    local = requirement.replace(f"git+{url}@v{_pyproject()['project']['version']}", Path(wheel).resolve().as_uri())
    assert local != requirement, f"the setup line does not install from {url}: {line}"
    changed = _dry_run(python, index, local, tmp_path / "report.json")
    assert "embedlab" in changed and "lightly" in changed  # the dry run really resolves the package
    assert not changed & set(PREINSTALLED), (
        f"the setup cell would replace Colab's {sorted(changed & set(PREINSTALLED))}"
    )
    assert not changed & set(RUNNER_STACK), f"the setup cell installs the runner stack: {changed & set(RUNNER_STACK)}"
    # the check can fail: a requirement above the installed ipykernel (as the old dependency list had) shows up
    assert "ipykernel" in _dry_run(python, index, "ipykernel>=6.25", tmp_path / "control.json")


def test_the_lock_pins_every_dependency_and_conda_installs_what_make_does() -> None:
    """requirements.txt pins every runtime and extra dependency (scipy included); environment.yml and `make venv`
    install the same extras."""
    pinned = {
        re.split(r"==", line)[0].strip().lower().replace("_", "-")
        for line in (REPO / "requirements.txt").read_text(encoding="utf-8").splitlines()
        if "==" in line and not line.startswith("#")
    }
    project = _pyproject()["project"]
    wanted = [*project["dependencies"], *(d for extra in project["optional-dependencies"].values() for d in extra)]
    names = {re.split(r"[<>=!~;\[ ]", d, maxsplit=1)[0].lower() for d in wanted} - {"embedlab", "embedding-atlas"}
    assert names <= pinned, f"not pinned in requirements.txt: {sorted(names - pinned)}"
    make_extras = re.search(r'-e "\.\[([\w,]+)\]"', (REPO / "Makefile").read_text(encoding="utf-8"))[1]
    conda_extras = re.search(r'-e "\.\[([\w,]+)\]"', (REPO / "environment.yml").read_text(encoding="utf-8"))[1]
    assert make_extras == conda_extras
