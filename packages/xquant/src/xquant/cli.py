"""`xquant-eval` (also installed as `xquant`): perplexity, memory, latency and roofline of XQuant caches.

Examples::

    xquant-eval ppl --model tiny:llama --data builtin:corpus --methods fp16 kivi*-2 xquant-4 xquant-cl-3
    xquant-eval ppl --model ./my-llama --data notes.txt --seq-len 512 --group-size 128
    xquant-eval memory --hidden 4096 --kv-dim 4096 --layers 32 --methods kivi*-2 xquant-4 xquant-cl-2
    xquant-eval latency --model tiny:llama --contexts 256 1024 --methods fp16 xquant-4
    xquant-eval roofline --gpu h200 --d 4096 --g 4 --bits 4.25 --batch 1 8
    xquant-eval bench --scale smoke

`--out DIR` writes `DIR/<command>.json` (ppl.json, memory.json, latency.json, roofline.json).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

from paperworks_shared.cli import (
    UserError,
    add_bench_command,
    add_debug_flag,
    add_runtime_args,
    apply_runtime_args,
    check_out_dir,
    existing_dir,
    float_range,
    int_range,
    positive_float,
    require,
    run_cli,
)

from .config import SUPPORTED_BITS

#: sane upper bounds: a typo (`--layers 99999999999`) is refused at parse time instead of hanging
MAX_DIM = 1 << 20
MAX_LAYERS = 100_000
MAX_TOKENS = 1 << 24

METHOD_HELP = "method names: fp16, kivi*-B (pre-RoPE KIVI), kivi-B, xquant-B, xquant-cl-B, xquant-cl-open-B; B in 2/3/4/8/16"


def _load_model(spec: str):
    """`tiny:ARCH` (seeded random tiny model), `pretrained:ARCH@SCALE` (shared corpus-trained), or a local folder."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if spec.startswith("tiny:"):
        from paperworks_shared.models import ARCHITECTURES, byte_tokenizer, tiny_causal_lm

        require(spec[5:] in ARCHITECTURES, f"--model {spec!r}: unknown tiny architecture; choose tiny:ARCH "
                f"with ARCH in {', '.join(ARCHITECTURES)}")  # fmt: skip
        return tiny_causal_lm(spec[5:]), byte_tokenizer()
    if spec.startswith("pretrained:"):
        from paperworks_shared.models import ARCHITECTURES
        from paperworks_shared.train import pretrained_tiny

        arch, _, scale = spec[11:].partition("@")
        require(arch in ARCHITECTURES, f"--model {spec!r}: unknown architecture {arch!r}")
        try:
            t = pretrained_tiny(arch, scale or "smoke")
        except (KeyError, ValueError) as e:
            raise UserError(f"--model {spec!r}: {e}") from None
        return t.model, t.tokenizer
    path = Path(spec)
    require(
        (path / "config.json").is_file(),
        f"--model {spec!r}: not tiny:ARCH, pretrained:ARCH@SCALE, or a local model folder with config.json",
    )
    from paperworks_shared.models import load_model

    try:
        return load_model(path)
    except Exception as e:  # corrupt/incomplete folder: one line naming the path
        raise UserError(f"--model {spec!r}: cannot load the model folder: {type(e).__name__}: {e}") from None


def _rooted(args, path: str) -> str:
    """A relative data path is read from --data-root when given."""
    root = getattr(args, "data_root", None)
    return str(Path(root) / path) if root and not Path(path).is_absolute() else path


def _windows(args, tokenizer):
    import torch

    from .evaluation import byte_windows, token_windows

    if args.data == "builtin:corpus":
        from paperworks_shared.corpus import corpus_text

        text = corpus_text("validation")
    elif args.data.startswith("dataset:"):
        from datasets import load_dataset, load_from_disk

        name, _, rest = args.data[8:].partition(":")
        split, _, column = rest.partition(":")
        if Path(_rooted(args, name)).is_dir():
            name = _rooted(args, name)
        if Path(name).is_dir():  # a `save_to_disk` folder (Dataset or DatasetDict)
            ds = load_from_disk(name)
            ds = ds[split or "validation"] if hasattr(ds, "keys") else ds
        else:  # a dataset name resolvable offline (local script/cache)
            ds = load_dataset(name, split=split or "validation")
        if (column or "text") not in ds.column_names:
            raise UserError(f"--data: column {column or 'text'!r} not in {ds.column_names}")
        text = "\n\n".join(ds[column or "text"])
    else:
        p = Path(_rooted(args, args.data))
        require(
            p.is_file(),
            f"--data {args.data!r}: no such file (or use builtin:corpus / dataset:NAME:SPLIT:COLUMN)",
        )
        text = p.read_text(encoding="utf-8", errors="replace")
    try:
        if tokenizer is not None and getattr(tokenizer, "vocab_size", 0) != 259:
            ids = torch.tensor(tokenizer(text)["input_ids"])
            return token_windows(ids, args.seq_len, args.windows)
        return byte_windows(text, args.seq_len, args.windows)
    except ValueError as e:  # text too short for the requested windows
        raise UserError(f"--data {args.data!r}: {e}") from None


def _finite_or_none(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None  # strict JSON: an undefined value (e.g. dppl without an fp16 row) is null
    return v


def out_path(args) -> Path | None:
    """`--out DIR` -> DIR/<command>.json (None without --out)."""
    out = getattr(args, "out", None)
    return None if not out else Path(out).expanduser() / f"{args.cmd}.json"


def _emit(rows, args):
    from paperworks_shared.bench import markdown_table
    from paperworks_shared.files import atomic_write_json

    print(markdown_table(rows))
    path = out_path(args)
    if path is not None:
        clean = [
            {k: _finite_or_none(float(v) if hasattr(v, "item") else v) for k, v in r.items()} for r in rows
        ]
        atomic_write_json(path, clean)  # temp file + rename: never a half-written file
        print(f"wrote {path}", file=sys.stderr)


def _cfg(args, name):
    from .methods import parse_method

    return parse_method(
        name,
        group_size=args.group_size,
        residual_length=args.residual_length,
        base_layer=args.base_layer,
        base_bits=args.base_bits,
        early_layers=args.early_layers,
        early_bits=args.early_bits,
    )


def _check_methods_on(model, args) -> None:
    """Build (and drop) every method's cache on the model: group sizes, base layer, RoPE... are
    refused here, before any evaluation, as one line naming the method."""
    from .simulate import make_cache

    for name in args.methods:
        cfg = _cfg(args, name)
        if cfg is None:
            continue
        try:
            make_cache(model, cfg).detach()
        except (ValueError, NotImplementedError) as e:
            raise UserError(f"method {name}: {e}") from None


def _runtime(args):
    """--threads / --device applied (an unavailable device is one UserError, before any model work)."""
    return apply_runtime_args(args)


def _model_on(args, dev):
    model, tok = _load_model(args.model)
    model = model.to(dev)
    _check_methods_on(model, args)
    return model, tok


def cmd_ppl(args):
    from tqdm.auto import tqdm

    from .evaluation import paper_ratio, perplexity

    dev = _runtime(args)
    model, tok = _model_on(args, dev)
    windows = _windows(args, tok)
    rows, fp = [], None
    for name in tqdm(args.methods, desc="xquant-eval ppl", disable=args.no_progress, leave=False):
        cfg = _cfg(args, name)
        ppl = perplexity(model, windows, cfg, args.batch_size)
        fp = ppl if name == "fp16" else fp
        rows.append({"method": name, "mem_vs_fp16_kv": paper_ratio(model, cfg), "ppl": ppl,
                     "dppl": (ppl - fp) if fp is not None else float("nan")})  # fmt: skip
    _emit(rows, args)


def cmd_memory(args):
    from .accounting import paper_ratio_kivi, paper_ratio_xquant
    from .config import KIVIConfig

    rows = []
    if args.model:
        import torch

        from .evaluation import measured_ratio, paper_ratio

        dev = _runtime(args)
        model, _ = _model_on(args, dev)
        ids = torch.randint(0, 256, (args.batch, args.seq_len))
        for name in args.methods:
            cfg = _cfg(args, name)
            nbytes, ratio = measured_ratio(model, cfg, ids)
            rows.append({"method": name, "paper_ratio": paper_ratio(model, cfg), "measured_ratio": ratio,
                         "measured_bytes": nbytes, "bytes_per_token": nbytes / ids.numel()})  # fmt: skip
    else:
        require(
            args.hidden is not None and args.kv_dim is not None and args.layers is not None,
            "memory: give --model, or all of --hidden --kv-dim --layers",
        )
        fp16_tok = args.layers * 2 * args.kv_dim * 2
        for name in args.methods:
            cfg = _cfg(args, name)
            if cfg is None:
                r = 1.0
            elif isinstance(cfg, KIVIConfig):
                r = paper_ratio_kivi(cfg, args.layers)
            else:
                r = paper_ratio_xquant(cfg, args.hidden, args.kv_dim, args.layers)
            rows.append({"method": name, "paper_ratio": r, "compression": 1 / r, "bytes_per_token": r * fp16_tok,
                         f"GiB_at_{args.seq_len}x{args.batch}": r * fp16_tok * args.seq_len * args.batch / 2**30})  # fmt: skip
    _emit(rows, args)


def cmd_latency(args):
    from .evaluation import decode_latency

    dev = _runtime(args)
    model, _ = _model_on(args, dev)
    rows = []
    for c in args.contexts:
        for name in args.methods:
            ms = decode_latency(
                model, _cfg(args, name), c, args.steps, args.batch, progress=not args.no_progress
            )
            rows.append({"context": c, "batch": args.batch, "method": name, "ms_per_token": ms})
    _emit(rows, args)


def cmd_roofline(args):
    from .accounting import HARDWARE, Hardware, breakeven_context

    require(args.g <= args.d, f"--g {args.g} is larger than --d {args.d} (query heads per KV head)")
    if args.gpu == "custom":
        require(
            args.tflops is not None and args.tbps is not None,
            "roofline --gpu custom needs --tflops and --tbps",
        )
        hw = Hardware("custom", args.tflops, args.tbps)
    else:
        hw = HARDWARE[args.gpu]
    rows = []
    for b in args.batch:
        rows.append({"hardware": hw.name, "ridge_flop_per_byte": hw.ridge, "d": args.d, "g": args.g,
                     "bits": args.bits, "batch": b,
                     "breakeven_context": breakeven_context(args.d, args.bits, hw, groups=args.g, batch=b,
                                                            weight_bytes_per_layer=args.weight_bytes)})  # fmt: skip
    _emit(rows, args)


def _method(text: str) -> str:
    """argparse type: a method name parse_method accepts (checked at parse time)."""
    from .methods import parse_method

    try:
        parse_method(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def _bits(text: str) -> int:
    v = int_range(2, 16)(text)
    if v not in SUPPORTED_BITS:
        raise argparse.ArgumentTypeError(f"{v} is not one of {', '.join(map(str, SUPPORTED_BITS))}")
    return v


_bits.__name__ = "bit width"
_method.__name__ = "method name"
_dim = int_range(1, MAX_DIM)
_tokens = int_range(1, MAX_TOKENS)


def _common_method_args(p, group=64):
    p.add_argument("--methods", type=_method, nargs="+", default=["fp16", "kivi*-2", "xquant-4", "xquant-cl-3"],
                   help=METHOD_HELP)  # fmt: skip
    p.add_argument("--group-size", type=_dim, default=group, help="quantization group size (paper: 128)")
    p.add_argument("--residual-length", type=int_range(0, MAX_TOKENS), default=0,
                   help="full-precision newest tokens (0 for PPL)")  # fmt: skip
    p.add_argument(
        "--base-layer", type=int_range(0, MAX_LAYERS - 1), default=2, help="XQuant-CL base layer (paper: 2)"
    )
    p.add_argument("--base-bits", type=_bits, default=4, help="bits of the CL base layer (paper: 4)")
    p.add_argument("--early-layers", type=int_range(0, MAX_LAYERS), default=0,
                   help="first N layers at --early-bits (paper Table 4: 3)")  # fmt: skip
    p.add_argument("--early-bits", type=_bits, default=4)
    p.add_argument(
        "--out", help="write the rows to OUT/<command>.json (a directory; atomically, strict JSON)"
    )


def build_parser(prog: str = "xquant-eval") -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog=prog,
        description="Evaluate XQuant / XQuant-CL caches (arXiv 2508.10395) against FP16 and KIVI baselines.",
        epilog="Models: tiny:ARCH | pretrained:ARCH@SCALE | local folder. " + METHOD_HELP,
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("ppl", help="teacher-forced perplexity under each cache method (paper protocol)")
    p.add_argument("--model", required=True, help="tiny:ARCH, pretrained:ARCH@SCALE, or a local model folder")
    p.add_argument(
        "--data", default="builtin:corpus", help="text file, builtin:corpus, or dataset:NAME:SPLIT:COLUMN"
    )
    p.add_argument("--seq-len", type=int_range(2, MAX_TOKENS), default=256)
    p.add_argument("--windows", type=int_range(1, 1 << 20), default=16, help="number of evaluation windows")
    p.add_argument("--batch-size", type=int_range(1, 1 << 16), default=8)
    p.add_argument(
        "--data-root",
        type=existing_dir,
        help="folder that a relative --data path (file or saved dataset) is read from",
    )
    add_runtime_args(p)
    _common_method_args(p)
    p.set_defaults(func=cmd_ppl)
    p = sub.add_parser("memory", help="bytes per token and ratio to an FP16 KV cache (analytic or measured)")
    p.add_argument("--model", help="measure real cache bytes on this model (else analytic from --hidden ...)")
    p.add_argument("--hidden", type=_dim, help="model width d")
    p.add_argument("--kv-dim", type=_dim, help="KV width (num_kv_heads * head_dim)")
    p.add_argument("--layers", type=int_range(1, MAX_LAYERS))
    p.add_argument("--seq-len", type=_tokens, default=256)
    p.add_argument("--batch", type=int_range(1, 1 << 16), default=1)
    add_runtime_args(p)
    _common_method_args(p, group=128)
    p.set_defaults(func=cmd_memory)
    p = sub.add_parser("latency", help="decode ms/token after a prefill of each context length")
    p.add_argument("--model", required=True)
    p.add_argument("--contexts", type=_tokens, nargs="+", default=[256, 1024])
    p.add_argument("--steps", type=int_range(1, 1 << 20), default=16)
    p.add_argument("--batch", type=int_range(1, 1 << 16), default=1)
    add_runtime_args(p)
    _common_method_args(p)
    p.set_defaults(func=cmd_latency)
    p = sub.add_parser(
        "roofline", help="break-even context length of rematerialization (paper §3.4, eq. 3/4)"
    )
    p.add_argument("--gpu", default="h200", choices=["paper", "h100-sxm", "h200", "custom"])
    p.add_argument("--tflops", type=positive_float, help="custom: dense 16-bit TFLOP/s")
    p.add_argument("--tbps", type=positive_float, help="custom: memory bandwidth TB/s")
    p.add_argument("--d", type=_dim, default=4096, help="hidden size")
    p.add_argument("--g", type=_dim, default=1, help="query heads per KV head (1 = MHA)")
    p.add_argument("--bits", type=float_range(0, 32, lo_open=True), default=4.25,
                   help="cache bits per element incl. metadata")  # fmt: skip
    p.add_argument("--batch", type=int_range(1, 1 << 20), nargs="+", default=[1, 8])
    p.add_argument("--weight-bytes", type=positive_float,
                   help="weight bytes per layer (default: paper's 24d² / 26d²+4(d/g)²)")  # fmt: skip
    p.add_argument("--out", help="write the rows to OUT/roofline.json (a directory)")
    p.set_defaults(func=cmd_roofline)
    add_bench_command(sub, "xquant")
    for sp in sub.choices.values():
        add_debug_flag(sp)
    return ap


def _main(argv: list[str]) -> int:
    args = build_parser(_prog()).parse_args(argv)  # usage line names the script that was run
    if getattr(args, "out", None):
        check_out_dir(args.out)  # before any model loading or evaluation
    if args.cmd == "memory" and args.model:
        require(args.batch * args.seq_len <= MAX_TOKENS,
                f"memory --model: --batch x --seq-len = {args.batch * args.seq_len} tokens is more than "
                f"{MAX_TOKENS} (a forward of that size is not a memory estimate)")  # fmt: skip
    return int(args.func(args) or 0)


def _prog() -> str:
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    return name if name in ("xquant", "xquant-eval") else "xquant-eval"


def main(argv=None) -> int:
    """Console script: user errors -> one line `xquant-eval: error: ...`, exit 2 (`--debug` for tracebacks)."""
    return run_cli(_main, argv, prog=_prog())


if __name__ == "__main__":
    raise SystemExit(main())
