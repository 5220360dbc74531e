"""Task generators checked against brute force; CLI smoke; a slow learning check."""

import json

import pytest
import torch

from iha_attn.cli import main, train_main
from iha_attn.flops import layer_flops
from iha_attn.tasks import MultiKeySpec, PolyFilterTask, multikey_batch, relcomp_batch


def test_multikey_answer_is_the_queried_record():
    spec = MultiKeySpec(n_records=5, n_keys=4, n_values=8)
    toks, ans = multikey_batch(spec, 20, torch.Generator().manual_seed(0))
    assert toks.shape == (20, spec.seq_len)
    for t, a in zip(toks.tolist(), ans.tolist()):
        assert t[-3] == spec.query_id
        recs = [tuple(t[i : i + 3]) for i in range(0, 3 * spec.n_records, 3)]
        hits = [v for k1, k2, v in recs if (k1, k2) == (t[-2], t[-1])]
        assert hits == [a]  # exactly one record matches both key tokens
        assert len({(k1, k2) for k1, k2, _ in recs}) == spec.n_records
        # distractors share one key token with the query, so neither token alone identifies it
        assert any(k1 == t[-2] and k2 != t[-1] for k1, k2, _ in recs) or any(
            k2 == t[-1] and k1 != t[-2] for k1, k2, _ in recs
        )


def test_relcomp_matches_bruteforce():
    x, y = relcomp_batch(4, 3, hops=2, generator=torch.Generator().manual_seed(0))
    for b in range(3):
        R = x[b].view(4, 4)
        exp = [[int(any(R[i, k] and R[k, j] for k in range(4))) for j in range(4)] for i in range(4)]
        assert y[b].view(4, 4).int().tolist() == exp


def test_polyfilter_target():
    task = PolyFilterTask(n_nodes=6, channels=1, k=3)
    xh, y = task.batch(2)
    X = xh[..., :1]
    torch.testing.assert_close(y[..., 2:3], task.A @ (task.A @ X))
    torch.testing.assert_close(xh[0, :, 1:], torch.eye(6))


def test_flop_model_matches_notes_table():
    base = layer_flops(256, 256, 4)["total"]
    assert round(layer_flops(256, 256, 4, 2)["total"] / base, 2) == 1.62
    assert round(layer_flops(256, 256, 4, 2, window=32)["total"] / base, 2) == 1.02
    assert layer_flops(256, 256, 4, 4)["attention"] == 16 * layer_flops(256, 256, 4)["attention"]


def test_cli(tmp_path, capsys):
    assert main(["construct"]) == 0
    out = capsys.readouterr().out
    assert "polynomial filter H=P=3" in out and "CPM-3" in out
    # the old `iha-train --task ...` command line still works (alias of iha-attn, option-first -> train)
    assert train_main(["--task", "polyfilter", "--steps", "3", "--out", str(tmp_path), "--no-progress"]) == 0
    data = json.loads((tmp_path / "polyfilter-iha.json").read_text())  # --out is a directory
    assert data["runs"][0]["P"] == 2 and data["runs"][0]["params"] > 0 and data["device"] == "cpu"
    assert [r["seed"] for r in data["runs"]] == [0]
    assert main(["train", "--steps", "2", "--seed", "7", "--out", str(tmp_path), "--device", "cpu"]) == 0
    assert [r["seed"] for r in json.loads((tmp_path / "polyfilter-iha.json").read_text())["runs"]] == [7]
    assert main(["train", "--steps", "2", "--seeds", "2", "--out", str(tmp_path), "--threads", "1"]) == 0
    assert [r["seed"] for r in json.loads((tmp_path / "polyfilter-iha.json").read_text())["runs"]] == [0, 1]
    for task, attn in (("relcomp2", "iha"), ("multikey", "hybrid"), ("multikey", "global_local")):
        assert main(["train", "--task", task, "--attn", attn, "--steps", "2", "--no-progress"]) == 0
        assert "accuracy=" in capsys.readouterr().out
    assert main(["train", "--task", "nope"]) == 2


def test_cli_one_program_same_help(capsys):
    """iha-train is an alias of iha-attn: the same help, with train and bench subcommands."""
    helps = []
    for fn in (main, train_main):
        assert fn(["--help"]) == 0
        helps.append(capsys.readouterr().out)
    assert helps[0] == helps[1] and helps[0].startswith("usage: iha-attn")
    for cmd in ("train", "construct", "flops", "patch-check", "bench"):
        assert cmd in helps[0]
    assert main(["train", "--help"]) == 0
    text = capsys.readouterr().out
    for opt in ("--device", "--threads", "--no-progress", "--seeds", "--seed", "--out DIR"):
        assert opt in text


def test_cli_help_does_not_import_torch():
    import subprocess
    import sys

    code = (
        "import sys; from iha_attn.cli import main\n"
        "assert main(['--help']) == 0\n"
        "assert 'torch' not in sys.modules, 'torch imported by --help'"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr


BAD_INPUTS = [  # (script, argv, words the one-line error must contain)
    ("iha-attn", ["train", "--P", "0"], "--P: 0 is out of range"),
    ("iha-attn", ["train", "--P", "-2"], "--P: -2 is out of range"),
    ("iha-attn", ["train", "--steps", "-3"], "--steps: -3 is out of range"),
    ("iha-attn", ["train", "--steps", "nan"], "--steps: 'nan' is not an integer"),
    ("iha-attn", ["train", "--heads", "0"], "--heads: 0 is out of range"),
    ("iha-attn", ["train", "--seeds", "0"], "--seeds: 0 is out of range"),
    ("iha-attn", ["train", "--task", "nope"], "--task: 'nope': choose one of"),
    ("iha-attn", ["train", "--attn", "hybrid"], "--attn hybrid exists only for --task multikey"),
    ("iha-attn", ["train", "--task", "multikey", "--heads", "3"], "--heads 3"),
    ("iha-attn", ["train", "--task", "multikey", "--records", "5", "--keys", "2"], "--records 5"),
    ("iha-attn", ["train", "--task", "multikey", "--window", "0"], "--window: 0 is out of range"),
    ("iha-attn", ["train", "--task", "relcomp2", "--m", "1"], "--m: 1 is out of range"),
    ("iha-attn", ["flops", "--P", "0"], "--P: 0 is out of range"),
    ("iha-attn", ["flops", "--N", "-5"], "--N: -5 is out of range"),
    ("iha-attn", ["flops", "--D", "10", "--H", "3"], "--D 10 is not divisible by --H 3"),
    ("iha-attn", ["construct", "--seed", "-1"], "--seed: -1 is out of range"),
    ("iha-attn", ["patch-check", "--P", "0"], "--P: 0 is out of range"),
    ("iha-attn", ["patch-check", "--arch", "gpt2"], "--arch: 'gpt2'"),
    ("iha-attn", ["patch-check", "--layers", "bogus"], "--layers 'bogus'"),
    ("iha-attn", ["patch-check", "--layers", "schedule:0:1"], "selects no layer"),
    ("iha-attn", ["train", "--device", "tpu"], "--device: 'tpu'"),
    ("iha-attn", ["train", "--device", "cuda:x"], "--device: 'cuda:x'"),
    ("iha-attn", ["train", "--threads", "0"], "--threads"),
    ("iha-attn", ["train", "--seed", "-1"], "--seed: -1 is out of range"),
    ("iha-attn", ["train", "--seed", "1", "--seeds", "2"], "not allowed with argument"),
    ("iha-attn", ["patch-check", "--device", "gpu"], "--device: 'gpu'"),
    ("iha-attn", ["bench", "--scale", "huge"], "--scale"),
    ("iha-attn", [], "required: cmd"),
    ("iha-train", ["--P", "0"], "--P: 0 is out of range"),
    ("iha-train", ["--steps", "0"], "--steps: 0 is out of range"),
    ("iha-train", ["--task", "polyfilter", "--k", "0"], "--k: 0 is out of range"),
]


@pytest.mark.parametrize("script,argv,words", BAD_INPUTS, ids=[" ".join([s, *a]) for s, a, _ in BAD_INPUTS])
def test_cli_bad_input_table(script, argv, words, capsys):
    fn = main if script == "iha-attn" else train_main
    assert fn(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "Traceback" not in "\n".join(err)
    # iha-train is an alias of the same program: its messages carry the program name iha-attn
    assert err[-1].startswith("iha-attn") and "error:" in err[-1] and words in err[-1], err[-1]


def test_cli_unwritable_out_fails_before_training(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    out = blocker / "results"  # its parent is a regular file
    for fn, argv in ((main, ["train"]), (train_main, [])):
        # 10 million steps would run for hours: exit 2 now proves --out is checked before any work
        assert fn([*argv, "--steps", "10000000", "--out", str(out)]) == 2
        assert "--out" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.slow
def test_iha_learns_polyfilter():
    # learning smoke: the layer trains well below the trivial predictor (relative MSE 1). Whether it beats
    # equal-head MHA at a given budget is a benchmark question, not a test (see the README table).
    from iha_attn.train import train_polyfilter

    r = train_polyfilter(2, 2, steps=300, lr=3e-2, batch=32)
    assert r["rel_mse"] < 0.2, r["rel_mse"]
    assert r["losses"][-1][1] < 0.3 * r["losses"][0][1]
