"""`Pruner`: gates, sparsity regulariser, budgeted thresholding and mask application.

Methods (DESIGN.md §1.1, §1.3):
* ``vitslim`` - learnable gates zeta (init 1.0, no sigmoid) on every unit, L1 penalty
  ``w_attn*sum|zeta_attn| + w_mlp*sum|zeta_mlp| + w_conv*sum|zeta_conv|``; importance = signed zeta.
* ``netslim`` - the paper's hybrid recipe: ViT-Slim gates on attention/MLP, Network Slimming on
  CNN channels (L1 on BN gamma, gate frozen at 1); conv importance = |gamma|.
* ``l1`` - weight-magnitude importance, no regulariser.  ``random`` - seeded random importance.
* ``chipnet`` - ChipNet (DESIGN.md §1.4, `tracker_prune.chipnet`): logistic + continuous-Heaviside soft
  gates, crispness and budget losses for the budget given at construction, thresholding to masks.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import nn

from . import chipnet as cn
from .discover import SkippedLayer, conv_pairs, inject_gates_report
from .residual import attach_residual_groups, residual_gates
from .slim import Masks, set_masks
from .units import GatedAttention, GatedBatchNorm2d, GatedMlp, _Gated

METHODS = ("vitslim", "netslim", "chipnet", "l1", "random")
KINDS = ("channels", "params", "flops")
SCOPES = ("global", "layerwise")
DEFAULT_WEIGHTS = {"attn": 1.5e-4, "mlp": 7.5e-5, "conv": 1e-5}  # OSTrack yaml w1, w2; STARK s


def check_budget(budget: float) -> float:
    if not isinstance(budget, (int, float)) or isinstance(budget, bool) or math.isnan(budget):
        raise ValueError(f"budget must be a number in (0, 1], got {budget!r}")
    if not 0.0 < float(budget) <= 1.0:
        raise ValueError(f"budget must be in (0, 1], got {budget}")
    return float(budget)


class Pruner:
    """Injects gates into ``model`` (in place) and computes budgeted masks.

    ``example_inputs`` (a tuple of forward args) is needed only for ``kind="flops"`` (token / pixel
    counts per unit are recorded with hooks). ``method="chipnet"`` needs the target ``budget`` and
    ``budget_kind`` up front (they enter its loss); its gates start at psi ~ U(0, 0.01).
    """

    def __init__(
        self,
        model: nn.Module,
        method: str = "vitslim",
        weights: dict | None = None,
        example_inputs: tuple | None = None,
        seed: int = 0,
        budget: float | None = None,
        budget_kind: str = "channels",
        chipnet_gates: cn.ChipNetGates | None = None,
        group_residual: bool = False,
        strict: bool = False,
    ):
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")
        self.model, self.method, self.seed = model, method, seed
        self.weights = {**DEFAULT_WEIGHTS, **(weights or {})}
        # residual groups are resolved on the plain modules, before gates wrap them (residual.py)
        self.residual = attach_residual_groups(model) if group_residual else residual_gates(model)
        self.units: dict[str, _Gated]
        self.skipped: list[SkippedLayer]
        self.units, self.skipped = inject_gates_report(model)
        if self.skipped:
            listing = "; ".join(str(s) for s in self.skipped[:8])
            more = f" (+{len(self.skipped) - 8} more)" if len(self.skipped) > 8 else ""
            if strict:
                raise TypeError(
                    f"strict=True: {len(self.skipped)} layer(s) cannot be pruned: {listing}{more}"
                )
            warnings.warn(
                f"{len(self.skipped)} layer(s) left dense (see Pruner.skipped): {listing}{more}",
                stacklevel=2,
            )
        self.emptied: list[str] = []
        self.pairs = {p.name: p for p in conv_pairs(model)}
        # convs shared by two channel groups (a Bottleneck's conv2): each group is charged half of
        # the conv's per-channel cost, so the prunable total is the real one (issue 18)
        self._shared: dict[int, int] = {}
        for p in self.pairs.values():
            for attr in (p.producer, p.consumer):
                c = id(getattr(p.block, attr))
                self._shared[c] = self._shared.get(c, 0) + 1
        if method == "netslim":
            for u in self.units.values():
                if isinstance(u, GatedBatchNorm2d):
                    u.zeta.requires_grad_(False)
        if method in ("l1", "random"):
            for u in self.units.values():
                u.zeta.requires_grad_(False)
        self._sizes: dict[str, float] | None = None
        if example_inputs is not None:
            self._sizes = self._record_sizes(example_inputs)
        self.chipnet: cn.ChipNetGates | None = None
        if method == "chipnet":
            if budget is None:
                raise ValueError("method='chipnet' needs budget=... (the budget enters its loss)")
            self.budget = check_budget(budget)
            if budget_kind not in KINDS:
                raise ValueError(f"unknown budget kind {budget_kind!r}; choose one of {KINDS}")
            self.budget_kind = budget_kind
            self._chip_cost = self.element_cost(budget_kind)
            self.chipnet = chipnet_gates or cn.ChipNetGates()
            gen = torch.Generator().manual_seed(seed)
            with torch.no_grad():
                for u in self.units.values():  # psi ~ U(0, 0.01) (ChipNet init)
                    u.zeta.copy_(torch.rand(u.zeta.shape, generator=gen) * 0.01)
                    u.soft = self.chipnet

    def search_callback(self, total_steps: int, epochs: int = 20):
        """For ``chipnet``: a per-step callable annealing beta/gamma/sigma over ``epochs`` virtual epochs."""
        if self.chipnet is None:
            return None
        return self.chipnet.callback(total_steps, epochs)

    # ------------------------------------------------------------------ regulariser (§1.1 step 2)
    def gate_parameters(self) -> list[nn.Parameter]:
        return [u.zeta for u in self.units.values() if u.zeta.requires_grad]

    def regularizer(self) -> torch.Tensor:
        """The sparsity penalty to add to the task loss during the search phase."""
        if self.chipnet is not None:  # 30 (V - V_c)^2 + 10 crispness (DESIGN.md §1.4)
            return cn.chipnet_loss(self.units, self.chipnet, self._chip_cost, self.budget)
        terms = []
        for u in self.units.values():
            w = self.weights[u.unit_kind]
            if isinstance(u, GatedBatchNorm2d) and self.method == "netslim":
                terms.append(w * u.bn.weight.abs().sum())  # Network Slimming: L1 on BN gamma
            elif self.method in ("vitslim", "netslim"):
                terms.append(w * u.zeta.abs().sum())
        if not terms:
            return next(self.model.parameters()).new_zeros(())
        return torch.stack(terms).sum()

    # ------------------------------------------------------------------ importance
    def importance(self) -> dict[str, torch.Tensor]:
        """Per-unit scores (higher = keep), shaped like each unit's mask."""
        gen = torch.Generator().manual_seed(self.seed)
        out = {}
        for name, u in self.units.items():
            if self.method == "random":
                out[name] = torch.rand(u.mask.shape, generator=gen)
            elif self.method == "l1":
                out[name] = self._l1(u)
            elif self.method == "chipnet":
                out[name] = u.raw_gate().detach().float().cpu()  # zeta_t in [0, 1]
            elif isinstance(u, GatedBatchNorm2d) and self.method == "netslim":
                out[name] = u.bn.weight.detach().abs().float().cpu()
            else:
                out[name] = u.zeta.detach().float().cpu()  # signed, as the official threshold
        return out

    @staticmethod
    def _l1(u) -> torch.Tensor:
        with torch.no_grad():
            if isinstance(u, GatedAttention):
                a = u.inner
                H, d = a.num_heads, a.head_dim
                rows = a.qkv.weight.abs().sum(1).reshape(3, H, d).sum(0)
                cols = a.proj.weight.abs().sum(0).reshape(H, d)
                return (rows + cols).float().cpu()
            if isinstance(u, GatedMlp):
                m = u.inner
                h = m.fc1.weight.shape[0]
                rows = m.fc1.weight.abs().reshape(h, -1).sum(1)
                cols = m.fc2.weight.abs().transpose(0, 1).reshape(h, -1).sum(1)
                return (rows + cols).float().cpu()
            return u.bn.weight.abs().float().cpu()

    # ------------------------------------------------------------------ costs per gate element
    def _record_sizes(self, example_inputs) -> dict[str, float]:
        sizes, hooks = {}, []
        for name, u in self.units.items():

            def hook(mod, args, out, name=name):
                sizes[name] = float(out.shape[1] if out.dim() == 3 else out.shape[-2] * out.shape[-1])

            hooks.append(u.register_forward_hook(hook))
        for name, p in self.pairs.items():

            def chook(mod, args, out, name=name):
                sizes[name + "@out"] = float(out.shape[-2] * out.shape[-1])

            hooks.append(getattr(p.block, p.consumer).register_forward_hook(chook))
        was = self.model.training
        self.model.eval()
        with torch.no_grad():
            self.model(*example_inputs)
        self.model.train(was)
        for h in hooks:
            h.remove()
        return sizes

    def element_cost(self, kind: str) -> dict[str, float]:
        """Cost of one gate element per unit: 1 (channels), params, or FLOPs (2*MAC)."""
        if kind == "flops" and self._sizes is None:
            raise ValueError("kind='flops' needs Pruner(..., example_inputs=...) to count tokens/pixels")
        out: dict[str, float] = {}
        sizes: dict[str, float] = self._sizes or {}  # None only for channels / params (checked above)
        for name, u in self.units.items():
            if kind == "channels":
                out[name] = 1.0
                continue
            if isinstance(u, GatedAttention):
                a = u.inner
                D = a.qkv.in_features
                if kind == "params":
                    out[name] = 3 * D + (3 if a.qkv.bias is not None else 0) + a.proj.out_features
                else:
                    N = sizes[name]
                    out[name] = 2 * N * D * 3 + 2 * N * a.proj.out_features + 4 * N * N
            elif isinstance(u, GatedMlp):
                m = u.inner
                d_in, d_out = m.fc1.weight.shape[1], m.fc2.weight.shape[0]
                if kind == "params":
                    out[name] = d_in + (1 if m.fc1.bias is not None else 0) + d_out
                else:
                    out[name] = 2 * sizes[name] * (d_in + d_out)
            else:
                p = self.pairs[name]
                prod, cons = getattr(p.block, p.producer), getattr(p.block, p.consumer)
                ka, kb = prod.kernel_size[0] * prod.kernel_size[1], cons.kernel_size[0] * cons.kernel_size[1]
                sa, sb = 1.0 / self._shared[id(prod)], 1.0 / self._shared[id(cons)]
                if kind == "params":
                    out[name] = (
                        sa * prod.in_channels * ka
                        + (1 if prod.bias is not None else 0)
                        + 2
                        + sb * cons.out_channels * kb
                    )
                else:
                    out[name] = (
                        sa * 2 * sizes[name] * prod.in_channels * ka
                        + sb * 2 * sizes[name + "@out"] * cons.out_channels * kb
                    )
        return out

    # ------------------------------------------------------------------ thresholding (§1.1 step 3)
    def masks(
        self,
        budget: float,
        kind: str = "channels",
        scope: str = "global",
        min_keep: int = 1,
        threshold: float | None = None,
    ) -> Masks:
        """Binary masks keeping ``budget`` of the prunable units.

        ``channels``: like the official ``compress``, attention, MLP and conv gates are pooled per
        type and each type keeps ``n - int((1-budget) n)`` top gates. ``params``/``flops``: all gates
        pooled (importance normalised by each type's mean |score|), greedily kept in importance order
        while the kept cost stays <= budget * prunable cost. ``layerwise`` applies the rule inside
        each unit (``compress_layerwise``). ``min_keep`` then guarantees a floor per unit
        (``compress_minthresh``); it can exceed the budget by that granularity.

        ``method="chipnet"`` with ``scope="global"`` uses ChipNet's thresholding (`chipnet.threshold_masks`);
        ``threshold=0.5`` instead keeps every gate with ``zeta_t >= 0.5`` (the crisp search's own
        decision, which the budget loss steered towards ``budget``).
        """
        budget = check_budget(budget)
        if kind not in KINDS:
            raise ValueError(f"unknown budget kind {kind!r}; choose one of {KINDS}")
        if scope not in SCOPES:
            raise ValueError(f"unknown scope {scope!r}; choose one of {SCOPES}")
        if min_keep < 0:
            raise ValueError(f"min_keep must be >= 0, got {min_keep}")
        imp = self.importance()
        cost = self.element_cost(kind)
        if threshold is not None:
            if self.method != "chipnet":
                raise ValueError("threshold= is only meaningful for method='chipnet' (gates in [0, 1])")
            out = self._floor({n: v >= threshold for n, v in imp.items()}, imp, min_keep)
            return self._finish(out, budget, kind, min_keep)
        if self.method == "chipnet" and scope == "global":
            out = self._floor(cn.threshold_masks(imp, cost, budget, kind), imp, min_keep)
            return self._finish(out, budget, kind, min_keep)
        if scope == "layerwise":
            groups = [[n] for n in self.units]
        elif kind == "channels":
            by_kind: dict[str, list[str]] = {}
            for n, u in self.units.items():
                by_kind.setdefault(u.unit_kind, []).append(n)
            groups = list(by_kind.values())
        else:
            groups = [list(self.units)]
        norm = {}
        for n, u in self.units.items():
            same = [imp[m].abs().mean() for m, v in self.units.items() if v.unit_kind == u.unit_kind]
            norm[n] = float(torch.stack(same).mean()) or 1.0
        flat_masks = {n: torch.zeros(imp[n].numel(), dtype=torch.bool) for n in self.units}
        for group in groups:
            scores = torch.cat([imp[n].flatten() / norm[n] for n in group])
            costs = torch.cat([torch.full((imp[n].numel(),), cost[n], dtype=torch.float64) for n in group])
            owner = [(n, i) for n in group for i in range(imp[n].numel())]
            order = torch.argsort(scores, descending=True, stable=True)
            if kind == "channels":
                n_all = len(order)
                keep = order[: n_all - int((1 - budget) * n_all)]
            else:
                cum = torch.cumsum(costs[order], 0)
                keep = order[cum <= budget * costs.sum() + 1e-9]
            for j in keep.tolist():
                n, i = owner[j]
                flat_masks[n][i] = True
        return self._finish(self._floor(flat_masks, imp, min_keep), budget, kind, min_keep)

    def _finish(self, masks: Masks, budget: float, kind: str, min_keep: int) -> Masks:
        """Record emptied units; refuse masks that keep nothing at all (``min_keep=0``, tiny budget)."""
        self.emptied = [n for n, m in masks.items() if not bool(m.any())]
        if self.emptied and len(self.emptied) == len(masks):
            raise ValueError(
                f"budget {budget:g} (kind={kind}) with min_keep={min_keep} keeps no unit of any of the "
                f"{len(masks)} prunable layers: the pruned model would be empty; use min_keep >= 1 "
                "(one unit per layer) or a larger budget"
            )
        if self.emptied:
            warnings.warn(
                f"min_keep={min_keep}: {len(self.emptied)} of {len(masks)} prunable layers emptied "
                f"(see Pruner.emptied): {', '.join(self.emptied[:6])}"
                + (" ..." if len(self.emptied) > 6 else ""),
                stacklevel=3,
            )
        return {**masks, **self.residual_masks(budget, min_keep)}

    def residual_masks(self, budget: float, min_keep: int = 1) -> Masks:
        """One mask per grouped residual channel group (only with ``group_residual=True``).

        Every kind and scope keeps ``n - int((1 - budget) n)`` channels of each group (at least
        ``max(min_keep, 1)``), ranked by the L1 norm of all weights touching the channel (random
        scores for ``method="random"``); the residual stream has no learnable gate (residual.py).
        """
        gen = torch.Generator().manual_seed(self.seed + 1)
        out = {}
        for name, g in self.residual.items():
            score = torch.rand(g.width, generator=gen) if self.method == "random" else g.l1_importance()
            k = min(g.width, max(g.width - int((1 - budget) * g.width), min_keep, 1))
            m = torch.zeros(g.width, dtype=torch.bool)
            m[torch.argsort(score, descending=True, stable=True)[:k]] = True
            out[name] = m
        return out

    def _floor(self, masks: Masks, imp: dict, min_keep: int) -> Masks:
        """Keep at least ``min_keep`` top-importance gates per unit (``compress_minthresh``)."""
        out = {}
        for n, u in self.units.items():
            m = masks[n].flatten().clone()
            floor = min(min_keep, m.numel())
            if int(m.sum()) < floor:
                top = torch.argsort(imp[n].flatten(), descending=True, stable=True)[:floor]
                m[top] = True
            out[n] = m.reshape(u.mask.shape)
        return out

    # ------------------------------------------------------------------ apply (§1.1 step 3-4)
    def apply(self, masks: Masks, fold_scales: bool = False) -> None:
        """Freeze gates to binary masks for child fine-tuning.

        Official behaviour: kept zeta become 1.0 (changes kept units). ``fold_scales=True`` first
        multiplies zeta into the weights (q/k/v rows, fc2 columns, BN affine) so the function of
        kept units is unchanged (DESIGN.md §1.1 improvement).
        """
        set_masks(self.model, masks)
        with torch.no_grad():
            for u in self.units.values():
                z = u.raw_gate().detach()  # zeta, or ChipNet's zeta_t
                u.soft = None
                if fold_scales:
                    if isinstance(u, GatedAttention):
                        a = u.inner
                        H, d = a.num_heads, a.head_dim
                        s = z.reshape(1, H * d).repeat(3, 1).reshape(-1)
                        a.qkv.weight.mul_(s[:, None])
                        if a.qkv.bias is not None:
                            a.qkv.bias.mul_(s)
                    elif isinstance(u, GatedMlp):
                        u.inner.fc2.weight.mul_(z[None, :])
                    else:
                        assert isinstance(u, GatedBatchNorm2d)
                        u.bn.weight.mul_(z)
                        u.bn.bias.mul_(z)
                u.zeta.fill_(1.0)
                u.zeta.requires_grad_(False)
