"""``python -m labelkit <command>``: the same as the ``labelkit`` console script."""

from labelkit.cli import main

raise SystemExit(main())
