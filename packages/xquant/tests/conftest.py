"""Test setup: offline, one thread, Triton in interpreter mode when there is no GPU."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
try:
    import torch

    if not torch.cuda.is_available():
        os.environ.setdefault("TRITON_INTERPRET", "1")
    torch.set_num_threads(1)
except ImportError:  # pragma: no cover
    pass

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny():
    """Cached tiny random models per architecture (fp32)."""
    from paperworks_shared.models import tiny_causal_lm

    cache = {}

    def get(arch, **overrides):
        key = (arch, tuple(sorted(overrides.items())))
        if key not in cache:
            cache[key] = tiny_causal_lm(arch, seed=0, **overrides)
        return cache[key]

    return get
