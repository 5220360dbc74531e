"""E3 (slow): after sieve training the shortcut is less linearly decodable at the sieve layer than after ERM.

Same data, init, batches and steps for both; the probe is the package's default `shortcut_probe`
(raw pooled conv1 features, bounded-norm logistic regression, held-out half of the test set).
"""

import numpy as np
import pytest

from feature_sieve.data import load_dataset
from feature_sieve.experiment import ToyConfig, run_one


@pytest.mark.slow
def test_sieve_suppresses_the_shortcut_at_the_sieve_layer():
    cfg = ToyConfig(steps=300)
    erm, sieve = [], []
    for seed in (0, 1):
        data = load_dataset("spurious_digits_color", seed=seed)
        erm.append(run_one(data, "erm", seed, cfg)["shortcut_probe"])
        sieve.append(run_one(data, "sieve", seed, cfg)["shortcut_probe"])
    assert np.mean(erm) > 0.95, f"ERM should read the shortcut at conv1: {erm}"
    assert np.mean(sieve) <= np.mean(erm) - 0.02, f"sieve {sieve} vs ERM {erm}"
