"""Synthetic long-context sandbox: tasks (`tasks`) and the tiny model trained on them (`model`)."""

from .model import PRESETS, SandboxSettings, sandbox_model, train_sandbox_model
from .tasks import TASKS, make_example, sandbox_dataset, training_texts

__all__ = [
    "TASKS",
    "make_example",
    "sandbox_dataset",
    "training_texts",
    "SandboxSettings",
    "PRESETS",
    "sandbox_model",
    "train_sandbox_model",
]
