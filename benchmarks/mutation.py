"""A small mutation-testing pass: does a package's test suite fail when its core module is subtly wrong?

Each mutant flips one operator or constant in the module (``+``->``-``, ``<``->``<=``, ``and``->``or``,
``not x``->``x``, ``True``->``False``, ``n``->``n+1``, ...), runs the given tests, and restores the file.
A mutant the tests do not kill "survives"; the report lists each survivor with its line so that a
person can either add a test or explain why the mutant is harmless (an equivalent mutant).

    python benchmarks/mutation.py packages/iha-attn/src/iha_attn/functional.py \
        --tests packages/iha-attn/tests/test_functional.py --max 40 --out benchmarks/mutation-results/iha.json

The module is always restored (also on Ctrl-C and SIGTERM); the stale bytecode of the module is removed before each
run so that the mutated source is what the tests import.
"""

from __future__ import annotations

import argparse
import ast
import copy
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

_BINOP_SWAP = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.Div,
    ast.Div: ast.Mult,
    ast.FloorDiv: ast.Div,
    ast.Mod: ast.FloorDiv,
    ast.Pow: ast.Mult,
    ast.MatMult: ast.Mult,
}
_CMP_SWAP = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
}


def _docstring_nodes(tree: ast.AST) -> set[int]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            body = getattr(node, "body", [])
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                out.add(id(body[0].value))
    return out


def _annotation_nodes(tree: ast.AST) -> set[int]:
    out = set()
    for node in ast.walk(tree):
        anns = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            anns.append(node.returns)
            for a in node.args.args + node.args.kwonlyargs + node.args.posonlyargs:
                anns.append(a.annotation)
        elif isinstance(node, ast.AnnAssign):
            anns.append(node.annotation)
        for a in anns:
            if a is not None:
                out.update(id(n) for n in ast.walk(a))
    return out


def sites(tree: ast.AST) -> list[tuple[int, str]]:
    """Every (node index in ast.walk order, description) that one mutation can change."""
    skip = _docstring_nodes(tree) | _annotation_nodes(tree)
    found = []
    for i, node in enumerate(ast.walk(tree)):
        if id(node) in skip:
            continue
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOP_SWAP:
            found.append((i, f"{type(node.op).__name__}->{_BINOP_SWAP[type(node.op)].__name__}"))
        elif isinstance(node, ast.Compare) and type(node.ops[0]) in _CMP_SWAP:
            found.append((i, f"{type(node.ops[0]).__name__}->{_CMP_SWAP[type(node.ops[0])].__name__}"))
        elif isinstance(node, ast.BoolOp):
            found.append((i, "And->Or" if isinstance(node.op, ast.And) else "Or->And"))
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.USub)):
            found.append((i, f"drop {type(node.op).__name__}"))
        elif isinstance(node, ast.Constant) and isinstance(node.value, bool):
            found.append((i, f"{node.value}->{not node.value}"))
        elif isinstance(node, ast.Constant) and type(node.value) in (int, float):
            found.append((i, f"{node.value!r}->{node.value + 1!r}"))
    return found


def mutate(tree: ast.AST, index: int) -> ast.AST:
    tree = copy.deepcopy(tree)
    for i, node in enumerate(ast.walk(tree)):
        if i != index:
            continue
        if isinstance(node, ast.BinOp):
            node.op = _BINOP_SWAP[type(node.op)]()
        elif isinstance(node, ast.Compare):
            node.ops[0] = _CMP_SWAP[type(node.ops[0])]()
        elif isinstance(node, ast.BoolOp):
            node.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        elif isinstance(node, ast.UnaryOp):
            # replace `not x` / `-x` by `x`: rewrite in the parent by swapping fields
            node.op = ast.UAdd() if isinstance(node.op, ast.USub) else _Identity()
        elif isinstance(node, ast.Constant) and isinstance(node.value, bool):
            node.value = not node.value
        elif isinstance(node, ast.Constant):
            node.value = node.value + 1
        return tree
    raise IndexError(index)


class _Identity(ast.UAdd):
    """`not x` -> `+x` would change truthiness semantics for non-numbers; unparse it as `(x)`."""


def _unparse(tree: ast.AST) -> str:
    src = ast.unparse(tree)
    return src


def _fix_identity(tree: ast.AST) -> ast.AST:
    class T(ast.NodeTransformer):
        def visit_UnaryOp(self, node):
            self.generic_visit(node)
            if isinstance(node.op, _Identity):
                return node.operand
            return node

    return ast.fix_missing_locations(T().visit(tree))


def _line_of(tree: ast.AST, index: int) -> tuple[int, str]:
    for i, node in enumerate(ast.walk(tree)):
        if i == index:
            return getattr(node, "lineno", 0), ast.unparse(node)[:100]
    return 0, ""


def _clear_bytecode(module: Path) -> None:
    cache = module.parent / "__pycache__"
    if cache.is_dir():
        for f in cache.glob(module.stem + ".*.pyc"):
            f.unlink(missing_ok=True)


def run_tests(tests: list[str], timeout: float) -> tuple[str, float]:
    t0 = time.time()
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "--import-mode=importlib"]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    try:
        r = subprocess.run(cmd + tests, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return "killed (timeout)", time.time() - t0
    if r.returncode == 0:
        return "survived", time.time() - t0
    if r.returncode == 5:
        return "no tests", time.time() - t0
    return "killed", time.time() - t0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument("module", type=Path, help="the Python file to mutate")
    p.add_argument("--tests", nargs="+", required=True, help="pytest arguments (test files, -k filters)")
    p.add_argument("--max", type=int, default=40, help="at most this many mutants (a seeded sample)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=0, help="per-run seconds (default: 5x baseline + 30)")
    p.add_argument("--out", type=Path, help="write the JSON report here")
    a = p.parse_args(argv)
    module = a.module.resolve()
    original = module.read_text()
    tree = ast.parse(original)
    all_sites = sites(tree)
    rng = random.Random(a.seed)
    chosen = sorted(rng.sample(all_sites, min(a.max, len(all_sites))))
    base, base_t = run_tests(a.tests, timeout=3600)
    if base != "survived":
        print(f"the unmutated tests do not pass ({base}); fix that first", file=sys.stderr)
        return 2
    timeout = a.timeout or 5 * base_t + 30
    print(f"{module}: {len(all_sites)} mutation sites, testing {len(chosen)}; baseline {base_t:.1f}s")
    results = []

    def _terminate(signum, frame):  # restore the module on SIGTERM too (the finally below runs)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    try:
        for k, (idx, desc) in enumerate(chosen, 1):
            line, code = _line_of(tree, idx)
            try:
                src = _unparse(_fix_identity(mutate(tree, idx)))
                compile(src, str(module), "exec")
            except (SyntaxError, ValueError, IndexError):
                continue
            module.write_text(src)
            _clear_bytecode(module)
            outcome, dt = run_tests(a.tests, timeout)
            module.write_text(original)
            _clear_bytecode(module)
            results.append(
                {"line": line, "mutation": desc, "code": code, "outcome": outcome, "seconds": round(dt, 1)}
            )
            print(f"[{k}/{len(chosen)}] line {line:4d} {desc:18s} {outcome:16s} {code[:60]}", flush=True)
    finally:
        module.write_text(original)
        _clear_bytecode(module)
    survivors = [r for r in results if r["outcome"] == "survived"]
    killed = sum(r["outcome"].startswith("killed") for r in results)
    print(f"\n{killed} killed, {len(survivors)} survived of {len(results)} mutants")
    for r in survivors:
        print(f"  SURVIVED line {r['line']}: {r['mutation']}  in  {r['code']}")
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(
            json.dumps(
                {"module": str(a.module), "tests": a.tests, "sites": len(all_sites), "results": results},
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
