"""Structured pruning of CNN and transformer object trackers, physically slimmed (arXiv 2211.13769).

The public names are resolved lazily (PEP 562), so ``import tracker_prune`` and ``tracker-prune --help``
do not import torch or timm; the first use of ``tracker_prune.Pruner`` (etc.) does.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # for type checkers and IDEs only
    from .pruner import Pruner, check_budget
    from .slim import set_masks, slim, slim_param_count

_LAZY = {
    "Pruner": "pruner",
    "check_budget": "pruner",
    "set_masks": "slim",
    "slim": "slim",
    "slim_param_count": "slim",
}

__all__ = ["Pruner", "check_budget", "set_masks", "slim", "slim_param_count"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'tracker_prune' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{mod}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])


class _Package(types.ModuleType):
    """``tracker_prune.slim`` is the function, as with an eager ``from .slim import slim``: the import
    system's ``setattr(package, "slim", <submodule>)`` is redirected to the function of that name."""

    def __setattr__(self, name: str, value: Any) -> None:
        if (
            name in _LAZY
            and isinstance(value, types.ModuleType)
            and value.__name__ == f"{__name__}.{_LAZY[name]}"
        ):
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
