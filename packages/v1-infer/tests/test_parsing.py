"""Strict parser on adversarial judge outputs (DESIGN.md §3.3.7)."""

import pytest

from v1_infer.parsing import extract_code, parse_pairwise, parse_pointwise, strip_thinking


def test_last_tags_win_over_ratings_quoted_in_reasoning():
    text = (
        "The format is <rating_A>INTEGER</rating_A>. Earlier I thought <rating_A>9</rating_A> "
        "<rating_B>2</rating_B> but on reflection B is right.\n<rating_A>3</rating_A>\n<rating_B>8</rating_B>"
    )
    p = parse_pairwise(text)
    assert (p.rating_a, p.rating_b, p.ok) == (3, 8, True)


def test_only_text_after_think_is_parsed():
    text = "<think>maybe <rating_A>10</rating_A><rating_B>1</rating_B></think>Final:\n<rating_A>4</rating_A><rating_B>6</rating_B>"
    assert parse_pairwise(text)[:2] == (4, 6)
    # the ratings exist only inside the thinking block -> failure, not a silent use of the draft
    only_inside = "<thinking><rating_A>10</rating_A><rating_B>1</rating_B></thinking> I am not sure."
    assert not parse_pairwise(only_inside).ok


def test_unclosed_thinking_is_a_truncation_failure():
    p = parse_pairwise("<think>long reasoning <rating_A>7</rating_A><rating_B>2</rating_B> and then cut")
    assert not p.ok and "truncated" in p.reason


@pytest.mark.parametrize(
    "a,b,ea,eb", [("0", "11", 1, 10), ("-3", "10", 1, 10), ("15", "1", 10, 1), ("5", "5", 5, 5)]
)
def test_out_of_range_ratings_are_clamped(a, b, ea, eb):
    p = parse_pairwise(f"ok\n<rating_A>{a}</rating_A>\n<rating_B>{b}</rating_B>")
    assert p.ok and (p.rating_a, p.rating_b) == (ea, eb)


@pytest.mark.parametrize(
    "text",
    [
        "no tags at all, A is better",
        "<rating_A>7</rating_A> only A",
        "<rating_B>7</rating_B> only B",
        "<rating_A>seven</rating_A><rating_B>3</rating_B>",
        "<rating_A>7.5</rating_A><rating_B>3</rating_B>",
        "<rating_A></rating_A><rating_B>3</rating_B>",
        "<rating_a>7</rating_a><rating_b>3</rating_b>",
    ],
)
def test_missing_or_malformed_tags_fail_with_a_reason(text):
    p = parse_pairwise(text)
    assert not p.ok and p.rating_a is None and p.rating_b is None and p.reason


def test_markdown_bold_and_spaces_inside_tags():
    assert parse_pairwise("<rating_A> **8** </rating_A>\n<rating_B>\n2\n</rating_B>")[:3] == (8, 2, True)


def test_pointwise_parser():
    assert parse_pointwise("draft <rating>2</rating> final <rating>9</rating>")[:2] == (9, True)
    assert parse_pointwise("<rating>12</rating>").rating == 10
    assert not parse_pointwise("I rate it 9/10").ok
    assert not parse_pointwise(None).ok


def test_strip_thinking_and_extract_code():
    assert strip_thinking("<think>a</think>b</think>c") == "c"
    assert strip_thinking("<think>unfinished") == ""
    assert strip_thinking("<think>unfinished", strict=False) == "<think>unfinished"
    text = "<thinking>```python\nprint(0)\n```</thinking>\nfinal:\n```python\nprint(int(input())+1)\n```\n"
    assert extract_code(text) == "print(int(input())+1)"
    assert extract_code("no code here") is None
