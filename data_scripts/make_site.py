#!/usr/bin/env python
"""Build the course as a static website: the executed notebooks (with their outputs) and README + docs/.

    python data_scripts/make_site.py                       # runs/demo's executed notebooks -> site/
    python data_scripts/make_site.py --run runs/x --out public

MkDocs with mkdocs-jupyter (the `site` extra, `pip install -e ".[site]"`) builds it offline, in strict mode: a
broken link or a missing page fails the build. The pages keep the repository's layout (README.md becomes
index.md, docs/ and notebooks/ stay where they are), so the links between them work unchanged; a link to any
other file of the repository (a preset, a script) points to it on the repository's web page. Notebooks the run
did not execute (the pipeline skips 00) are taken from notebooks/ without outputs, and the page says so.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LINK = re.compile(r"(\]\()([^)#\s]+)((?:#[^)\s]*)?\))")
TEACHER_ONLY = ("answers.md",)  # the answer key stays out of a site handed to students (links go to the repository)
NOT_EXECUTED = (
    "*This notebook was not executed for this site (the pipeline does not run it): it is shown without outputs.*"
)


def repository_url() -> str:
    """`Repository` under [project.urls] in pyproject.toml (read by stamp_notebooks): where links to files go."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from stamp_notebooks import repository_url as from_pyproject

    return from_pyproject()


def _rewrite_links(text: str, page: Path, site: Path, blob: str) -> str:
    """Links to files that are not pages of the site point to the repository; README.md links to index.md."""

    def fix(match: re.Match[str]) -> str:
        target = match.group(2)
        if re.match(r"[a-z]+:", target):
            return match.group(0)  # http:, https:, mailto:, attachment:
        resolved = (page.parent / target).resolve()
        if resolved == (site / "README.md").resolve():
            return f"{match.group(1)}{Path(target).parent.joinpath('index.md').as_posix()}{match.group(3)}"
        if resolved.is_file() and resolved.is_relative_to(site.resolve()):
            return match.group(0)
        source = (REPO / page.relative_to(site)).parent / target
        return f"{match.group(1)}{blob}/{source.resolve().relative_to(REPO).as_posix()}{match.group(3)}"

    return LINK.sub(fix, text)


def _notebook(source: Path, executed: Path | None, target: Path) -> None:
    """Copy the executed notebook, or the committed one with a note that it has no outputs."""
    if executed is not None and executed.is_file():
        shutil.copyfile(executed, target)
        return
    nb = json.loads(source.read_text(encoding="utf-8"))
    nb["cells"].insert(1, {"cell_type": "markdown", "metadata": {}, "source": [NOT_EXECUTED]})
    target.write_text(json.dumps(nb), encoding="utf-8")


def stage(run: Path | None, site: Path) -> list[str]:
    """Lay out the pages in `site` (README -> index.md, docs/, notebooks/); returns the notebook page paths."""
    (site / "docs").mkdir(parents=True)
    (site / "notebooks").mkdir()
    shutil.copyfile(REPO / "README.md", site / "README.md")
    for page in sorted((REPO / "docs").glob("*.md")):
        if page.name not in TEACHER_ONLY:
            shutil.copyfile(page, site / "docs" / page.name)
    if (REPO / "docs" / "images").is_dir():
        shutil.copytree(REPO / "docs" / "images", site / "docs" / "images")
    notebooks = []
    for source in sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        executed = run / "notebooks" / source.name if run else None
        _notebook(source, executed, site / "notebooks" / source.name)
        notebooks.append(f"notebooks/{source.name}")
    blob = f"{repository_url()}/blob/main"
    for page in [site / "README.md", *sorted((site / "docs").glob("*.md"))]:
        page.write_text(_rewrite_links(page.read_text(encoding="utf-8"), page, site, blob), encoding="utf-8")
    (site / "README.md").rename(site / "index.md")
    return notebooks


def config(site: Path, notebooks: list[str], out: Path) -> Path:
    """mkdocs.yml: strict, offline (no web fonts), the notebooks rendered with their outputs, never executed."""
    docs = sorted(p.relative_to(site).as_posix() for p in (site / "docs").glob("*.md"))
    nav = [{"Home": "index.md"}, {"Notebooks": notebooks}, {"Guides": docs}]
    settings = {
        "site_name": "embedlab: does training on your own images pay?",
        "docs_dir": str(site),
        "site_dir": str(out),
        "strict": True,
        "use_directory_urls": False,
        "theme": {"name": "material", "font": False},
        "plugins": ["search", {"mkdocs-jupyter": {"execute": False, "include_source": True}}],
        "markdown_extensions": ["tables", "toc", "admonition"],
        "nav": nav,
    }
    path = site.parent / "mkdocs.yml"
    path.write_text(json.dumps(settings, indent=1), encoding="utf-8")  # JSON is YAML
    return path


def build(run: Path | None, out: Path) -> Path:
    """Stage the pages, write the config and run `mkdocs build --strict`; returns out/index.html."""
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp) / "pages"
        notebooks = stage(run, site)
        mkdocs_yml = config(site, notebooks, out.resolve())
        done = subprocess.run(
            [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "-f", str(mkdocs_yml)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise SystemExit(f"mkdocs build failed:\n{done.stdout}{done.stderr}")
    return out / "index.html"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=REPO / "runs" / "demo", help="run whose notebooks/ to show")
    parser.add_argument("--out", type=Path, default=REPO / "site", help="where the website goes")
    args = parser.parse_args(argv)
    run = args.run if (args.run / "notebooks").is_dir() else None
    if run is None:
        print(f"{args.run}/notebooks not found (run `make demo` first): the notebooks are shown without outputs")
    print(f"open {build(run, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
