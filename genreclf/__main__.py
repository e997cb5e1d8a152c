"""`python -m genreclf …`: the `genreclf` command (genreclf/cli.py) without installing it."""

from genreclf.cli import run

if __name__ == "__main__":
    run()
