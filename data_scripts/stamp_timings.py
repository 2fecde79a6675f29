#!/usr/bin/env python
"""Write each notebook's measured CPU time ("CPU (2 cores, `demo` settings, measured): about 3 minutes") into its
title from a real `make demo` run, so the header never holds a number copied by hand.

    python data_scripts/stamp_timings.py --record runs/demo/pipeline.json notebooks/*.ipynb   # after `make demo`
    python data_scripts/stamp_timings.py --check notebooks/*.ipynb    # exit 1 if a title disagrees with the record

`--record` copies the seconds per notebook and the machine line of the run's pipeline.json into
notebooks/timings.json (committed); every run of the script then rewrites the titles from that file.
tests/test_notebook_timings.py fails when a title and notebooks/timings.json disagree.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

TIMINGS = Path(__file__).resolve().parents[1] / "notebooks" / "timings.json"
CPU_TIME = re.compile(r"CPU \((\d+) cores, `demo` settings(?:, measured)?\): (?:about \d+ minutes?|under a minute)")


def load_timings(path: Path = TIMINGS) -> dict[str, Any]:
    """The recorded demo timings ({"cores": n, "seconds": {notebook stem: s}, ...}), or {} when none exist."""
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def record_timings(pipeline_json: Path, target: Path = TIMINGS) -> dict[str, Any]:
    """Copy the seconds per notebook and the machine line of a measured pipeline run into `target`."""
    run = json.loads(Path(pipeline_json).read_text(encoding="utf-8"))
    machine = str(run.get("machine", ""))
    cores = re.search(r"(\d+) CPU cores", machine)
    timings = {
        "source": "the pipeline.json of a `make demo` run",
        "machine": machine,
        "cores": int(cores.group(1)) if cores else 2,
        "seconds": {k: round(float(v), 1) for k, v in sorted(run["seconds"].items())},
    }
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(json.dumps(timings, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(target)
    return timings


def cpu_time_phrase(seconds: float, cores: int) -> str:
    """'CPU (2 cores, `demo` settings, measured): about 3 minutes' from a measured duration."""
    minutes = round(seconds / 60)
    duration = "under a minute" if seconds < 60 else f"about {minutes} minute{'s' if minutes != 1 else ''}"
    return f"CPU ({cores} cores, `demo` settings, measured): {duration}"


def stamped_title(title: str, seconds: float | None, cores: int) -> str:
    """The title with its CPU time written from the record; unchanged when nothing is recorded for it."""
    return title if seconds is None else CPU_TIME.sub(cpu_time_phrase(seconds, cores), title, count=1)


def _title_cell(nb: dict[str, Any]) -> dict[str, Any]:
    """The title: the first markdown cell that starts with '# ' (the badge cell comes before it)."""
    return next(c for c in nb["cells"] if c["cell_type"] == "markdown" and "".join(c["source"]).startswith("# "))


def _lines(text: str) -> list[str]:
    parts = text.split("\n")
    return [p + "\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


def process(path: Path, timings: dict[str, Any], check: bool) -> bool:
    """Stamp one notebook's title (or only compare in check mode); True when it already agreed."""
    text = path.read_text(encoding="utf-8")
    nb = json.loads(text)
    cell = _title_cell(nb)
    old = "".join(cell["source"])
    new = stamped_title(old, timings.get("seconds", {}).get(path.stem), int(timings.get("cores", 2)))
    if new == old:
        return True
    if not check:
        cell["source"] = _lines(new)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
        tmp.replace(path)
    return False


def main(argv: list[str] | None = None) -> int:
    """Command line: record (optional), then stamp or check the given notebooks."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--record", type=Path, metavar="PIPELINE_JSON", help="a measured run's pipeline.json")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a title disagrees")
    args = parser.parse_args(argv)
    if args.record is not None:
        print(f"recorded {TIMINGS}: {record_timings(args.record)['seconds']}")
    timings = load_timings()
    stale = [p for p in args.notebooks if not process(p, timings, args.check)]
    for p in stale:
        print(f"{'title disagrees with notebooks/timings.json' if args.check else 'stamped time'}: {p}")
    return 1 if (stale and args.check) else 0


if __name__ == "__main__":
    sys.exit(main())
