#!/usr/bin/env python
"""The comparison's old entry point, kept as an alias of `fastspecnorm compare` (same options and
output; `--folds` defaults to fold 1 here, as it always did, instead of every fold).

    python experiments/esc50_normalization.py --data synthetic --out runs/quick
    fastspecnorm compare --data synthetic --folds 1 --out runs/quick      # the same
"""

import os
import sys

# On a CPU shared with DataLoader workers or other jobs, spinning OpenMP threads stall training
# steps (3x slower measured on 2 cores); waiting passively avoids it. Set before torch is imported;
# a value already in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from fastspecnorm.experiment.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(prog="python experiments/esc50_normalization.py", default_folds=[1]))
