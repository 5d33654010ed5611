#!/usr/bin/env python
"""Compare spectrogram normalizations on ESC-50 over folds and seeds.

    python experiments/esc50_normalization.py --data synthetic --out runs/quick
    python experiments/esc50_normalization.py --data DIR --folds 1 2 --seeds 0 1 \\
        --norms none global channel instance dbrange --preset quick --epochs 8 --out OUT_DIR

    python experiments/esc50_normalization.py --data DIR ... --out OUT_DIR --devices cuda:0 cuda:1
    python experiments/esc50_normalization.py --data DIR ... --out OUT_DIR --shard 3/8   # job arrays
    python experiments/esc50_normalization.py --summarize --out OUT_DIR

Writes one record per finished run in OUT_DIR/runs/ and, derived from them, OUT_DIR/results.csv,
OUT_DIR/summary.md and OUT_DIR/summary.png. Any number of processes may share OUT_DIR; running the
same command again skips finished runs. See `fastspecnorm.experiment` for the logic.
"""

import os
import sys

# On a CPU shared with DataLoader workers or other jobs, spinning OpenMP threads stall training
# steps (measured 3x slower on 2 cores); waiting passively avoids it. Must be set before torch is
# imported; a value already in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from fastspecnorm.experiment import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
