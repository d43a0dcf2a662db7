"""`python -m fastledger`: the same command line as the `fastledger` script."""

from __future__ import annotations

import sys

from fastledger._cli import main

if __name__ == "__main__":
    sys.exit(main())
