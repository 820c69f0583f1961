"""``python -m r1zero.cli`` runs the command line."""

from r1zero.cli.main import main

raise SystemExit(main())
