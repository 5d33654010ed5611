"""`python -m fastspecnorm compare ...`: the same as the installed `fastspecnorm` command."""

import sys

from .experiment.cli import command

if __name__ == "__main__":
    sys.exit(command())
