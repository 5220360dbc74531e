"""Issue 20 regressions: outcome-type guards found by the type checker, the shared checkpoint format for
the PairRL trainer state, the fast `--help` (no numpy/torch at import), `--seeds N` as a count and
`--out` as a folder."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from v1_infer import PairOutcome, PointOutcome, PointwiseBestOfN, SwissTournament, TournamentConfig


def test_pairwise_method_refuses_a_pointwise_outcome():
    t = SwissTournament(n=4, config=TournamentConfig(budget_multiplier=1.0))
    reqs = t.propose()
    with pytest.raises(TypeError, match="pairwise method got a PointOutcome"):
        t.observe(reqs, [PointOutcome(7.0)] * len(reqs))


def test_pointwise_method_refuses_a_pairwise_outcome():
    s = PointwiseBestOfN(3)
    reqs = s.propose()
    with pytest.raises(TypeError, match="pointwise method got a PairOutcome"):
        s.observe(reqs, [PairOutcome(7.0, 3.0)] * len(reqs))


def test_trainer_state_uses_the_shared_checkpoint_format_and_reads_the_old_one(tmp_path):
    from paperworks_shared.checkpoint import load_checkpoint
    from paperworks_shared.checkpoint import save_checkpoint as shared_save
    from paperworks_shared.models import byte_tokenizer, tiny_causal_lm
    from v1_infer.pairrl.runner import TRAINER_STATE_KIND, _load_trainer_state, save_checkpoint

    model = tiny_causal_lm("llama", seed=0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(input_ids=torch.tensor([[1, 2, 3]])).logits.sum().backward()
    opt.step()
    folder = save_checkpoint(model, byte_tokenizer(), opt, 6, tmp_path / "step-7")
    state, _ = load_checkpoint(folder / "trainer_state.pt", kind=TRAINER_STATE_KIND)
    assert state["step"] == 6 and state["optimizer"]["state"]
    assert _load_trainer_state(folder / "trainer_state.pt")["step"] == 6
    # the bare dict of older versions is still read
    old = tmp_path / "old.pt"
    torch.save({"step": 3, "optimizer": opt.state_dict()}, old)
    assert _load_trainer_state(old)["step"] == 3
    # another kind of paperworks checkpoint, or a truncated file, is refused naming the file
    other = shared_save(tmp_path / "other.pt", {"step": 1, "optimizer": {}}, kind="some-student")
    with pytest.raises(ValueError, match="other.pt.*'some-student'"):
        _load_trainer_state(other)
    bad = tmp_path / "bad.pt"
    bad.write_bytes((folder / "trainer_state.pt").read_bytes()[:100])
    with pytest.raises(ValueError, match="bad.pt"):
        _load_trainer_state(bad)


def test_cli_import_loads_no_numpy_or_torch():
    code = (
        "import sys, v1_infer.cli as c; c.build_parser(); "
        "print(sorted(m for m in ('numpy', 'torch', 'transformers', 'httpx') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout


def test_lazy_package_exports_resolve():
    import v1_infer
    from v1_infer.baselines import METHODS

    assert v1_infer.METHODS is METHODS
    for name in v1_infer.__all__:
        assert getattr(v1_infer, name) is not None, name
    with pytest.raises(AttributeError):
        v1_infer.no_such_name  # noqa: B018


def test_pairrl_seeds_is_a_count_and_out_is_a_folder(tmp_path, capsys):
    from v1_infer.cli import main

    out = tmp_path / "run"
    argv = ["pairrl", "--modes", "rl", "--sft-steps", "1", "--steps", "1", "--problems-per-step", "2"]
    argv += ["--eval-problems", "2", "--seeds", "2", "--out", str(out), "--no-progress", "--device", "cpu"]
    assert main(argv) == 0
    rec = json.loads((out / "pairrl.json").read_text())
    assert rec["params"]["seeds"] == [0, 1]
    assert sorted({r["seed"] for r in rec["rows"]}) == [0, 1]
    assert (out / "seed1" / "rl" / "final" / "config.json").is_file()
    assert main([*argv[:-7], "--seed", "5", "--out", str(tmp_path / "one"), "--no-progress"]) == 0
    assert json.loads((tmp_path / "one" / "pairrl.json").read_text())["params"]["seeds"] == [5]
