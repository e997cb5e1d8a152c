"""`python -m genreclf …`: the `genreclf` command (genreclf/cli.py) without installing it."""

import sys

from genreclf.cli import main

if __name__ == "__main__":
    sys.exit(main())
