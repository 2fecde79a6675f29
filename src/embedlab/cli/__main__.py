"""`python -m embedlab.cli` runs the `embedlab` command."""

import sys

from embedlab.cli import main

sys.exit(main())
