"""``python -m streamlab``: the command line."""

from streamlab.cli.main import main

raise SystemExit(main())
