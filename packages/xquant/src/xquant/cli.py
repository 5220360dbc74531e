"""`xquant-eval` (also installed as `xquant`): perplexity, memory, latency and roofline of XQuant caches.

Examples::

    xquant-eval ppl --model tiny:llama --data builtin:corpus --methods fp16 kivi*-2 xquant-4 xquant-cl-3
    xquant-eval ppl --model ./my-llama --data notes.txt --seq-len 512 --group-size 128
    xquant-eval memory --hidden 4096 --kv-dim 4096 --layers 32 --methods kivi*-2 xquant-4 xquant-cl-2
    xquant-eval latency --model tiny:llama --contexts 256 1024 --methods fp16 xquant-4
    xquant-eval roofline --gpu h200 --d 4096 --g 4 --bits 4.25 --batch 1 8
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

METHOD_HELP = "method names: fp16, kivi*-B (pre-RoPE KIVI), kivi-B, xquant-B, xquant-cl-B, xquant-cl-open-B; B in 2/3/4/8/16"


def _load_model(spec: str):
    """`tiny:ARCH` (seeded random tiny model), `pretrained:ARCH@SCALE` (shared corpus-trained), or a local folder."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if spec.startswith("tiny:"):
        from paperworks_shared.models import byte_tokenizer, tiny_causal_lm

        return tiny_causal_lm(spec[5:]), byte_tokenizer()
    if spec.startswith("pretrained:"):
        from paperworks_shared.train import pretrained_tiny

        arch, _, scale = spec[11:].partition("@")
        t = pretrained_tiny(arch, scale or "smoke")
        return t.model, t.tokenizer
    path = Path(spec)
    if not (path / "config.json").is_file():
        raise SystemExit(f"--model {spec!r}: not tiny:ARCH, pretrained:ARCH@SCALE, or a local model folder")
    from paperworks_shared.models import load_model

    return load_model(path)


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
        if Path(name).is_dir():  # a `save_to_disk` folder (Dataset or DatasetDict)
            ds = load_from_disk(name)
            ds = ds[split or "validation"] if hasattr(ds, "keys") else ds
        else:  # a dataset name resolvable offline (local script/cache)
            ds = load_dataset(name, split=split or "validation")
        if (column or "text") not in ds.column_names:
            raise SystemExit(f"--data: column {column or 'text'!r} not in {ds.column_names}")
        text = "\n\n".join(ds[column or "text"])
    else:
        p = Path(args.data)
        if not p.is_file():
            raise SystemExit(
                f"--data {args.data!r}: no such file (or use builtin:corpus / dataset:NAME:SPLIT:COLUMN)"
            )
        text = p.read_text(encoding="utf-8", errors="replace")
    if tokenizer is not None and getattr(tokenizer, "vocab_size", 0) != 259:
        ids = torch.tensor(tokenizer(text)["input_ids"])
        return token_windows(ids, args.seq_len, args.windows)
    return byte_windows(text, args.seq_len, args.windows)


def _emit(rows, args):
    from paperworks_shared.bench import markdown_table

    print(markdown_table(rows))
    if getattr(args, "json", None):
        Path(args.json).write_text(json.dumps(rows, indent=1, default=float))
        print(f"wrote {args.json}", file=sys.stderr)


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


def cmd_ppl(args):
    import torch

    from .evaluation import paper_ratio, perplexity

    torch.set_num_threads(args.threads)
    model, tok = _load_model(args.model)
    windows = _windows(args, tok)
    rows, fp = [], None
    for name in args.methods:
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

        model, _ = _load_model(args.model)
        ids = torch.randint(0, 256, (args.batch, args.seq_len))
        for name in args.methods:
            cfg = _cfg(args, name)
            nbytes, ratio = measured_ratio(model, cfg, ids)
            rows.append({"method": name, "paper_ratio": paper_ratio(model, cfg), "measured_ratio": ratio,
                         "measured_bytes": nbytes, "bytes_per_token": nbytes / ids.numel()})  # fmt: skip
    else:
        if not (args.hidden and args.kv_dim and args.layers):
            raise SystemExit("memory: give --model, or all of --hidden --kv-dim --layers")
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
    import torch

    from .evaluation import decode_latency

    torch.set_num_threads(args.threads)
    model, _ = _load_model(args.model)
    if args.device != "cpu":
        model = model.to(args.device)
    rows = []
    for c in args.contexts:
        for name in args.methods:
            ms = decode_latency(model, _cfg(args, name), c, args.steps, args.batch, progress=True)
            rows.append({"context": c, "batch": args.batch, "method": name, "ms_per_token": ms})
    _emit(rows, args)


def cmd_roofline(args):
    from .accounting import HARDWARE, Hardware, breakeven_context

    if args.gpu == "custom":
        if not (args.tflops and args.tbps):
            raise SystemExit("roofline --gpu custom needs --tflops and --tbps")
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


def _common_method_args(p, group=64):
    p.add_argument(
        "--methods", nargs="+", default=["fp16", "kivi*-2", "xquant-4", "xquant-cl-3"], help=METHOD_HELP
    )
    p.add_argument("--group-size", type=int, default=group, help="quantization group size (paper: 128)")
    p.add_argument("--residual-length", type=int, default=0, help="full-precision newest tokens (0 for PPL)")
    p.add_argument("--base-layer", type=int, default=2, help="XQuant-CL base layer (paper: 2)")
    p.add_argument("--base-bits", type=int, default=4, help="bits of the CL base layer (paper: 4)")
    p.add_argument(
        "--early-layers", type=int, default=0, help="first N layers at --early-bits (paper Table 4: 3)"
    )
    p.add_argument("--early-bits", type=int, default=4)
    p.add_argument("--json", help="also write the rows as JSON to this path")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="xquant-eval",
        description="Evaluate XQuant / XQuant-CL caches (arXiv 2508.10395) against FP16 and KIVI baselines.",
        epilog="Models: tiny:ARCH | pretrained:ARCH@SCALE | local folder. " + METHOD_HELP,
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("ppl", help="teacher-forced perplexity under each cache method (paper protocol)")
    p.add_argument("--model", required=True, help="tiny:ARCH, pretrained:ARCH@SCALE, or a local model folder")
    p.add_argument(
        "--data", default="builtin:corpus", help="text file, builtin:corpus, or dataset:NAME:SPLIT:COLUMN"
    )
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--windows", type=int, default=16, help="number of evaluation windows")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--threads", type=int, default=1)
    _common_method_args(p)
    p.set_defaults(func=cmd_ppl)
    p = sub.add_parser("memory", help="bytes per token and ratio to an FP16 KV cache (analytic or measured)")
    p.add_argument("--model", help="measure real cache bytes on this model (else analytic from --hidden ...)")
    p.add_argument("--hidden", type=int, help="model width d")
    p.add_argument("--kv-dim", type=int, help="KV width (num_kv_heads * head_dim)")
    p.add_argument("--layers", type=int)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--batch", type=int, default=1)
    _common_method_args(p, group=128)
    p.set_defaults(func=cmd_memory)
    p = sub.add_parser("latency", help="decode ms/token after a prefill of each context length")
    p.add_argument("--model", required=True)
    p.add_argument("--contexts", type=int, nargs="+", default=[256, 1024])
    p.add_argument("--steps", type=int, default=16)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    _common_method_args(p)
    p.set_defaults(func=cmd_latency)
    p = sub.add_parser(
        "roofline", help="break-even context length of rematerialization (paper §3.4, eq. 3/4)"
    )
    p.add_argument("--gpu", default="h200", choices=["paper", "h100-sxm", "h200", "custom"])
    p.add_argument("--tflops", type=float, help="custom: dense 16-bit TFLOP/s")
    p.add_argument("--tbps", type=float, help="custom: memory bandwidth TB/s")
    p.add_argument("--d", type=int, default=4096, help="hidden size")
    p.add_argument("--g", type=int, default=1, help="query heads per KV head (1 = MHA)")
    p.add_argument("--bits", type=float, default=4.25, help="cache bits per element incl. metadata")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    p.add_argument(
        "--weight-bytes", type=float, help="weight bytes per layer (default: paper's 24d² / 26d²+4(d/g)²)"
    )
    p.add_argument("--json")
    p.set_defaults(func=cmd_roofline)
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except ValueError as e:
        print(f"xquant-eval: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
