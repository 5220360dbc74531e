"""MetaDOCK: per-task dynamic kernel selection for MAML / iMAML (Chavan et al., CVPR 2022).

Everything loads lazily on first attribute access (`md.MetaDOCK`, `md.data.glyphs`, ...), so that
`import metadock` and `metadock --help` do not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> submodule that defines it
_LAZY_ATTRS = {
    "AdaptedTask": "dock",
    "BudgetSchedule": "dock",
    "MetaDOCK": "dock",
    "count": "export",
    "export_task": "export",
    "BinarizeSTE": "gates",
    "GatedConv2d": "gates",
    "binarize_ste": "gates",
    "mask_mode": "gates",
    "cg_solve": "implicit",
    "hvp_fn": "implicit",
    "implicit_meta_grad": "implicit",
    "Conv4": "models",
    "check_transductive_bn": "models",
    "make_transductive_bn": "models",
    "ClassPool": "tasks",
    "Task": "tasks",
    "TaskSampler": "tasks",
    "fixed_tasks": "tasks",
    "IMAMLTrainer": "trainers",
    "MAMLTrainer": "trainers",
}
_LAZY_SUBMODULES = (
    "bench",
    "checkpoint",
    "cli",
    "data",
    "dock",
    "export",
    "gates",
    "implicit",
    "models",
    "tasks",
    "trainers",
)

if TYPE_CHECKING:  # for type checkers and IDEs only; at run time everything loads lazily
    from .dock import AdaptedTask, BudgetSchedule, MetaDOCK
    from .export import count, export_task
    from .gates import BinarizeSTE, GatedConv2d, binarize_ste, mask_mode
    from .implicit import cg_solve, hvp_fn, implicit_meta_grad
    from .models import Conv4, check_transductive_bn, make_transductive_bn
    from .tasks import ClassPool, Task, TaskSampler, fixed_tasks
    from .trainers import IMAMLTrainer, MAMLTrainer


def __getattr__(name: str) -> Any:
    if name in _LAZY_ATTRS:
        value = getattr(importlib.import_module(f"{__name__}.{_LAZY_ATTRS[name]}"), name)
        globals()[name] = value
        return value
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_ATTRS) | set(_LAZY_SUBMODULES))


__all__ = [
    "AdaptedTask",
    "BinarizeSTE",
    "BudgetSchedule",
    "ClassPool",
    "Conv4",
    "GatedConv2d",
    "IMAMLTrainer",
    "MAMLTrainer",
    "MetaDOCK",
    "Task",
    "TaskSampler",
    "binarize_ste",
    "cg_solve",
    "check_transductive_bn",
    "count",
    "export_task",
    "fixed_tasks",
    "hvp_fn",
    "implicit_meta_grad",
    "make_transductive_bn",
    "mask_mode",
]
