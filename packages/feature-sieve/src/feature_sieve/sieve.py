"""`FeatureSieve`: SiFer (Tiwari & Shenoy, ICML 2023) around any classifier.

One training step = three separately optimised updates, each with a fresh forward, in this order
(DESIGN.md §1.2, official `SiFeR.update`; never one optimizer over a summed loss, DESIGN.md pitfall 1):

1. **identify**: ``CE(aux(h(x)), y)`` updates *only the aux head* (SGD lr 1e-2, momentum 0.9, wd 1e-4).
   With ``efficient=True`` the backbone runs only up to the sieve layer, under ``no_grad``.
2. **forget** (when ``step % forget_every == 0``, step 0 included): ``CE(aux(h(x)), Uniform)`` updates
   *only the parameters at or below the sieve layer* (plain SGD lr 1e-2, no momentum, no wd); the aux
   head is not updated.
3. **main**: ``CE(f(x), y)`` updates the whole network (SGD lr 1e-3, momentum 0.9, wd 1e-4), never the
   aux head.

The aux and forget forwards leave every buffer of the model as it was (BatchNorm running statistics,
spectral-norm power-iteration vectors, ...; `hooks.preserved_buffers`) and run inside
`torch.random.fork_rng`, so with forgetting disabled the main network follows ERM's trajectory exactly
(tested). Inference is the plain model: ``sieve(x) == sieve.model(x)``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .heads import AuxHead
from .hooks import (
    forward_to,
    forward_with_tap,
    frozen_bn_stats,
    lower_parameters,
    preserved_buffers,
    resolve_layer,
    split_parameters,
)
from .losses import forget_loss_uniform, prediction_entropy
from .methods import Method, OptimizerFactory, check_labels, sgd


def _example(example_input) -> torch.Tensor:
    if isinstance(example_input, torch.Tensor):
        return example_input[:2] if example_input.dim() > 0 and len(example_input) > 2 else example_input
    if isinstance(example_input, (tuple, list)) and all(isinstance(s, int) for s in example_input):
        return torch.zeros(2, *example_input)
    raise TypeError(
        "example_input must be a batch tensor or one example's shape, e.g. (3, 224, 224); "
        f"got {type(example_input).__name__}"
    )


class FeatureSieve(Method):
    """Wraps ``model`` with an aux head at ``sieve_layer`` and trains it with the sieve's schedule.

    Args:
        model: any classifier returning ``(batch, num_classes)`` logits.
        sieve_layer: the module name (``model.named_modules()``) whose output the aux head reads,
            e.g. ``"layer1"`` (torchvision/timm ResNet), ``"stages.0"`` (timm), ``"conv1"``.
        num_classes: K.
        example_input: a batch (or one example's shape) used once to trace the forward order and to
            size the aux head.
        aux_head: ``"conv"`` (official), ``"linear"``, ``"mlp"`` or your own ``nn.Module``.
        aux_depth, aux_width, aux_stride, aux_pool: the aux head's shape (see `AuxHead`).
        forget_every: F; forgetting runs when ``step % F == 0``. ``0`` / ``None`` disables it.
        lr, momentum, weight_decay: main update. aux_*: identify update. forget_*: forget update.
        forget_loss: ``f(aux_logits, labels)``; default CE to uniform, `forget_loss_wrong_sign` for the
            control.
        lower_params: override the automatically found parameters at or below the sieve layer.
        optimizer_factory: ``f(params, lr=, momentum=, weight_decay=) -> Optimizer`` (default SGD).
        freeze_bn: keep the backbone's BN layers in eval mode (official for pretrained backbones).
        efficient: truncate the aux/forget forwards at the sieve layer (and detach in the aux step).
        grad_clip: optional max grad-norm for every update.
        aux_seed: seeds the aux head's initialisation without touching the global RNG.
    """

    name = "sieve"

    def __init__(
        self,
        model: nn.Module,
        sieve_layer: str,
        num_classes: int,
        example_input,
        aux_head: str | nn.Module = "conv",
        aux_depth: int = 2,
        aux_width: int = 256,
        aux_stride: int = 1,
        aux_pool: str = "avg",
        forget_every: int | None = 5,
        lr: float = 1e-3,
        momentum: float = 0.9,
        weight_decay: float = 1e-4,
        aux_lr: float = 1e-2,
        aux_momentum: float = 0.9,
        aux_weight_decay: float = 1e-4,
        forget_lr: float = 1e-2,
        forget_momentum: float = 0.0,
        forget_weight_decay: float = 0.0,
        forget_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = forget_loss_uniform,
        lower_params: list[nn.Parameter] | None = None,
        optimizer_factory: OptimizerFactory = sgd,
        freeze_bn: bool = False,
        efficient: bool = True,
        grad_clip: float | None = None,
        aux_seed: int = 0,
    ):
        super().__init__(model, num_classes, freeze_bn)
        resolve_layer(model, sieve_layer)  # KeyError listing the names
        if forget_every is not None and (int(forget_every) != forget_every or forget_every < 0):
            raise ValueError(
                f"forget_every must be a non-negative integer (0/None = never), got {forget_every!r}"
            )
        self.sieve_layer = sieve_layer
        self.forget_every = int(forget_every or 0)
        self.forget_loss = forget_loss
        self.efficient = bool(efficient)
        self.grad_clip = grad_clip
        x0 = _example(example_input)

        # Parameter routing (DESIGN.md §1.2): lower = at or below the sieve layer; main = the whole model.
        self.lower_params = (
            list(lower_params) if lower_params is not None else lower_parameters(model, sieve_layer, x0)
        )
        self.main_params, upper = split_parameters(model, self.lower_params)
        if not self.lower_params:
            raise ValueError(
                f"no trainable parameters at or below sieve layer {sieve_layer!r}: nothing to sieve"
            )
        if not upper:
            raise ValueError(
                f"nothing trainable remains after sieve layer {sieve_layer!r}: every trainable parameter is at or "
                "below it, so forgetting would fight the main update on the whole network. Pick an earlier layer."
            )

        # The aux head, sized from the traced features; initialised without consuming the global RNG.
        if isinstance(aux_head, nn.Module):
            self.aux = aux_head
        else:
            was = model.training
            model.eval()
            with torch.no_grad():
                feat = forward_to(model, sieve_layer, x0)
            model.train(was)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(aux_seed)
                self.aux = AuxHead(
                    tuple(feat.shape[1:]), num_classes, aux_head, aux_depth, aux_width, aux_stride, aux_pool
                )
        self.aux.to(next(model.parameters()).device)
        self.aux_params = [p for p in self.aux.parameters() if p.requires_grad]
        if not self.aux_params:
            raise ValueError("the aux head has no trainable parameters")
        shared = {id(p) for p in self.aux_params} & {id(p) for p in self.main_params}
        if shared:
            raise ValueError("the aux head must not share parameters with the model")

        self.aux_opt = optimizer_factory(
            self.aux_params, lr=aux_lr, momentum=aux_momentum, weight_decay=aux_weight_decay
        )
        self.forget_opt = optimizer_factory(
            self.lower_params, lr=forget_lr, momentum=forget_momentum, weight_decay=forget_weight_decay
        )
        self.opt = optimizer_factory(self.main_params, lr=lr, momentum=momentum, weight_decay=weight_decay)

    # ----- forwards -----
    def features(self, x: torch.Tensor, grad: bool) -> torch.Tensor:
        """Sieve-layer features; truncated forward when ``efficient`` (full forward otherwise, as released)."""
        with torch.set_grad_enabled(grad):
            if self.efficient:
                return forward_to(self.model, self.sieve_layer, x)
            return forward_with_tap(self.model, self.sieve_layer, x)[1]

    def aux_logits(self, x: torch.Tensor) -> torch.Tensor:
        """The aux head's logits on ``x`` (no parameter updates, no BN-stat updates)."""
        with preserved_buffers(self.model, self.aux), frozen_bn_stats(self.model), frozen_bn_stats(self.aux):
            return self.aux(self.features(x, grad=torch.is_grad_enabled()))

    def will_forget(self, step: int) -> bool:
        return self.forget_every > 0 and step % self.forget_every == 0

    # ----- the three updates -----
    def identify_step(self, x, y) -> dict:
        """Update 1: the aux head learns to predict y from (detached) sieve-layer features."""
        with (
            torch.random.fork_rng(devices=self._rng_devices()),
            preserved_buffers(self.model),
            frozen_bn_stats(self.model),
        ):
            h = self.features(x, grad=not self.efficient)
            if self.efficient:
                h = h.detach()
            logits = self.aux(h)
            loss = F.cross_entropy(logits, y)
            self._step(self.aux_opt, loss, self.aux_params, self.grad_clip)
        with torch.no_grad():
            acc = (logits.argmax(1) == y).float().mean()
        return {
            "aux_loss": loss.item(),
            "aux_acc": float(acc),
            "aux_entropy": prediction_entropy(logits.detach()).item(),
        }

    def forget_step(self, x, y) -> dict:
        """Update 2: the lower layers make the (just updated, fixed) aux head's output uniform."""
        with (
            torch.random.fork_rng(devices=self._rng_devices()),
            preserved_buffers(self.model, self.aux),
            frozen_bn_stats(self.model),
            frozen_bn_stats(self.aux),
        ):
            logits = self.aux(self.features(x, grad=True))
            loss = self.forget_loss(logits, y)
            self._step(self.forget_opt, loss, self.lower_params, self.grad_clip)
        return {"forget_loss": loss.item()}

    def main_step(self, x, y) -> dict:
        """Update 3: ordinary cross-entropy on the full network (never the aux head)."""
        loss = F.cross_entropy(self._logits(x), y)
        self._step(self.opt, loss, self.main_params, self.grad_clip)
        return {"main_loss": loss.item()}

    def training_step(self, x, y, step: int, group=None, index=None) -> dict:
        """aux -> forget (if ``step % F == 0``) -> main; returns the losses and aux diagnostics."""
        check_labels(y, self.num_classes)
        out = self.identify_step(x, y)
        out["forgot"] = self.will_forget(step)
        if out["forgot"]:
            out.update(self.forget_step(x, y))
        out.update(self.main_step(x, y))
        return out

    def _rng_devices(self):
        dev = next(self.model.parameters()).device
        return [dev] if dev.type == "cuda" else []

    # ----- checkpointing / export -----
    def checkpoint(self) -> dict:
        return {
            "module": self.state_dict(),
            "opt": self.opt.state_dict(),
            "aux_opt": self.aux_opt.state_dict(),
            "forget_opt": self.forget_opt.state_dict(),
        }

    def restore(self, ckpt: dict) -> None:
        self.load_state_dict(ckpt["module"])
        self.opt.load_state_dict(ckpt["opt"])
        self.aux_opt.load_state_dict(ckpt["aux_opt"])
        self.forget_opt.load_state_dict(ckpt["forget_opt"])

    def state_dict_for_export(self) -> dict:
        """The backbone's weights only (the aux head is a training device, not part of the model)."""
        return self.model.state_dict()

    def fit(self, train, steps: int, **kwargs):
        """Train with `feature_sieve.train.fit` (progress bar, evaluation, checkpointing, resumption)."""
        from .train import fit

        return fit(self, train, steps, **kwargs)
