"""evals/scale_forcing.py with the same guidance at every scale instead of HART's linear ramp
(SamplingConfig.scale_guidance: cfg * k / (K - 1)); a measurement, not an option of the library
(training/README.md, "The model's own pictures in the training context", last paragraph).

    python evals/results/scale_forcing/constant_guidance.py --model MODEL --num 50 --forced 0 --context own --json OUT
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # evals/

import scale_forcing  # noqa: E402
from hart_vlm.sampling import SamplingConfig  # noqa: E402

SamplingConfig.scale_guidance = lambda self, scale_index, num_scales: self.cfg

if __name__ == "__main__":
    scale_forcing.main(sys.argv[1:])
