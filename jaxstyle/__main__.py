"""``python -m jaxstyle``: the command line."""

import sys

try:
    from jaxstyle.cli import main
except KeyboardInterrupt:  # Ctrl-C while Python starts: one line, as everywhere else
    print("jaxstyle: interrupted", file=sys.stderr)
    sys.exit(130)

sys.exit(main())
