"""Forward-hook taps on a named module: how the early readout sees the student's early features.

The official code slices a torchvision ResNet by hand (``SemiResNet`` = conv1..layer1, DESIGN.md §1.3);
here any ``nn.Module`` works (torchvision ``layer1``, timm ``stages.0`` / ``layer1``, HF
``encoder.layer.2``, plain ``Sequential`` indices ``"1"``) because the module is found by its dotted
name in ``named_modules()``. With ``stop=True`` the forward pass is aborted right after the tapped module,
so reading early features costs only the layers up to the tap.
"""

from __future__ import annotations

import torch
from torch import nn


class _StopForward(Exception):
    """Raised from the hook to abort the forward pass once the tapped output is captured."""


def find_module(model: nn.Module, name: str) -> nn.Module:
    """The submodule called ``name``; a clear KeyError listing the available names otherwise."""
    modules = dict(model.named_modules())
    if name not in modules or name == "":
        names = [n for n in modules if n]
        shown = ", ".join(names[:60]) + (f", ... ({len(names) - 60} more)" if len(names) > 60 else "")
        raise KeyError(
            f"readout layer {name!r} not found in {type(model).__name__}; available modules: {shown}"
        )
    return modules[name]


def _first_tensor(out):
    """Module outputs may be tensors, tuples (HF blocks) or ModelOutput-like objects."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    if hasattr(out, "last_hidden_state"):
        return out.last_hidden_state
    raise TypeError(f"the tapped module returned {type(out).__name__}, not a tensor")


class FeatureTap:
    """Capture the output of ``model.<module_name>`` on every forward; use as a context manager.

    ``detach=True`` stores a detached tensor (the readout must never send gradient into the student).
    """

    def __init__(self, model: nn.Module, module_name: str, detach: bool = True, stop: bool = False):
        self.model = model
        self.module_name = module_name
        self.module = find_module(model, module_name)
        self.detach = detach
        self.stop = stop
        self.output: torch.Tensor | None = None
        self._handle: torch.utils.hooks.RemovableHandle | None = None

    def _hook(self, module, inputs, output):
        t = _first_tensor(output)
        self.output = t.detach() if self.detach else t
        if self.stop:
            raise _StopForward

    def __enter__(self) -> FeatureTap:
        self._handle = self.module.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

    def remove(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def features(self, x) -> torch.Tensor:
        """Run the model on ``x`` (stopping early if ``stop``) and return the tapped output."""
        self.output = None
        attached = self._handle is not None
        if not attached:
            self.__enter__()
        try:
            self.model(x)
        except _StopForward:
            pass
        finally:
            if not attached:
                self.remove()
        if self.output is None:
            raise RuntimeError(f"module {self.module_name!r} was not called during the forward pass")
        return self.output


def modules_run_before(model: nn.Module, module_name: str, x) -> list[str]:
    """Names of the submodules that finish their forward no later than ``module_name`` does.

    Used only by the faithfulness flag that reproduces the official freezing bug (DESIGN.md §2.3-1): the
    official ``SemiResNet`` = every module computed up to the readout layer.
    """
    done: list[str] = []
    handles = []
    target = find_module(model, module_name)
    for name, mod in model.named_modules():
        if name == "":
            continue

        def hook(m, i, o, name=name):
            if name not in done:
                done.append(name)
            if m is target:
                raise _StopForward

        handles.append(mod.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(x)
    except _StopForward:
        pass
    finally:
        for h in handles:
            h.remove()
    return done
