"""`python -m slimserve` runs the command line."""

import sys

from slimserve.cli import main

sys.exit(main())
