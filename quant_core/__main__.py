"""`python -m quant_core`."""

import sys

from quant_core.cli import main

if __name__ == "__main__":
    sys.exit(main())
