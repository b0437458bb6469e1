"""``python -m sss_core ...``: the command line (the same as the ``sss-lab`` command); see sss_core/cli."""

from .cli import main

raise SystemExit(main())
