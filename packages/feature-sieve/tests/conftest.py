import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def color_digits():
    """SpuriousDigits with the colour shortcut (2 x 8 x 8), as torch datasets."""
    from feature_sieve.data import load_dataset

    return load_dataset("spurious_digits_color", seed=0)
