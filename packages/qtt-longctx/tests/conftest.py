import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture
def ids():
    return torch.randint(0, 256, (1, 48), generator=torch.Generator().manual_seed(0))


@pytest.fixture
def structured_ids():
    """Factory of a repetitive byte sequence: something a few query steps can learn to predict better."""

    def make(n: int = 96) -> torch.Tensor:
        text = ("ab=1 cd=2 ef=3 gh=4 " * 20)[:n]
        return torch.tensor([list(text.encode())])

    return make
