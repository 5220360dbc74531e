"""Benchmark records, discovery and the harness behind `make bench`.

A package registers one function in the entry-point group ``paperworks.benchmarks``::

    [project.entry-points."paperworks.benchmarks"]
    xquant = "xquant.bench:run"

and that function takes a `BenchContext`. It runs its experiments at ``ctx.scale`` ("smoke": seconds;
"cpu": every package together within 30 minutes on 2 cores; "full": at most 45 minutes per package on
2 cores, carrying the powered comparisons; "gpu") and calls ``ctx.record(...)`` once per experiment, which writes
``<results>/<package>/<experiment>.json`` (+ ``.png`` when given a figure). `write_report` turns all
records into REPORT.md: one section per package with the paper's claim, our table, the plots and
the verdict. One failing benchmark is reported and the others still run.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import functools
import json
import math
import os
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from .files import atomic_path, atomic_write_text
from .stats import check_headline

SCALES = ("smoke", "cpu", "full", "gpu")
GROUP = "paperworks.benchmarks"


@functools.lru_cache(maxsize=1)
def git_commit() -> str:
    """The short commit of the code that runs, with `-dirty` when tracked files outside
    benchmarks/results differ from it (results written by this very run do not count)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5
        )
        commit = out.stdout.strip() or "unknown"
        if commit != "unknown":
            dirty = subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!benchmarks/results"],
                capture_output=True,
                text=True,
                timeout=10,
            )
            if dirty.returncode == 0 and dirty.stdout.strip():
                commit += "-dirty"
        return commit
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine() -> dict[str, Any]:
    info = {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()}
    try:
        import torch

        info["torch"] = torch.__version__
        info["threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info


def _fmt(v: Any, digits: int) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if v != 0 and (abs(v) >= 1e5 or abs(v) < 10 ** (-digits)):
            return f"{v:.{digits}g}"
        return f"{v:.{digits}f}"
    return str(v).replace("|", "\\|")


def markdown_table(
    rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None, digits: int = 3
) -> str:
    """Rows of dicts as a GitHub markdown table; columns default to the union of keys in first-seen order."""
    if not rows:
        return "_(no rows)_\n"
    if columns is None:
        columns = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r.get(c, ""), digits) for c in columns) + " |")
    return "\n".join(lines) + "\n"


@dataclass
class Record:
    """One experiment's result: what was measured, under which parameters, on which machine, when."""

    package: str
    experiment: str
    scale: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    claim: str = ""
    verdict: str = ""
    columns: list[str] | None = None
    plot: str | None = None
    seconds: float | None = None
    commit: str = field(default_factory=git_commit)
    machine: dict[str, Any] = field(default_factory=machine)
    time: str = field(
        default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    )
    #: headline comparisons from `stats.compare` (per-seed values, interval, verdict word)
    headlines: list[dict[str, Any]] = field(default_factory=list)
    #: per arm, `stats.convergence` of its best steps: flags arms stopped while still improving
    convergence: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: what had to be changed to make the record valid JSON (e.g. "rows[2].acc was nan"): shown in REPORT.md
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        """Strict JSON: non-finite numbers become null and are named in `warnings` (never silently)."""
        data = json.loads(json.dumps(self.__dict__, default=_json_default))  # plain types (nan kept)
        found: list[str] = []
        data = _null_non_finite(data, "", found)
        if found:
            data["warnings"] = list(data.get("warnings") or []) + [
                f"{w} was not finite (written as null)" for w in found
            ]
            self.warnings = data["warnings"]
        return json.dumps(data, indent=1, allow_nan=False)

    @classmethod
    def load(cls, path: str | Path) -> Record:
        """Read a record; raise RecordError naming the file and the problem if it is not a valid record."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise RecordError(f"{path}: cannot read ({e})") from None

        def _no_nan(token: str):
            raise ValueError(f"non-standard JSON constant {token}")

        try:
            data = json.loads(text, parse_constant=_no_nan)
        except (json.JSONDecodeError, ValueError) as e:
            raise RecordError(f"{path}: not valid strict JSON ({e})") from None
        if not isinstance(data, dict):
            raise RecordError(f"{path}: a record is a JSON object, got {type(data).__name__}")
        missing = [
            k for k in ("package", "experiment", "scale", "commit", "machine", "time") if not data.get(k)
        ]
        if missing:
            raise RecordError(f"{path}: missing {', '.join(missing)}")
        try:
            return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})
        except TypeError as e:
            raise RecordError(f"{path}: {e}") from None


class RecordError(ValueError):
    """A result file that is not a valid record (unreadable, not strict JSON, missing provenance)."""


def _null_non_finite(obj: Any, where: str, found: list[str]) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        found.append(where or "value")
        return None
    if isinstance(obj, dict):
        return {k: _null_non_finite(v, f"{where}.{k}" if where else str(k), found) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_null_non_finite(v, f"{where}[{i}]", found) for i, v in enumerate(obj)]
    return obj


def _json_default(o: Any):
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:
        pass
    if hasattr(o, "tolist"):
        return o.tolist()
    return str(o)


class BenchContext:
    """What a package's benchmark receives: the scale, where to write, and `record()`."""

    def __init__(self, package: str, scale: str, results_dir: str | Path):
        if scale not in SCALES:
            raise ValueError(f"unknown scale {scale!r}; choose one of {SCALES}")
        self.package = package
        self.scale = scale
        self.outdir = Path(results_dir) / package
        self.outdir.mkdir(parents=True, exist_ok=True)
        self.records: list[Record] = []
        self._t0 = time.time()

    @property
    def smoke(self) -> bool:
        return self.scale == "smoke"

    def pick(self, smoke: Any, cpu: Any, gpu: Any | None = None, full: Any | None = None) -> Any:
        """A value by scale: ``ctx.pick(smoke=2, cpu=5, full=12, gpu=20)``.

        `full` defaults to the cpu value and `gpu` to the full value."""
        full = cpu if full is None else full
        return {"smoke": smoke, "cpu": cpu, "full": full, "gpu": full if gpu is None else gpu}[self.scale]

    def device(self):
        from .repro import pick_device

        return pick_device("cuda" if self.scale == "gpu" else "cpu")

    def record(
        self,
        experiment: str,
        *,
        rows: Sequence[dict[str, Any]] = (),
        metrics: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        claim: str = "",
        verdict: str = "",
        columns: Sequence[str] | None = None,
        figure=None,
        headlines: Sequence[dict[str, Any]] = (),
        convergence: dict[str, dict[str, Any]] | None = None,
    ) -> Record:
        """Write ``<experiment>.json`` (and ``<experiment>.png`` from a matplotlib figure) and return the record."""
        if not experiment.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"experiment names are letters, digits, '-' and '_': {experiment!r}")
        rec = Record(
            package=self.package,
            experiment=experiment,
            scale=self.scale,
            rows=list(rows),
            metrics=dict(metrics or {}),
            params=dict(params or {}),
            claim=claim,
            verdict=verdict,
            columns=list(columns) if columns else None,
            seconds=round(time.time() - self._t0, 2),
            headlines=[dict(h) for h in headlines],
            convergence=dict(convergence or {}),
        )
        for h in rec.headlines:  # a headline must be what stats.compare computed, not a hand-written verdict
            bad = check_headline(h)
            if bad:
                raise ValueError(f"{experiment}: headline {h.get('comparison')!r}: {bad}")
        if figure is not None:
            rec.plot = f"{experiment}.png"
            save_figure(figure, self.outdir / rec.plot)
        atomic_write_text(self.outdir / f"{experiment}.json", rec.to_json())
        self.records.append(rec)
        self._t0 = time.time()
        return rec


def save_figure(fig, path: str | Path, dpi: int = 110) -> Path:
    """Save a matplotlib figure as PNG and close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)
    return path


def new_figure(ncols: int = 1, nrows: int = 1, size: tuple[float, float] = (5.0, 3.6)):
    """A headless matplotlib figure with `nrows` x `ncols` axes, sized per panel."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt.subplots(nrows, ncols, figsize=(size[0] * ncols, size[1] * nrows), squeeze=False)


def discover(names: Sequence[str] | None = None) -> dict[str, Callable[[BenchContext], Any]]:
    """Installed benchmarks (entry-point group ``paperworks.benchmarks``), by package name, sorted.

    An entry point that fails to load is returned as a function that re-raises the import error,
    so the harness reports it like any other failing benchmark.
    """
    found: dict[str, Callable] = {}
    for ep in entry_points(group=GROUP):
        if names and ep.name not in names:
            continue
        try:
            found[ep.name] = ep.load()
        except Exception as e:  # reported, not hidden
            found[ep.name] = _raiser(e)
    if names:
        missing = set(names) - set(found)
        if missing:
            have = sorted(ep.name for ep in entry_points(group=GROUP))
            raise SystemExit(f"no benchmark registered for {sorted(missing)}; registered: {have}")
    return dict(sorted(found.items()))


def _raiser(err: Exception) -> Callable:
    def run(ctx):
        raise RuntimeError(f"could not load the benchmark entry point: {err!r}") from err

    return run


@dataclass
class Outcome:
    package: str
    ok: bool
    seconds: float
    error: str = ""


def run_benchmarks(
    benchmarks: dict[str, Callable[[BenchContext], Any]],
    scale: str,
    results_dir: str | Path,
    progress: bool = True,
) -> list[Outcome]:
    """Run each benchmark in turn; a failure is caught, logged to <package>/ERROR.txt, and the rest go on."""
    from tqdm.auto import tqdm

    results_dir = Path(results_dir)
    outcomes = []
    for name, fn in tqdm(benchmarks.items(), desc=f"benchmarks ({scale})", disable=not progress):
        ctx = BenchContext(name, scale, results_dir)
        err_file = ctx.outdir / "ERROR.txt"
        err_file.unlink(missing_ok=True)
        t0 = time.time()
        try:
            fn(ctx)
            if not ctx.records:
                raise RuntimeError("the benchmark recorded nothing (call ctx.record at least once)")
            outcomes.append(Outcome(name, True, time.time() - t0))
        except Exception as e:
            tb = traceback.format_exc()
            atomic_write_text(err_file, tb)
            print(f"\n[bench] {name} FAILED: {e!r}\n{tb}", file=sys.stderr)
            outcomes.append(Outcome(name, False, time.time() - t0, f"{type(e).__name__}: {e}"))
        print(
            f"[bench] {name}: {'ok' if outcomes[-1].ok else 'FAILED'} in {outcomes[-1].seconds:.1f}s",
            flush=True,
        )
    return outcomes


def load_records(
    results_dir: str | Path, scale: str | None = None
) -> tuple[dict[str, list[Record]], list[str]]:
    """Every valid record under `results_dir` by package, and one line per file that is not a valid record."""
    results_dir = Path(results_dir)
    by_pkg: dict[str, list[Record]] = {}
    problems: list[str] = []
    for f in sorted(results_dir.glob("*/*.json")):
        try:
            rec = Record.load(f)
        except RecordError as e:
            problems.append(f"`{f.relative_to(results_dir)}`: {str(e).split(': ', 1)[-1]}")
            continue
        if scale and rec.scale != scale:
            continue
        by_pkg.setdefault(rec.package, []).append(rec)
    return by_pkg, problems


def reference_commit(records: Sequence[Record]) -> str | None:
    """The commit the report speaks for: the commit of the newest record."""
    if not records:
        return None
    return max(records, key=lambda r: r.time).commit


def write_report(
    results_dir: str | Path,
    outcomes: Sequence[Outcome] = (),
    scale: str | None = None,
    commit: str | None = None,
) -> Path:
    """Write REPORT.md from every record under `results_dir` (plus this run's outcomes).

    The report speaks for one commit (`commit`, default: the newest record's): every record from another
    commit is marked STALE with its own commit, in the summary and at its section. A result file that is
    not a valid record is listed as UNREADABLE (never silently dropped)."""
    results_dir = Path(results_dir)
    by_pkg, problems = load_records(results_dir, scale)
    all_recs = [r for recs in by_pkg.values() for r in recs]
    ref = commit or reference_commit(all_recs)
    stale = [r for r in all_recs if r.commit != ref]
    status = {o.package: o for o in outcomes}
    lines = ["# paperworks benchmark report", ""]
    if scale:
        lines += [f"Scale: `{scale}`. Generated {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M UTC}.", ""]
    if ref:
        lines += [
            f"Results of commit `{ref}`: {len(all_recs) - len(stale)} of {len(all_recs)} records."
            + (f" **{len(stale)} STALE** records come from other commits (marked below)." if stale else ""),
            "",
        ]
    if problems:
        lines += [f"**{len(problems)} UNREADABLE result file(s)** (not shown below):", ""]
        lines += [f"- {p}" for p in problems] + [""]
    if outcomes or by_pkg:
        # every package with results, not only this run's: the others show when they last ran
        lines += ["| package | status | seconds | stale records |", "|---|---|---|---|"]
        for pkg in sorted(set(by_pkg) | set(status)):
            o = status.get(pkg)
            recs = by_pkg.get(pkg, [])
            n_stale = sum(r.commit != ref for r in recs)
            stale_txt = f"{n_stale} of {len(recs)}" if n_stale else "0"
            if o is not None:
                state = "ok" if o.ok else "FAILED: " + o.error[:120]
                lines.append(f"| {pkg} | {state} | {o.seconds:.1f} | {stale_txt} |")
            else:
                last = max(r.time for r in recs)[:16].replace("T", " ")
                secs = sum(r.seconds or 0 for r in recs)
                lines.append(f"| {pkg} | earlier run ({last}) | {secs:.1f} | {stale_txt} |")
        lines.append("")
    heads = [(pkg, rec, h) for pkg in sorted(by_pkg) for rec in by_pkg[pkg] for h in rec.headlines]
    if heads:
        lines += [
            "## Headline verdicts",
            "",
            "| package / experiment | comparison | n_seeds | diff (95% CI) | verdict |",
        ]
        lines.append("|---|---|---|---|---|")
        for pkg, rec, h in heads:
            bad = check_headline(h)
            lo, hi = h.get("ci_low"), h.get("ci_high")
            ci = f"{h.get('diff_mean', 0):+.3f} [{lo:+.3f}, {hi:+.3f}]" if lo is not None else "no CI"
            word = "**INCONSISTENT**" if bad else str(h.get("verdict"))
            stale_tag = " (STALE)" if rec.commit != ref else ""
            lines.append(
                f"| {pkg} / {rec.experiment}{stale_tag} | {h.get('comparison')} ({h.get('metric')}) | {h.get('n_seeds')} | {ci} | {word} |"
            )
        lines.append("")
    for pkg in sorted(set(by_pkg) | set(status)):
        lines += [f"## {pkg}", ""]
        o = status.get(pkg)
        if o is not None and not o.ok:
            lines += [f"**FAILED**: `{o.error}` (traceback in `{pkg}/ERROR.txt`)", ""]
        for p in problems:
            if p.startswith(f"`{pkg}/"):
                lines += [f"**UNREADABLE record** {p}", ""]
        for rec in by_pkg.get(pkg, []):
            tag = f" (STALE: commit `{rec.commit}`, not `{ref}`)" if rec.commit != ref else ""
            lines += [f"### {rec.experiment}{tag}", ""]
            if rec.claim:
                lines += [f"**Paper's claim:** {rec.claim}", ""]
            if rec.rows:
                lines.append(markdown_table(rec.rows, rec.columns))
            if rec.metrics:
                lines.append(markdown_table([rec.metrics]))
            if rec.headlines:
                lines += _headline_lines(rec.headlines)
            if rec.convergence:
                lines += _convergence_lines(rec.convergence)
            if rec.plot:
                lines += [f"![{rec.experiment}]({pkg}/{rec.plot})", ""]
            if rec.verdict:
                lines += [f"**Measured:** {rec.verdict}", ""]
            if rec.warnings:
                lines += ["**Warnings:** " + "; ".join(rec.warnings), ""]
            lines += [f"<sub>scale {rec.scale}, commit {rec.commit}, {rec.time}, {rec.seconds}s</sub>", ""]
    return atomic_write_text(results_dir / "REPORT.md", "\n".join(lines))


def _headline_lines(headlines: Sequence[dict[str, Any]]) -> list[str]:
    """The headline comparisons as a table; each verdict is recomputed from the stored per-seed values."""
    out = [
        "| comparison | metric | n_seeds | method | baseline | diff (95% CI) | ±δ | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for h in headlines:
        bad = check_headline(h)
        lo, hi = h.get("ci_low"), h.get("ci_high")
        ci = (
            f"{h.get('diff_mean', 0):+.3f} [{lo:+.3f}, {hi:+.3f}]"
            if lo is not None
            else f"{h.get('diff_mean', 0):+.3f} (no CI)"
        )
        verdict = str(h.get("verdict"))
        if verdict == "underpowered" and h.get("seeds_needed"):
            verdict += f" (~{h['seeds_needed']} seeds needed)"
        if bad:
            verdict = f"**INCONSISTENT**: {bad}"
        out.append(
            f"| {h.get('comparison')} | {h.get('metric')} | {h.get('n_seeds')} | {_fmt(h.get('method_mean'), 4)} "
            f"| {_fmt(h.get('baseline_mean'), 4)} | {ci} | {h.get('delta')} | {verdict} |"
        )
    return out + [""]


def _convergence_lines(conv: dict[str, dict[str, Any]]) -> list[str]:
    out = ["| arm | budget | best step per seed | |", "|---|---|---|---|"]
    for arm, c in conv.items():
        flag = "**UNDER-TRAINED** (best step in the last 10%)" if c.get("undertrained") else "converged"
        out.append(f"| {arm} | {c.get('budget')} | {c.get('best_steps')} | {flag} |")
    return out + [""]


def main(argv: Sequence[str] | None = None) -> int:
    """`paperworks-bench`: run every registered benchmark (or --package ones) and write REPORT.md."""
    from .cli import run_cli

    return run_cli(_main, argv, prog="paperworks-bench")


def _main(argv: list[str]) -> int:
    from .cli import add_debug_flag, check_out_dir

    p = argparse.ArgumentParser(
        prog="paperworks-bench",
        description="Run the paperworks benchmarks registered under the entry-point group "
        "'paperworks.benchmarks', write <results>/<package>/<experiment>.json/.png and <results>/REPORT.md. "
        "Exit status 1 if any benchmark failed, 2 for a usage error.",
    )
    p.add_argument(
        "--scale",
        choices=SCALES,
        default=os.environ.get("SCALE", "cpu"),
        help="smoke (seconds each), cpu (default; all packages within 30 min on 2 cores), full (powered comparisons, <= 45 min per package), gpu",
    )
    p.add_argument(
        "--package", "-p", action="append", help="only this package (repeatable); default: all registered"
    )
    p.add_argument(
        "--results", default="benchmarks/results", help="results folder (default: benchmarks/results)"
    )
    p.add_argument("--list", action="store_true", help="list the registered benchmarks and exit")
    p.add_argument(
        "--report-only",
        action="store_true",
        help="only regenerate REPORT.md from the records already in --results (stale/unreadable ones marked)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_debug_flag(p)
    args = p.parse_args(argv)
    if args.list:
        for ep in sorted(entry_points(group=GROUP), key=lambda e: e.name):
            print(f"{ep.name}\t{ep.value}")
        return 0
    results = check_out_dir(args.results, what="--results")
    if args.report_only:
        report = write_report(results, scale=args.scale)
        print(f"[bench] report: {report}")
        return 0
    benches = discover(args.package)
    if not benches:
        print("no benchmarks registered", file=sys.stderr)
        return 1
    t0 = time.time()
    outcomes = run_benchmarks(benches, args.scale, results, progress=not args.no_progress)
    report = write_report(results, outcomes, scale=args.scale, commit=git_commit())
    failed = [o.package for o in outcomes if not o.ok]
    print(
        f"[bench] {len(outcomes) - len(failed)}/{len(outcomes)} ok in {time.time() - t0:.0f}s; report: {report}"
    )
    if failed:
        print(f"[bench] FAILED: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
