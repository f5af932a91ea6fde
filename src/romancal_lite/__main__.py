"""``python -m romancal_lite``: the command-line runner (`romancal_lite.cli.main`)."""

from romancal_lite.cli import main

raise SystemExit(main())
