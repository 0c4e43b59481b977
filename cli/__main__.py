"""``python -m cli``: the ``vireid`` command without the console script."""

from cli.main import main

raise SystemExit(main())
