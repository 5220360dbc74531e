"""Method names used by the CLI and the benchmark, e.g. ``fp16``, ``kivi*-2``, ``kivi-2``, ``xquant-4``,
``xquant-cl-3``, ``xquant-cl-open-3`` -> a cache config (None = the FP16/full-precision DynamicCache)."""

from __future__ import annotations

import re

from .config import KIVIConfig, XQuantConfig

_PAT = re.compile(r"^(fp16|kivi\*|kivi|xquant|xquant-cl|xquant-cl-open)(?:-(\d+))?$")


def parse_method(
    name: str,
    group_size: int = 128,
    residual_length: int = 0,
    base_layer: int = 0,
    base_bits: int = 4,
    early_layers: int = 0,
    early_bits: int = 4,
    mode: str = "auto",
):
    """Config for a method name; raises ValueError naming the accepted forms."""
    m = _PAT.match(name.strip().lower())
    if not m or (m.group(1) != "fp16" and m.group(2) is None):
        raise ValueError(
            f"unknown method {name!r}; use fp16, kivi*-B, kivi-B, xquant-B, xquant-cl-B or xquant-cl-open-B "
            "with B in 2/3/4/8/16"
        )
    kind, bits = m.group(1), int(m.group(2) or 16)
    if kind == "fp16":
        return None
    if kind.startswith("kivi"):
        return KIVIConfig(
            bits=bits,
            group_size=group_size,
            residual_length=residual_length,
            pre_rope=kind == "kivi*",
            early_layers=early_layers,
            early_bits=early_bits,
        )
    return XQuantConfig(
        bits=bits,
        group_size=group_size,
        residual_length=residual_length,
        mode=mode,
        cross_layer=kind != "xquant",
        closed_loop=kind != "xquant-cl-open",
        base_layer=base_layer,
        base_bits=base_bits,
        early_layers=early_layers,
        early_bits=early_bits,
    )
