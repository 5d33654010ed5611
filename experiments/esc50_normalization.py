#!/usr/bin/env python
"""Compare spectrogram normalizations on ESC-50 over folds and seeds.

    python experiments/esc50_normalization.py --data synthetic --out runs/quick
    python experiments/esc50_normalization.py --data DIR --folds 1 2 --seeds 0 1 \\
        --norms none global channel instance dbrange --preset quick --epochs 8 --out OUT_DIR

Writes OUT_DIR/results.csv (one row per finished run), OUT_DIR/summary.md and OUT_DIR/summary.png.
Running the same command again skips finished runs. See `fastspecnorm.experiment` for the logic.
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
