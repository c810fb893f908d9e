"""``python -m jaxstyle``: the command line."""

import sys

from jaxstyle.cli import main

sys.exit(main())
