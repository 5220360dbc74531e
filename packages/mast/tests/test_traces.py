import json

import pytest

from mast.prompts import render
from mast.traces import (
    FORMATS,
    Trace,
    Turn,
    detect_format,
    from_hf_dataset,
    load_traces,
    redact_secrets,
    sanitize_trace,
    save_traces,
    to_hf_dataset,
)

LEAKS = ('"correct"', '"answer"', '"given"', "seed_solution", "seed_answer", "arithmetic slip", "note")


def test_ag2_loader_strips_gold(fixtures):
    [t] = load_traces(fixtures / "ag2.json")
    assert t.source_format == "ag2" and t.trace_id == "gsmplus-17"
    assert [x.speaker for x in t.turns] == ["mathproxyagent", "assistant", "mathproxyagent"]  # name, not role
    assert sorted(t.metadata["removed_fields"]) == ["note", "other_data"]
    clean, _ = sanitize_trace(t)
    prompt = json.dumps(render(clean.text()).messages)
    for leak in LEAKS:
        assert leak not in clean.text(), leak
    assert "other_data" not in prompt and "\\\\boxed{8}" in prompt  # the MAS's own answer stays


def test_text_level_leak_pairs_and_secrets(fixtures):
    t = Trace(
        "x", raw='log {"correct": false, "answer": "7"} the answer: 8\npassword: hunter2 sk-' + "a" * 24
    )
    clean, rep = sanitize_trace(t)
    assert '"correct"' not in clean.raw and '"answer"' not in clean.raw and "hunter2" not in clean.raw
    assert "the answer: 8" in clean.raw  # prose is not a label
    assert rep.leak_pairs_redacted == 2 and rep.secrets_redacted == 2
    assert clean.labels is None


def test_appworld_secrets_redacted(fixtures):
    [t] = load_traces(fixtures / "appworld.txt")
    clean, rep = sanitize_trace(t)
    assert "qwerty-123" not in clean.raw and "sk-ABCDEF" not in clean.raw
    assert rep.secrets_redacted >= 2
    assert redact_secrets("nothing secret here")[1] == 0


def test_chatdev_noise_dropped(fixtures):
    [t] = load_traces(fixtures / "chatdev.log")
    speakers = [x.speaker for x in t.turns]
    assert "Chief Executive Officer" in speakers and "Programmer" in speakers
    assert "System" not in speakers and "HTTP Request" not in t.text()
    assert "did not start" not in t.text() and 'print("sudoku")' in t.text()


def test_metagpt_hyperagent_openmanus(fixtures):
    [m] = load_traces(fixtures / "metagpt.json")
    assert [x.speaker for x in m.turns] == ["Alice(SimpleCoder)", "Bob(SimpleTester)"]
    assert "def add" in m.turns[0].content and m.task == "Write a CLI calculator"
    [h] = load_traces(fixtures / "hyperagent.json")
    assert h.source_format == "hyperagent" and [x.speaker for x in h.turns][:2] == [
        "Planner",
        "Inner-Navigator-Assistant",
    ]
    assert "repeated planner" not in h.text() and "resolved" not in json.dumps(h.to_dict()["turns"])
    [o] = load_traces(fixtures / "openmanus.log")
    assert o.turns[0].speaker == "Manus" and "game.py" in o.turns[0].content


def test_magentic_skips_expected_answer(fixtures):
    [t] = load_traces(fixtures / "magentic")
    assert "Paris" not in t.text() and "capital of France" in t.task
    assert t.metadata["skipped_files"] == ["expected_answer.txt"]
    assert [x.speaker for x in t.turns] == ["Orchestrator", "WebSurfer"]
    assert "Collecting numpy" not in t.text() and t.metadata["preamble_lines"] == 3


def test_messages_otel_openinference(fixtures):
    ms = load_traces(fixtures / "messages.jsonl")
    assert [t.trace_id for t in ms] == ["m1", "m2"]
    assert "expected_answer" not in ms[0].metadata and "<tool_call search>" in ms[0].turns[1].content
    [o] = load_traces(fixtures / "otel.json")
    assert [x.speaker for x in o.turns] == ["planner", "coder", "tool:python"] and o.llm_name == "gpt-4o"
    [oi] = load_traces(fixtures / "openinference.json")
    assert [x.speaker for x in oi.turns] == ["researcher", "tool:search"]


def test_mad_and_human(fixtures):
    mad = load_traces(fixtures / "mad.json")
    assert [t.mas_name for t in mad] == ["AG2", "ChatDev"] and mad[0].labels["1.3"] == 1
    assert "mast_annotation" not in render(mad[0].text()).messages[1]["content"]
    [h] = load_traces(fixtures / "mad_human.json")
    assert h.labels == {"1.1": 1, "1.3": 0}


def test_detect_all_and_errors(fixtures, tmp_path):
    got = {
        f: detect_format(fixtures / f)
        for f in (
            "ag2.json",
            "chatdev.log",
            "metagpt.json",
            "hyperagent.json",
            "openmanus.log",
            "appworld.txt",
            "magentic",
            "messages.jsonl",
            "otel.json",
            "openinference.json",
            "mad.json",
            "mad_human.json",
        )
    }
    assert set(got.values()) <= set(FORMATS) and len(set(got.values())) == 12
    bad = tmp_path / "x.json"
    bad.write_text('[{"foo": 1}]')
    with pytest.raises(ValueError, match="unrecognised JSON record keys"):
        load_traces(bad)
    with pytest.raises(FileNotFoundError):
        load_traces(tmp_path / "nope.json")
    with pytest.raises(ValueError, match="unknown trace format"):
        load_traces(fixtures / "ag2.json", format="nope")


def test_roundtrip_jsonl_and_hf(tmp_path, fixtures):
    ts = load_traces(fixtures / "mad.json") + [Trace("z", turns=[Turn("a", "b", "user", "t")])]
    p = save_traces(ts, tmp_path / "t.jsonl")
    assert [t.to_dict() for t in load_traces(p)] == [t.to_dict() for t in ts]
    ds = to_hf_dataset(ts)
    assert len(ds) == 3 and ds.features["turns"]
    assert [t.to_dict() for t in from_hf_dataset(ds)] == [t.to_dict() for t in ts]


def test_mad_human_uses_each_rounds_own_code_table(tmp_path):
    """Round 1's "2.2 Step Repetition" is v3 1.3 (not v3 2.2); draft modes with no v3 counterpart stay
    out of the v3 labels; only the 14-mode Generalizability round may use its codes as v3 IDs."""
    recs = [
        {
            "round": "Round 1",
            "mas_name": "ChatDev",
            "benchmark_name": "ProgramDev",
            "trace_id": "r1",
            "trace": "agent: hi",
            "annotations": [
                {
                    "failure mode": "2.2 Step Repetition\nRepeats a step.",
                    "annotator_1": True,
                    "annotator_2": True,
                    "annotator_3": False,
                },
                {
                    "failure mode": "1.6 Backtracking interruption\nx",
                    "annotator_1": True,
                    "annotator_2": True,
                    "annotator_3": True,
                },
                {
                    "failure mode": "3.1 Premature Termination\nx",
                    "annotator_1": False,
                    "annotator_2": False,
                    "annotator_3": True,
                },
            ],
        },
        {
            "round": "Round 2",
            "trace_id": "r2",
            "trace": "x",
            "annotations": [
                {
                    "failure mode": "1.4 Step repetition\nx",
                    "annotator_1": False,
                    "annotator_2": True,
                    "annotator_3": True,
                },
                {
                    "failure mode": "2.2 Conversation reset\nx",
                    "annotator_1": True,
                    "annotator_2": False,
                    "annotator_3": False,
                },
            ],
        },
        {
            "round": "Generlazability",
            "trace_id": "g",
            "trace": "y",
            "annotations": [
                {
                    "failure mode": "2.2 Fail to Ask for Clarification\nx",
                    "annotator_1": True,
                    "annotator_2": True,
                    "annotator_3": False,
                },
                {
                    "failure mode": "3.3 Weak Verification\nx",
                    "annotator_1": True,
                    "annotator_2": True,
                    "annotator_3": True,
                },
            ],
        },
    ]
    p = tmp_path / "MAD_human_labelled_dataset.json"
    p.write_text(json.dumps(recs))
    r1, r2, g = load_traces(p, "mad_human")
    assert r1.labels == {"1.3": 1, "3.1": 0}  # not {"2.2": 1, "1.6": ...}
    assert r1.metadata["round_codes"]["2.2"] == "Step Repetition"
    assert r1.metadata["unmapped"] == ["1.6 Backtracking interruption"]
    assert r2.labels == {"1.3": 1, "2.1": 0}
    assert g.labels == {"2.2": 1, "3.3": 1}
