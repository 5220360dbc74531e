"""Reference PairRL trainer on the small world: SFT loss falls, RL steps run in every mode and change
the weights, and the toy parser/grader are exact."""

import copy

import numpy as np
import pytest
import torch

from v1_infer.pairrl import world
from v1_infer.pairrl.trainer import PairRLConfig, completion_logp, sft, train


@pytest.fixture(scope="module")
def tiny():
    from paperworks_shared.models import byte_tokenizer, tiny_causal_lm

    torch.manual_seed(0)
    return tiny_causal_lm("llama", seed=0), byte_tokenizer()


def test_world_grader_and_parser():
    assert world.MOD == 5 and world.answer((3, 4)) == "2" and world.answer((0, 0)) == "0"
    assert world.is_correct({"a": 3, "b": 4}, "2") and not world.is_correct({"a": 3, "b": 4}, "3")
    assert world.parse_digit_rating("0") == 1 and world.parse_digit_rating("9") == 10
    assert world.parse_digit_rating("x") is None and world.parse_digit_rating("") is None
    assert world.parse_digit_rating("\u00b9") is None  # str.isdigit() accepts superscripts
    ex = world.sft_examples(200, np.random.default_rng(0), solve_rate=1.0, seen_frac=0.6)
    seen = world.seen_facts(0.6)
    assert len(seen) == 15
    solver = [(p, c) for p, c in ex if p.startswith("Q ")]
    assert solver and all(c == world.answer((int(p[2]), int(p[4]))) for p, c in solver)
    assert {(int(p[2]), int(p[4])) for p, _ in solver} <= seen  # unseen facts get no solver lines
    judge = [(p, c) for p, c in ex if p.startswith("J ")]
    assert len(judge) == 200 and all(len(c) == 2 and c.isdigit() for _, c in judge)


def test_sft_loss_falls(tiny):
    model, tok = copy.deepcopy(tiny[0]), tiny[1]
    losses = sft(model, tok, world.sft_examples(500, np.random.default_rng(0)), steps=30, batch=32)
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.5
    with pytest.raises(ValueError, match="pairs"):
        sft(model, tok, ["Q 1+2=3"], steps=1)


def test_completion_logp_matches_manual(tiny):
    model, tok = tiny
    lp, mask = completion_logp(model, tok, ["Q 1+2="], ["3"])
    ids = torch.tensor([[tok.bos_token_id] + list(b"Q 1+2=")])
    manual = torch.log_softmax(model(input_ids=ids).logits[0, -1, :256].float(), -1)[ord("3")]
    assert lp[0, 0].item() == pytest.approx(manual.item(), abs=1e-5) and mask.tolist() == [[1.0]]


@pytest.mark.parametrize("mode", ["pair", "point", "rl"])
def test_rl_steps_run_and_change_weights(tiny, mode):
    model, tok = copy.deepcopy(tiny[0]), tiny[1]
    before = [p.detach().clone() for p in model.parameters()]
    log = train(model, tok, PairRLConfig(mode=mode, steps=2, problems_per_step=8, seed=1))
    assert len(log) == 2 and all(0 <= x["gen_reward"] <= 1 for x in log)
    changed = any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert changed
    if mode == "rl":
        assert all(x["judge_prompts"] == 0 for x in log)


def test_resume_continues_exactly(tiny, tmp_path):
    """2 steps straight == 1 step, checkpoint, resume for the 2nd (same weights, same metrics)."""
    from v1_infer.pairrl.runner import RunConfig, train_mode_torch

    tok = tiny[1]
    cfg = RunConfig(steps=2, problems_per_step=4, out=str(tmp_path / "a"), save_every=1)
    m1 = copy.deepcopy(tiny[0])
    log1 = train_mode_torch(m1, tok, cfg, "pair", 0)
    # interrupted run: only the first step, then resume
    cfg_b = RunConfig(steps=2, problems_per_step=4, out=str(tmp_path / "b"), save_every=1)
    m2 = copy.deepcopy(tiny[0])
    train_mode_torch(m2, tok, RunConfig(**{**vars(cfg_b), "steps": 1}), "pair", 0)
    assert (tmp_path / "b/seed0/pair/step-1/model.safetensors").is_file()
    m3 = copy.deepcopy(tiny[0])  # fresh weights: resume must load the checkpoint
    log2 = train_mode_torch(m3, tok, RunConfig(**{**vars(cfg_b), "resume": True}), "pair", 0)
    assert [x["step"] for x in log2] == [1]
    assert log2[0]["gen_reward"] == log1[1]["gen_reward"]
    for a, b in zip(m1.parameters(), m3.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    lines = (tmp_path / "b/seed0/pair/metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2 and (tmp_path / "b/seed0/pair/final/config.json").is_file()
    # the trainer state is a shared-format checkpoint (weights_only-safe, tagged with its kind)
    from paperworks_shared.checkpoint import load_checkpoint
    from v1_infer.pairrl.runner import TRAINER_STATE_KIND

    state, _ = load_checkpoint(tmp_path / "b/seed0/pair/step-1/trainer_state.pt", kind=TRAINER_STATE_KIND)
    assert state["step"] == 0 and "state" in state["optimizer"]
    assert not list((tmp_path / "b/seed0/pair").glob(".*staging*"))  # published by atomic rename


def test_resume_refuses_an_unsafe_or_corrupt_trainer_state(tiny, tmp_path):
    import pickle

    from v1_infer.pairrl.runner import RunConfig, train_mode_torch

    tok = tiny[1]
    cfg = RunConfig(steps=1, problems_per_step=4, out=str(tmp_path / "r"), save_every=1)
    train_mode_torch(copy.deepcopy(tiny[0]), tok, cfg, "pair", 0)
    state = tmp_path / "r/seed0/pair/step-1/trainer_state.pt"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (tmp_path / "PWNED",))

    from pathlib import Path

    torch.save({"step": 0, "optimizer": Evil()}, state)  # a crafted pickle in the user's --out folder
    resume = RunConfig(**{**vars(cfg), "steps": 2, "resume": True})
    with pytest.raises(ValueError, match="trainer_state.pt"):
        train_mode_torch(copy.deepcopy(tiny[0]), tok, resume, "pair", 0)
    assert not (tmp_path / "PWNED").exists()
    state.write_bytes(pickle.dumps({"x": 1})[:5])  # truncated file: a clear error naming it
    with pytest.raises(ValueError, match="cannot load checkpoint state .*trainer_state.pt"):
        train_mode_torch(copy.deepcopy(tiny[0]), tok, resume, "pair", 0)


def test_cli_pairrl_tiny_run_with_config(tmp_path, capsys):
    import json

    from v1_infer.cli import main

    cfg = tmp_path / "c.toml"
    cfg.write_text(
        'modes = ["pair", "rl"]\nsft_steps = 3\nsteps = 1\nproblems_per_step = 4\neval_problems = 4\n'
    )
    out = tmp_path / "run" / "pairrl.json"
    png = tmp_path / "run" / "pairrl.png"
    argv = ["pairrl", "--config", str(cfg), "--out", str(tmp_path / "run"), "--no-progress"]
    assert main(argv) == 0
    assert png.stat().st_size > 1000
    from paperworks_shared.bench import Record

    rec = Record.load(out)  # a valid record: strict JSON (the rl mode's undefined verif_reward is null)
    assert rec.package == "v1-infer" and rec.commit and rec.machine and rec.time
    assert "NaN" not in out.read_text() and "null" in out.read_text()
    data = json.loads(out.read_text())
    assert [r["model"] for r in data["rows"]] == ["warm start (SFT)", "pair RL", "rl RL"]
    assert data["params"]["steps"] == 1 and data["params"]["backend"] == "torch"
    assert data["rows"][2]["train_verif_reward_last"] is None and "rl" in data["metrics"]["nulls"]
    assert "verifier_acc" in capsys.readouterr().out
    assert (tmp_path / "run/seed0/warm_start/config.json").is_file()
    assert (tmp_path / "run/seed0/rl/metrics.jsonl").read_text().count("\n") == 1
    bad = tmp_path / "bad.toml"
    bad.write_text("stepz = 3\n")
    assert main(["pairrl", "--config", str(bad)]) == 2
    assert "stepz" in capsys.readouterr().err
    assert main(["pairrl", "--save-every", "1", "--steps", "1"]) == 2
    assert "--out" in capsys.readouterr().err


def test_shipped_configs_parse():
    from pathlib import Path

    from v1_infer.pairrl.runner import RunConfig, load_config

    files = sorted((Path(__file__).parents[1] / "configs").glob("*.*"))
    assert {f.suffix for f in files} >= {".toml", ".yaml"}
    for f in files:
        cfg = RunConfig(**load_config(f))
        assert cfg.modes and cfg.backend in ("torch", "trl")


def test_reference_policy_loss_falls_on_world_batch(tiny):
    """Acceptance: repeated clipped token-mean updates on one small-world batch lower the loss and move
    probability toward positive-advantage completions (a sign or masking error fails this)."""
    from v1_infer.pairrl.losses import token_mean_clipped_loss

    model, tok = copy.deepcopy(tiny[0]), tiny[1]
    probs = world.make_problems(6, np.random.default_rng(3))
    prompts = [world.solver_prompt(p) for p in probs for _ in range(4)]
    comps = [
        world.answer(p) if k % 4 == 0 else world.wrong_answer(p, np.random.default_rng(k))
        for k, p in enumerate(p for p in probs for _ in range(4))
    ]
    rew = np.array([float(c == world.answer(p)) for c, p in zip(comps, (p for p in probs for _ in range(4)))])
    adv = torch.tensor(
        (rew.reshape(-1, 4) - rew.reshape(-1, 4).mean(1, keepdims=True)).ravel(), dtype=torch.float32
    )
    with torch.no_grad():
        old, mask = completion_logp(model, tok, prompts, comps)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(6):
        lp, _ = completion_logp(model, tok, prompts, comps)
        loss = token_mean_clipped_loss(lp, old, adv, mask)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(-(adv[:, None] * mask).sum().item() / mask.sum().item(), abs=1e-6)
    assert min(losses[1:]) < losses[0] - 1e-3 and losses[-1] < losses[0]
    with torch.no_grad():
        new, _ = completion_logp(model, tok, prompts, comps)
    assert (new - old)[adv > 0].mean() > 0 > (new - old)[adv < 0].mean()
