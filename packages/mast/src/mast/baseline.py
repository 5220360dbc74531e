"""A re-implementation of the *official* first-match parser, for comparison only (DESIGN.md §1.3).

Written from the description of ``parse_responses`` in the MAST notebook / agentdash ``_parse_response``:
IGNORECASE|DOTALL first-match regexes, unescaped dots, no word boundaries, missing mode -> 0. Do not
use it to annotate; the benchmark measures how often it is wrong.
"""

from __future__ import annotations

import re

from .taxonomy import MAST_V3


def official_first_match_parse(response: str, mode_ids=tuple(MAST_V3.ids)) -> dict[str, int]:
    """Per-mode 0/1 exactly as the upstream chain would assign them (including its bugs)."""
    text = response.strip()
    if text.startswith("@@"):
        text = text[2:]
    if text.endswith("@@"):
        text = text[:-2]
    out = {}
    flags = re.IGNORECASE | re.DOTALL
    for mode in mode_ids:
        patterns = [
            rf"C\..*?{mode}.*?(yes|no)",
            rf"C{mode}\s+(yes|no)",
            rf"{mode}\s*[:]\s*(yes|no)",
            rf"{mode}\s+(yes|no)",
            rf"{mode}\s*\n\s*(yes|no)",
            rf"C\.{mode}\s*\n\s*(yes|no)",
        ]
        val = None
        for p in patterns:
            m = re.search(p, text, flags)
            if m:
                val = int(m.group(1).lower() == "yes")
                break
        if val is None:
            m = re.search(rf"(?:C\.)?{mode}.*?(yes|no)", text, flags)
            val = int(m.group(1).lower() == "yes") if m else 0  # upstream: silent default to 0
        out[mode] = val
    return out
