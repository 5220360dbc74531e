"""MetaDOCK: per-task dynamic kernel selection for MAML / iMAML (Chavan et al., CVPR 2022)."""

from .dock import AdaptedTask, BudgetSchedule, MetaDOCK
from .export import count, export_task
from .gates import BinarizeSTE, GatedConv2d, binarize_ste, mask_mode
from .implicit import cg_solve, hvp_fn, implicit_meta_grad
from .models import Conv4, check_transductive_bn, make_transductive_bn
from .tasks import ClassPool, Task, TaskSampler, fixed_tasks
from .trainers import IMAMLTrainer, MAMLTrainer

__version__ = "0.1.0"

# Submodules with heavier imports (datasets, PIL) load on first attribute access: `md.data.glyphs(...)`.
_LAZY_SUBMODULES = ("bench", "checkpoint", "cli", "data")


def __getattr__(name: str):
    if name in _LAZY_SUBMODULES:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY_SUBMODULES))


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
