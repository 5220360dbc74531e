"""Datasets for the sieve, re-exported from `paperworks_shared` (same builders as early-readout)."""

from __future__ import annotations

from paperworks_shared.group_data import ImageGroupDataset, load_celeba, load_waterbirds
from paperworks_shared.spurious import (
    DigitDominoes,
    SpuriousDigits,
    as_numpy,
    make_digit_dominoes,
    make_spurious_digits,
    to_torch,
)

DATASETS = ("spurious_digits", "spurious_digits_color", "digit_dominoes", "waterbirds", "celeba")

__all__ = [
    "DATASETS",
    "DigitDominoes",
    "ImageGroupDataset",
    "SpuriousDigits",
    "as_numpy",
    "load_celeba",
    "load_dataset",
    "load_waterbirds",
    "make_digit_dominoes",
    "make_spurious_digits",
    "to_torch",
]


def load_dataset(
    name: str,
    seed: int = 0,
    train_correlation: float | None = None,
    root: str | None = None,
    image_size: int = 224,
    eval_mode: str = "decorrelated",
) -> dict:
    """``{"train", "validation", "test"}`` torch datasets of ``(x, y, group, index)`` for a named dataset."""
    if name in ("spurious_digits", "spurious_digits_color"):
        kind = "color" if name.endswith("color") else "patch"
        dd = make_spurious_digits(
            0.95 if train_correlation is None else train_correlation, eval_mode, seed, kind=kind
        )
    elif name == "digit_dominoes":
        dd = make_digit_dominoes(1.0 if train_correlation is None else train_correlation, eval_mode, seed)
    elif name in ("waterbirds", "celeba"):
        if root is None:
            raise ValueError(f"dataset {name!r} is read from a local folder: pass root=/path/to/{name}")
        dd = load_waterbirds(root) if name == "waterbirds" else load_celeba(root)
        return {k: ImageGroupDataset(v, size=image_size) for k, v in dd.items()}
    else:
        raise ValueError(f"unknown dataset {name!r}; choose one of {DATASETS}")
    return {k: to_torch(v) for k, v in dd.items()}
