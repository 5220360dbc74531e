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


def _yn(i):
    return "yes" if i % 3 == 0 else "no"


def test_c_prefixed_mode_lines():
    """`C.1.1 yes` per line: the old parser saw 14 C headers and kept only the last mode (13 lost)."""
    r = "A. ok\nB. no\n" + "\n".join(f"C.{m} {_yn(i)}" for i, m in enumerate(MAST_V3.ids))
    p = parse_judge_output(r)
    assert p.labels == {m: _yn(i) == "yes" for i, m in enumerate(MAST_V3.ids)}
    assert p.issues == [] and p.task_completed is False and p.summary == "ok"
    r2 = "A. ok\nB. yes\n" + "\n".join(
        f"C. {m} {CODE_PROMPT_LABELS[m]}: {_yn(i)}" for i, m in enumerate(MAST_V3.ids)
    )
    assert parse_judge_output(r2).labels == p.labels


def test_numbered_list_lines():
    for fmt in (
        "{n}. {m} {name}: {v}",
        "{n}) {m}: {v}",
        "{n}. FM-{m} {name} - {v}",
        "{n}. **{m} {name}**: {v}",
    ):
        r = "A. s\nB. no\nC.\n" + "\n".join(
            fmt.format(n=i + 1, m=m, name=CODE_PROMPT_LABELS[m], v=_yn(i)) for i, m in enumerate(MAST_V3.ids)
        )
        p = parse_judge_output(r)
        assert p.labels == {m: _yn(i) == "yes" for i, m in enumerate(MAST_V3.ids)}, fmt
        assert not [x for x in p.issues if x.startswith(("missing", "unparsed"))], fmt


def test_json_list_of_detected_modes():
    p = parse_judge_output('["1.1", "FM-2.3", "Step repetition"]')
    assert p.format == "json_list"
    assert {m for m, v in p.labels.items() if v} == {"1.1", "1.3", "2.3"}
    assert all(v is False for m, v in p.labels.items() if m not in ("1.1", "1.3", "2.3"))
    p = parse_judge_output(
        'Answer:\n```json\n{"summary": "s", "task_completed": true, "detected_modes": '
        '[{"id": "3.2", "evidence": "no tests"}, "2.6 Action-Reasoning Mismatch", "9.9"]}\n```'
    )
    assert {m for m, v in p.labels.items() if v} == {"3.2", "2.6"}
    assert p.evidence == {"3.2": "no tests"} and p.task_completed is True
    assert p.issues == ["unknown_mode:9.9"]
    assert all(v is False for v in parse_judge_output('{"failure_modes": []}').labels.values())


def test_no_or_incorrect_verification_variants_read_the_answer():
    """The "No" of the mode name is not the answer, however the name is spelled."""
    for name in (
        "No/Incorrect Verification",
        "no or incorrect verification",
        "No & Incorrect Verification",
        "No-or-Incorrect verification",
        "No or incomplete verification",
    ):
        for sep in (": ", " -> ", " => ", " = ", " — "):
            for v in (True, False):
                r = f"C.\n3.2 {name}{sep}{'yes' if v else 'no'}"
                assert parse_judge_output(r).labels["3.2"] is v, r
    assert parse_judge_output("C.\n3.2 no/incorrect verification -> yes").labels["3.2"] is True
    assert parse_judge_output("C.\n3.2 Verification missing (no/incorrect): yes").labels["3.2"] is True
    assert parse_judge_output("C.\n1.1 yes, and no tests were run").labels["1.1"] is True


def test_section_headers_read_without_unguarded_matches():
    p = parse_judge_output("A. summary line\nmore summary\nB. yes/no: yes\nC.\n1.1 no")
    assert p.summary == "summary line more summary" and p.task_completed is True


def test_json_object_embedded_in_prose():
    r = (
        'Having read the trace, my verdict is {"summary": "s", "task_completed": false, "failure_modes": '
        '{"1.1": {"present": true, "evidence": "x"}, "2.2": false}} and nothing else.'
    )
    p = parse_judge_output(r)
    assert p.format == "json" and p.labels["1.1"] is True and p.labels["2.2"] is False
    assert p.task_completed is False


def test_c_block_at_the_top_is_closed_by_later_sections():
    p = parse_judge_output("C.\n1.1 yes\nA. The trace quotes\n1.1 no\nB. yes")
    assert p.labels["1.1"] is True and "conflict:1.1" not in p.issues and p.task_completed is True


def test_compound_no_without_a_known_name_or_colon():
    assert parse_judge_output("C.\n3.2 No/incorrect checks -> yes").labels["3.2"] is True
    assert parse_judge_output("C.\n3.2 incorrect/no checks -> yes").labels["3.2"] is True
    assert parse_judge_output("C.\n3.2 no or incorrect checks -> no").labels["3.2"] is False


def test_answer_after_the_first_colon_of_an_unknown_name():
    assert parse_judge_output("C.\n1.1 Some other wording: detail: yes").labels["1.1"] is True
