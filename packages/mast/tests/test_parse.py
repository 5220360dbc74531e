from mast.baseline import official_first_match_parse
from mast.parse import parse_judge_output
from mast.taxonomy import CODE_PROMPT_LABELS, MAST_V3


def _echo(value="yes", skip=()):
    return "A. The agents tried.\nB. no\nC.\n" + "\n".join(
        f"{i} {n}: {value}" for i, n in CODE_PROMPT_LABELS.items() if i not in skip
    )


def test_label_echo_all_yes():
    p = parse_judge_output(_echo("yes"))
    assert p.labels == {m: True for m in MAST_V3.ids}
    assert p.issues == []
    assert p.task_completed is False
    assert p.summary == "The agents tried."


def test_label_echo_all_no():
    assert parse_judge_output(_echo("no")).labels == {m: False for m in MAST_V3.ids}


def test_official_baseline_misreads_label_echo():
    base = official_first_match_parse(_echo("yes"))
    wrong = sorted(m for m, v in base.items() if v != 1)
    assert wrong == ["2.5", "3.2"]  # "IgNOred", "NO or Incorrect"


def test_summary_mentions_mode():
    r = "A. The verifier etc. flagged 1.1 but noted nothing.\nB. no\nC.\n" + "\n".join(
        f"{m} yes" for m in MAST_V3.ids
    )
    assert parse_judge_output(r).labels["1.1"] is True
    assert official_first_match_parse(r)["1.1"] == 0


def test_missing_mode_is_none():
    p = parse_judge_output(_echo("yes", skip=("2.5",)))
    assert p.labels["2.5"] is None
    assert "missing:2.5" in p.issues
    assert sum(v is True for v in p.labels.values()) == 13
    assert official_first_match_parse(_echo("yes", skip=("2.5",)))["2.5"] == 0  # upstream: silent 0


def test_last_block_wins():
    r = "A. The trace contains the line\n1.1 no\nwhich is quoted.\nB. no\nC.\n" + "\n".join(
        f"{m} {'yes' if m == '1.1' else 'no'}" for m in MAST_V3.ids
    )
    assert parse_judge_output(r).labels["1.1"] is True
    stale = "C.\n" + "\n".join(f"{m} no" for m in MAST_V3.ids) + "\n1.6 no\n2.7 no\n"
    assert parse_judge_output(stale + "\nA. real\nB. yes\nC.\n1.1 yes\n").labels["1.1"] is True


def test_word_boundaries():
    for bad in ("Not observed", "None", "Nothing", "I know", "unknown"):
        p = parse_judge_output(f"C.\n2.1 Conversation Reset: {bad}")
        assert p.labels["2.1"] is None, bad
        assert "unparsed:2.1" in p.issues
    p = parse_judge_output("C.\n1.10 yes\n101 yes\n1.1 no")
    assert p.labels["1.1"] is False
    assert parse_judge_output("C.\n1.10 yes").labels["1.1"] is None


def test_markdown_variants():
    for r in (
        "**1.1**: **Yes**",
        "- 1.1 — yes",
        "FM-1.1: YES",
        '{"failure_modes": {"1.1": true}}',
        "* **1.1 Disobey Task Specification:** yes",
        "C1.1 yes",
        "1.1\nyes",
        '```json\n{"summary": "s", "task_completed": false, "failure_modes": {"1.1": {"present": true, "evidence": "x"}}}\n```',
    ):
        assert parse_judge_output(r).labels["1.1"] is True, r


def test_json_records_missing_and_evidence():
    p = parse_judge_output(
        '{"summary": "s", "task_completed": true, "failure_modes": '
        '{"1.1": {"present": true, "evidence": "line 3"}, "2.2": "no"}}'
    )
    assert p.format == "json" and p.labels["1.1"] is True and p.labels["2.2"] is False
    assert p.labels["3.3"] is None and "missing:3.3" in p.issues
    assert p.evidence == {"1.1": "line 3"} and p.task_completed is True


def test_run_together_template():
    r = (
        "@@A. done B. yes C. "
        + " ".join(f"{i} {n}: {'yes' if i == '3.2' else 'no'}" for i, n in CODE_PROMPT_LABELS.items())
        + "@@"
    )
    p = parse_judge_output(r)
    assert p.labels == {m: m == "3.2" for m in MAST_V3.ids}
    assert p.task_completed is True


def test_conflicting_lines_recorded():
    p = parse_judge_output("C.\n1.1 yes\n1.1 no")
    assert p.labels["1.1"] is False and "conflict:1.1" in p.issues


def test_garbage_all_none():
    p = parse_judge_output("I cannot determine the answer.")
    assert all(v is None for v in p.labels.values())
    assert p.n_unparsed == 14
