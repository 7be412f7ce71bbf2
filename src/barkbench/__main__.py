"""``python -m barkbench``: the ``barkbench`` command."""

import sys

from barkbench.cli import main

sys.exit(main())
