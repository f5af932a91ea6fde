"""``python -m romancal_lite``: the command-line runner (`romancal_lite.cli.entry_point`)."""

import sys

try:
    from romancal_lite.cli import entry_point
except KeyboardInterrupt:  # Ctrl-C while starting: one line, no traceback
    print("romancal_lite: error: interrupted by SIGINT; no output written", file=sys.stderr)
    raise SystemExit(130) from None

raise SystemExit(entry_point())
