"""`python -m stages.recommend FILE...`: the same as `genreclf recommend FILE...` (genreclf/cli.py).

Not a pipeline stage: kept so that the older spelling of the command still works.
"""

import sys

from genreclf.cli import main

if __name__ == "__main__":
    sys.exit(main(["recommend", *sys.argv[1:]]))
