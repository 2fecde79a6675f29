#!/usr/bin/env python
"""Strip outputs from notebooks and re-stamp their badge/setup cells (`make strip`); see stamp_notebooks.py."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from stamp_notebooks import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
