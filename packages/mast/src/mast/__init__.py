"""MAST: multi-agent system failure taxonomy and LLM-as-a-judge annotator (arXiv 2503.13657).

Quick API::

    from mast import taxonomy, Annotator, load_traces
    from mast.judges import OpenAICompatibleJudge
    ann = Annotator(OpenAICompatibleJudge("http://127.0.0.1:8000/v1", "my-model"))
    results = ann.annotate(load_traces("traces.jsonl"))
"""

import importlib
from typing import TYPE_CHECKING, Any

# Names are imported on first use (PEP 562) so that `import mast` and `mast --help` stay fast and the
# HTTP/numpy parts load only when used.
_LAZY = {
    "Annotation": "annotate",
    "Annotator": "annotate",
    "load_annotations": "annotate",
    "save_annotations": "annotate",
    "ParsedAnnotation": "parse",
    "parse_judge_output": "parse",
    "PromptPack": "prompts",
    "render": "prompts",
    "Trace": "traces",
    "Turn": "traces",
    "load_traces": "traces",
    "save_traces": "traces",
}
_SUBMODULES = ("agreement", "detectors", "report", "taxonomy")

if TYPE_CHECKING:
    from . import agreement, detectors, report, taxonomy
    from .annotate import Annotation, Annotator, load_annotations, save_annotations
    from .parse import ParsedAnnotation, parse_judge_output
    from .prompts import PromptPack, render
    from .traces import Trace, Turn, load_traces, save_traces


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _LAZY:
        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__version__ = "0.1.0"

__all__ = [
    "Annotation",
    "Annotator",
    "ParsedAnnotation",
    "PromptPack",
    "Trace",
    "Turn",
    "agreement",
    "detectors",
    "load_annotations",
    "load_traces",
    "parse_judge_output",
    "render",
    "report",
    "save_annotations",
    "save_traces",
    "taxonomy",
]
