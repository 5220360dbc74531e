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
    assert world.answer((7, 5)) == "2"
    assert world.parse_digit_rating("0") == 1 and world.parse_digit_rating("9") == 10
    assert world.parse_digit_rating("x") is None and world.parse_digit_rating("") is None
    ex = world.sft_examples(5, np.random.default_rng(0))
    assert len(ex) == 15 and ex[0].startswith("Q ")


def test_sft_loss_falls(tiny):
    model, tok = copy.deepcopy(tiny[0]), tiny[1]
    losses = sft(model, tok, world.sft_examples(500, np.random.default_rng(0)), steps=30, batch=32)
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.5


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


def test_cli_pairrl_tiny_run(tmp_path, capsys):
    import json

    from v1_infer.cli import main

    out = tmp_path / "p.json"
    assert (
        main(
            [
                "pairrl",
                "--modes",
                "pair,rl",
                "--sft-steps",
                "3",
                "--steps",
                "1",
                "--eval-problems",
                "4",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    data = json.loads(out.read_text())
    assert [r["model"] for r in data["rows"]] == ["warm start (SFT)", "pair RL", "rl RL"]
    assert "verifier_acc" in capsys.readouterr().out
