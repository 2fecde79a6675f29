#!/usr/bin/env bash
# ruff over the code, tests, scripts and notebooks, with the config in pyproject.toml ([tool.ruff]).
#   data_scripts/lint.sh          check only: what CI runs (`make lint`); exit 1 on any finding
#   data_scripts/lint.sh --fix    apply ruff's safe fixes and format everything, restamp the notebooks, then check
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
RUFF="${RUFF:-.venv/bin/ruff}"
[[ -x "$RUFF" ]] || RUFF="ruff"
notebooks=(notebooks/[0-9][0-9]_*.ipynb)

if [[ "${1:-}" == "--fix" ]]; then
  "$RUFF" check --fix . || true   # what remains is reported by the checks below
  "$RUFF" format .
  # ruff rewrites notebook JSON its own way: stamp again so notebooks stay stripped and in the committed form
  "$PY" data_scripts/stamp_notebooks.py "${notebooks[@]}"
fi
"$RUFF" check .
"$RUFF" format --check .
"$PY" data_scripts/stamp_notebooks.py --check "${notebooks[@]}"
