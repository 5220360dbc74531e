"""Datasets by name for the CLI and benchmark, all from `paperworks_shared` (no downloads).

``spurious-digits`` / ``digit-dominoes``: the shared download-free builders; ``waterbirds`` /
``celeba``: the shared loaders over local copies (``--data-root``). Every split is a torch Dataset of
``(x, y, group, index)``, the convention the distiller reads.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from paperworks_shared import spurious

DATASETS = ("spurious-digits", "digit-dominoes", "waterbirds", "celeba")


@dataclass
class Splits:
    train: torch.utils.data.Dataset
    validation: torch.utils.data.Dataset
    test: torch.utils.data.Dataset
    num_classes: int
    n_groups: int
    input_shape: tuple[int, ...]

    @property
    def train_groups(self) -> torch.Tensor:
        """Group id of every training example, read from metadata (never by decoding images)."""
        if isinstance(self.train, torch.utils.data.TensorDataset):
            return self.train.tensors[2]
        groups = getattr(self.train, "groups", None)  # paperworks_shared.group_data.ImageGroupDataset
        if groups is None:
            raise TypeError(f"{type(self.train).__name__} exposes no group ids without decoding its items")
        return torch.as_tensor(groups, dtype=torch.long)


def load_splits(
    name: str,
    seed: int = 0,
    train_correlation: float = 0.95,
    kind: str = "patch",
    data_root: str | None = None,
    image_size: int = 224,
) -> Splits:
    """Train/validation/test splits of a named dataset; see the module docstring."""
    if name in ("spurious-digits", "digit-dominoes"):
        if name == "spurious-digits":
            dd = spurious.make_spurious_digits(train_correlation=train_correlation, seed=seed, kind=kind)
        else:
            dd = spurious.make_digit_dominoes(train_correlation=train_correlation, seed=seed)
        parts = {s: spurious.to_torch(dd[s]) for s in spurious.SPLITS}
        shape = tuple(parts["train"].tensors[0].shape[1:])
        return Splits(parts["train"], parts["validation"], parts["test"], 2, spurious.N_GROUPS, shape)
    if name in ("waterbirds", "celeba"):
        if not data_root:
            raise ValueError(f"dataset {name!r} needs --data-root pointing at a local copy (no downloads)")
        from paperworks_shared import group_data

        dd = (
            group_data.load_waterbirds(data_root)
            if name == "waterbirds"
            else group_data.load_celeba(data_root)
        )
        images: dict[str, torch.utils.data.Dataset] = {
            s: group_data.ImageGroupDataset(dd[s], size=image_size) for s in ("train", "validation", "test")
        }
        return Splits(
            images["train"], images["validation"], images["test"], 2, 4, (3, image_size, image_size)
        )
    raise ValueError(f"unknown dataset {name!r}; choose one of {DATASETS}")


def toy_loaders(splits: Splits, batch_size: int = 64, seed: int = 0):
    """(train, validation, test) loaders over in-memory splits: the training loader shuffles with its own
    generator seeded by ``seed``; the others keep dataset order."""
    from .batches import TensorLoader

    if not isinstance(splits.train, torch.utils.data.TensorDataset):
        raise TypeError("toy_loaders needs in-memory (TensorDataset) splits; use a DataLoader for image data")
    gen = torch.Generator().manual_seed(seed)
    return (
        TensorLoader(splits.train, batch_size=batch_size, shuffle=True, generator=gen),
        TensorLoader(splits.validation, batch_size=512),
        TensorLoader(splits.test, batch_size=512),
    )
