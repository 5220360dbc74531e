"""One CLI error convention for every paperworks console script.

- Argument types (`positive_int`, `fraction`, `int_list`, ...) reject bad values at parse time, so
  argparse prints `usage` + one line naming the option and exits 2 before any work starts.
- `check_out_dir` / `check_out_file` prove an output location is writable before any work.
- `run_cli(main, argv, prog=...)` turns user errors (`UserError`, and file errors on paths the user
  gave) into one line `prog: error: ...` on stderr with exit code 2; Ctrl-C exits 130 with one line.
  Tracebacks are shown only with `--debug` (or PAPERWORKS_DEBUG=1) or for real bugs.

Stdlib only: importing this module never imports torch, so `--help` stays fast.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


class UserError(Exception):
    """A mistake in what the user asked for (bad value, missing or corrupt file, ...): one line, exit 2."""


# --------------------------------------------------------------------------------------------------
# argparse types: each raises argparse.ArgumentTypeError, which argparse reports with the option name.


def _parse_number(text: str, kind: type) -> Any:
    try:
        v = kind(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not {'an integer' if kind is int else 'a number'}"
        ) from None
    if kind is float and not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return v


def int_range(lo: int | None = None, hi: int | None = None) -> Callable[[str], int]:
    """An int in [lo, hi] (either bound optional)."""

    def parse(text: str) -> int:
        v = _parse_number(text, int)
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise argparse.ArgumentTypeError(f"{v} is out of range: {_describe(lo, hi, False, False)}")
        return v

    parse.__name__ = f"int in {_describe(lo, hi, False, False)}"
    return parse


def float_range(
    lo: float | None = None, hi: float | None = None, *, lo_open: bool = False, hi_open: bool = False
) -> Callable[[str], float]:
    """A finite float between lo and hi (open or closed ends; NaN and inf always refused)."""

    def parse(text: str) -> float:
        v = _parse_number(text, float)
        bad = (lo is not None and (v < lo or (lo_open and v == lo))) or (
            hi is not None and (v > hi or (hi_open and v == hi))
        )
        if bad:
            raise argparse.ArgumentTypeError(f"{v:g} is out of range: {_describe(lo, hi, lo_open, hi_open)}")
        return v

    parse.__name__ = f"number in {_describe(lo, hi, lo_open, hi_open)}"
    return parse


def _describe(lo, hi, lo_open, hi_open) -> str:
    if lo is not None and hi is not None:
        return f"{'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
    if lo is not None:
        return f"must be {'>' if lo_open else '>='} {lo}"
    if hi is not None:
        return f"must be {'<' if hi_open else '<='} {hi}"
    return "any finite number"


positive_int = int_range(1)
nonneg_int = int_range(0)
positive_float = float_range(0.0, lo_open=True)
nonneg_float = float_range(0.0)
finite_float = float_range()
fraction = float_range(0.0, 1.0, lo_open=True)  # (0, 1]: budgets, keep ratios
probability = float_range(0.0, 1.0)  # [0, 1]
positive_int.__name__ = "positive int"
nonneg_int.__name__ = "non-negative int"
positive_float.__name__ = "positive number"
fraction.__name__ = "fraction in (0, 1]"
probability.__name__ = "probability in [0, 1]"


def list_of(item: Callable[[str], Any], *, min_len: int = 1) -> Callable[[str], list]:
    """A comma-separated list whose items each pass `item` (e.g. `--lengths 8,32,96`)."""

    def parse(text: str) -> list:
        parts = [p.strip() for p in text.split(",") if p.strip()]
        if len(parts) < min_len:
            raise argparse.ArgumentTypeError(
                f"{text!r}: expected at least {min_len} comma-separated value(s)"
            )
        out = []
        for p in parts:
            try:
                out.append(item(p))
            except argparse.ArgumentTypeError as e:
                raise argparse.ArgumentTypeError(f"in {text!r}: {e}") from None
        return out

    return parse


int_list = list_of(positive_int)
float_list = list_of(finite_float)


def existing_file(text: str) -> Path:
    p = Path(text).expanduser()
    if not p.exists():
        raise argparse.ArgumentTypeError(f"{text!r}: no such file")
    if not p.is_file():
        raise argparse.ArgumentTypeError(f"{text!r}: not a file")
    if not os.access(p, os.R_OK):
        raise argparse.ArgumentTypeError(f"{text!r}: not readable")
    return p


def existing_dir(text: str) -> Path:
    p = Path(text).expanduser()
    if not p.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r}: no such directory")
    return p


def choice_of(options: Sequence[str]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in options:
            raise argparse.ArgumentTypeError(f"{text!r}: choose one of {', '.join(options)}")
        return text

    return parse


# --------------------------------------------------------------------------------------------------
# Output locations, checked before any work.


def check_out_dir(path: str | Path, *, what: str = "--out") -> Path:
    """Create `path` if needed and prove it is a writable directory (raises UserError otherwise)."""
    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise UserError(f"{what} {str(path)!r} exists and is not a directory")
    try:
        p.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=p, prefix=".write-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise UserError(f"{what} {str(path)!r} is not writable: {e.strerror or e}") from None
    return p


def check_out_file(path: str | Path, *, what: str = "--out") -> Path:
    """Prove the file `path` can be written (its folder is created and probed); nothing is written to it."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise UserError(f"{what} {str(path)!r} is a directory, expected a file path")
    check_out_dir(p.parent if str(p.parent) else Path("."), what=what)
    if p.exists() and not os.access(p, os.W_OK):
        raise UserError(f"{what} {str(path)!r} is not writable")
    return p


def require(cond: bool, message: str) -> None:
    """Raise UserError(message) unless cond: for cross-argument checks after parsing."""
    if not cond:
        raise UserError(message)


# --------------------------------------------------------------------------------------------------
# The top-level handler.


def debug_enabled(argv: Sequence[str] | None) -> bool:
    return os.environ.get("PAPERWORKS_DEBUG", "") not in ("", "0") or "--debug" in (argv or ())


def add_debug_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--debug", action="store_true", help="show full tracebacks for errors")


def run_cli(main: Callable[[list[str]], int | None], argv: Sequence[str] | None = None, *, prog: str) -> int:
    """Run `main(argv)` under the error convention and return the exit code.

    UserError, and OS errors about files (missing, permission, not a directory, disk full), become
    `prog: error: <one line>` with exit 2; KeyboardInterrupt exits 130; any other exception is a bug
    and keeps its traceback (exit 1). `--debug` / PAPERWORKS_DEBUG=1 re-raises everything."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = debug_enabled(args)
    try:
        rc = main(args)
        return int(rc or 0)
    except SystemExit as e:  # argparse's own exit (2 for bad args, 0 for --help) passes through
        code = e.code
        if isinstance(code, str):
            print(f"{prog}: error: {code}", file=sys.stderr)
            return EXIT_USER_ERROR
        return int(code or 0)
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"{prog}: interrupted; finished results were kept", file=sys.stderr)
        return EXIT_INTERRUPTED
    except UserError as e:
        if debug:
            raise
        print(f"{prog}: error: {_one_line(e)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError) as e:
        if debug:
            raise
        where = f": {e.filename}" if getattr(e, "filename", None) else ""
        print(f"{prog}: error: {e.strerror or _one_line(e)}{where}", file=sys.stderr)
        return EXIT_USER_ERROR
    except Exception:
        traceback.print_exc()
        print(f"{prog}: internal error (a bug: please report it with the traceback above)", file=sys.stderr)
        return 1


def _one_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return " ".join(text.split("\n"))


# --------------------------------------------------------------------------------------------------
# One CLI style (issue 20): the same spelling of the same options in every console script.
#   --out DIR        always a directory (the command names the files inside it)
#   --seeds N        always a count: seeds 0..N-1 (a single run takes --seed S)
#   --data-root DIR  where datasets live
#   --device D       auto (default: cuda when present), cpu, cuda, cuda:N
#   --threads N      torch intra-op threads (default: torch's own choice)
#   --no-progress    no progress bars
#   <script> bench   runs the package's benchmark at the same default scale as `make bench`


def device_arg(text: str) -> str:
    t = text.strip().lower()
    if t in ("auto", "cpu", "cuda", "mps") or (t.startswith("cuda:") and t[5:].isdigit()):
        return t
    raise argparse.ArgumentTypeError(f"{text!r}: use auto, cpu, cuda, cuda:N or mps")


def add_runtime_args(
    parser: argparse.ArgumentParser, *, device: bool = True, threads: bool = True, progress: bool = True
) -> None:
    """Add --device / --threads / --no-progress in the one spelling every paperworks CLI uses."""
    if device:
        parser.add_argument(
            "--device",
            type=device_arg,
            default="auto",
            help="auto (cuda when present, else cpu), cpu, cuda, cuda:N",
        )
    if threads:
        parser.add_argument(
            "--threads", type=positive_int, default=None, help="torch CPU threads (default: torch's)"
        )
    if progress:
        parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def resolve_device(name: str = "auto"):
    """The torch.device for a --device value; a clear UserError when CUDA is asked for and absent."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"--device {name}: CUDA is not available on this machine (use --device cpu)")
        idx = int(name.split(":")[1]) if ":" in name else 0
        if idx >= torch.cuda.device_count():
            raise UserError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) present")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UserError("--device mps: MPS is not available on this machine")
    return torch.device(name)


def apply_runtime_args(args: argparse.Namespace):
    """Apply --threads and resolve --device; returns the torch.device (or None without --device)."""
    threads = getattr(args, "threads", None)
    if threads:
        import torch

        torch.set_num_threads(threads)
    dev = getattr(args, "device", None)
    return resolve_device(dev) if dev is not None else None


def add_bench_command(subparsers, package: str, *, help_text: str | None = None) -> argparse.ArgumentParser:
    """`<script> bench [--scale S] [--results DIR]`: this package's benchmark, same default as `make bench`."""
    sp = subparsers.add_parser(
        "bench",
        help=help_text or f"run the {package} benchmark (writes <results>/{package}/ and REPORT.md)",
        description=f"Run the {package} benchmark registered for `paperworks-bench` (same default scale as make bench).",
    )
    sp.add_argument(
        "--scale",
        choices=("smoke", "cpu", "full", "gpu"),
        default=os.environ.get("SCALE", "cpu"),
        help="smoke (seconds), cpu (default, minutes), full (the powered comparisons, <= 45 min), gpu",
    )
    sp.add_argument(
        "--results",
        default=None,
        help="results folder (default, as make bench: benchmarks/results for cpu, benchmarks/results/<scale> otherwise)",
    )
    sp.add_argument("--no-progress", action="store_true", help="no progress bars")
    sp.set_defaults(func=lambda a: _run_bench(package, a), bench_package=package)
    return sp


def _run_bench(package: str, args: argparse.Namespace) -> int:
    from .bench import _main as bench_main

    results = args.results or (
        "benchmarks/results" if args.scale == "cpu" else f"benchmarks/results/{args.scale}"
    )
    argv = ["--scale", args.scale, "--results", results, "--package", package]
    if getattr(args, "no_progress", False):
        argv.append("--no-progress")
    return bench_main(argv)
