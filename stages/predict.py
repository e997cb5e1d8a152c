"""`python -m stages.predict FILE...`: the same as `genreclf predict FILE...` (genreclf/cli.py).

Not a pipeline stage: kept so that the older spelling of the command still works.
"""

import sys

from genreclf.cli import main

if __name__ == "__main__":
    sys.exit(main(["predict", *sys.argv[1:]]))
