import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

# --import-mode=importlib does not put the tests folder on sys.path; the shared fixtures live here
sys.path.insert(0, str(Path(__file__).parent))
