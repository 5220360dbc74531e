"""Training methods behind one interface, so ERM, Group DRO, JTT and the sieve share the same trainer.

A method owns a classifier (``.model``) and its optimizers and implements
``training_step(x, y, step, group=None, index=None) -> dict`` plus ``state_dict`` / ``load_state_dict``
(for checkpointing). `FeatureSieve` (sieve.py) is one; `ERM` and `GroupDRO` are here; JTT
(jtt.py) is ERM twice with an up-weighted error set.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

OptimizerFactory = Callable[..., torch.optim.Optimizer]


def sgd(params, lr: float, momentum: float = 0.0, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """The official optimizer for all three updates (plain SGD with the given momentum / wd)."""
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)


def check_labels(y: torch.Tensor, num_classes: int) -> None:
    """Labels must be integer class ids in [0, num_classes)."""
    if y.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise TypeError(f"labels must be integer class ids, got dtype {y.dtype}")
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise ValueError(
            f"labels outside the class range: got values in [{int(y.min())}, {int(y.max())}] "
            f"but num_classes={num_classes}"
        )


def set_bn_eval(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


class Method(nn.Module):
    """Common base: the wrapped model, label checks, BN freezing, and inference = the plain model."""

    name = "method"

    def __init__(self, model: nn.Module, num_classes: int, freeze_bn: bool = False):
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        if int(num_classes) < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes!r}")
        self.model = model
        self.num_classes = int(num_classes)
        self.freeze_bn = bool(freeze_bn)

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and self.freeze_bn:  # official SiFer: pretrained BN stays in eval mode (DESIGN.md §1.4)
            set_bn_eval(self.model)
        return self

    def forward(self, x):
        return self.model(x)

    def training_step(self, x, y, step: int, group=None, index=None) -> dict:
        """One update on a batch; returns the logged numbers."""
        raise NotImplementedError

    def checkpoint(self) -> dict:
        """Everything needed to resume (module state and optimizer states)."""
        raise NotImplementedError

    def restore(self, ckpt: dict) -> None:
        raise NotImplementedError

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        if out.dim() != 2 or out.shape[1] != self.num_classes:
            raise ValueError(
                f"the model returned shape {tuple(out.shape)}; expected (batch, num_classes={self.num_classes})"
            )
        return out

    def _step(self, opt, loss, params, grad_clip) -> None:
        opt.zero_grad(set_to_none=True)
        loss.backward(inputs=params)
        if grad_clip:
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        opt.step()


class ERM(Method):
    """Ordinary cross-entropy training: exactly the sieve's main update, and nothing else."""

    name = "erm"

    def __init__(
        self,
        model: nn.Module,
        num_classes: int,
        lr: float = 1e-3,
        momentum: float = 0.9,
        weight_decay: float = 1e-4,
        optimizer_factory: OptimizerFactory = sgd,
        freeze_bn: bool = False,
        grad_clip: float | None = None,
    ):
        super().__init__(model, num_classes, freeze_bn)
        self.params = [p for p in model.parameters() if p.requires_grad]
        if not self.params:
            raise ValueError("the model has no trainable parameters")
        self.opt = optimizer_factory(self.params, lr=lr, momentum=momentum, weight_decay=weight_decay)
        self.grad_clip = grad_clip

    def loss(self, logits, y, group=None) -> torch.Tensor:
        return F.cross_entropy(logits, y)

    def training_step(self, x, y, step: int, group=None, index=None) -> dict:
        check_labels(y, self.num_classes)
        loss = self.loss(self._logits(x), y, group)
        self._step(self.opt, loss, self.params, self.grad_clip)
        return {"main_loss": loss.item()}

    def extra_state(self) -> dict:
        return {}

    def load_extra_state(self, state: dict) -> None:
        pass

    def checkpoint(self) -> dict:
        return {"module": self.state_dict(), "opt": self.opt.state_dict(), "extra": self.extra_state()}

    def restore(self, ckpt: dict) -> None:
        self.load_state_dict(ckpt["module"])
        self.opt.load_state_dict(ckpt["opt"])
        self.load_extra_state(ckpt.get("extra", {}))


class GroupDRO(ERM):
    """Online Group DRO (Sagawa et al. 2020): the group-label *oracle* baseline.

    The objective is `paperworks_shared.dro.GroupDROLoss` (the one implementation early-readout uses
    too): a distribution q over groups, ``q_g <- q_g exp(eta * loss_g)`` (normalised, updated in training
    mode only), minimising ``sum_g q_g loss_g``. Needs group ids for every training batch.
    """

    name = "group_dro"

    def __init__(self, model, num_classes, n_groups: int, eta: float = 0.01, **kwargs):
        from paperworks_shared.dro import GroupDROLoss

        super().__init__(model, num_classes, **kwargs)
        if int(n_groups) < 1:
            raise ValueError(f"n_groups must be >= 1, got {n_groups!r}")
        self.n_groups = int(n_groups)
        self.eta = float(eta)
        self.dro = GroupDROLoss(self.n_groups, self.eta)

    @property
    def q(self) -> torch.Tensor:
        """The current group weights (the shared loss's buffer)."""
        return self.dro.q

    def loss(self, logits, y, group=None) -> torch.Tensor:
        if group is None:
            raise ValueError("Group DRO needs group labels: the training data has no 'group' column")
        return self.dro(F.cross_entropy(logits, y, reduction="none"), group)
