"""Loaded by every CUDA trial's Python (the runner puts this folder on PYTHONPATH).

It turns the harness's memory cap into PyTorch's per-process CUDA memory fraction, so a GPU
configuration that needs more than the cap fails with a CUDA out-of-memory error, as it would
on a smaller card. The training script itself is not changed.
"""

import os
import sys

_cap = os.environ.get("CENTAUR_CUDA_MEMORY_BYTES")
if _cap:
    try:
        import torch

        if torch.cuda.is_available():
            for _i in range(torch.cuda.device_count()):
                _total = torch.cuda.get_device_properties(_i).total_memory
                torch.cuda.set_per_process_memory_fraction(min(1.0, int(_cap) / _total), _i)
    except Exception as _e:  # never stop the trial over the cap; say so instead
        print(f"centaur-hpo: could not set the CUDA memory cap: {_e}", file=sys.stderr)
