"""Trace schema, loaders for MAS log formats and span exports, sanitisation and `datasets` conversion."""

from .hf import from_hf_dataset, to_hf_dataset
from .loaders import FORMATS, detect_format, load_traces, save_traces
from .sanitize import LEAK_FIELDS, SanitizeReport, redact_secrets, sanitize_trace, strip_leak_fields
from .schema import Trace, Turn

__all__ = [
    "FORMATS",
    "LEAK_FIELDS",
    "SanitizeReport",
    "Trace",
    "Turn",
    "detect_format",
    "from_hf_dataset",
    "load_traces",
    "redact_secrets",
    "sanitize_trace",
    "save_traces",
    "strip_leak_fields",
    "to_hf_dataset",
]
