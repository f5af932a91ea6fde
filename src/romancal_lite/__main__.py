"""``python -m romancal_lite``: the command-line runner (`romancal_lite.cli.main`)."""

import signal
import sys

try:
    from romancal_lite.cli import main
except KeyboardInterrupt:  # Ctrl-C while starting: one line, no traceback
    print("romancal_lite: error: interrupted by SIGINT; no output written", file=sys.stderr)
    raise SystemExit(130) from None

try:
    status = main()
except KeyboardInterrupt:  # in the instant after main returned
    status = 130
# the work is over (outputs complete, or cleaned up): an interruption while the
# interpreter shuts down changes nothing and must not turn into a traceback
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
raise SystemExit(status)
