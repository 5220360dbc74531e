"""MAST: multi-agent system failure taxonomy and LLM-as-a-judge annotator (arXiv 2503.13657).

Quick API::

    from mast import taxonomy, Annotator, load_traces
    from mast.judges import OpenAICompatibleJudge
    ann = Annotator(OpenAICompatibleJudge("http://127.0.0.1:8000/v1", "my-model"))
    results = ann.annotate(load_traces("traces.jsonl"))
"""

from . import agreement, detectors, report, taxonomy
from .annotate import Annotation, Annotator, load_annotations, save_annotations
from .parse import ParsedAnnotation, parse_judge_output
from .prompts import PromptPack, render
from .traces import Trace, Turn, load_traces, save_traces

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
