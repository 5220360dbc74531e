"""The local-transformers judge on a tiny random model: wiring, usage and honest parse accounting."""

import pytest

torch = pytest.importorskip("torch")
from mast.annotate import Annotator  # noqa: E402
from mast.judges import HFLocalJudge, JudgeParams  # noqa: E402
from mast.traces import Trace, Turn  # noqa: E402
from paperworks_shared.models import byte_tokenizer, tiny_causal_lm  # noqa: E402


def test_hf_local_judge_runs_and_records_unparsed():
    torch.set_num_threads(1)
    judge = HFLocalJudge(
        tiny_causal_lm("llama", seed=0), byte_tokenizer(), name="tiny-llama", max_context=8192
    )
    ts = [Trace("a", turns=[Turn("x", "hello")]), Trace("b", turns=[Turn("y", "bye")])]
    anns = Annotator(judge, max_tokens=8, concurrency=2, max_input_tokens=8000).annotate(ts)
    assert all(a.ok for a in anns), [a.error for a in anns]
    for a in anns:
        assert a.usage["completion_tokens"] <= 8 and a.usage["prompt_tokens"] > 1000
        # a random model cannot answer: every mode is None with an issue, never "no"
        assert all(v is None for v in a.labels.values())
        assert (
            sum(i.startswith(("missing:", "unparsed:")) and "task_completed" not in i for i in a.parse_issues)
            == 14
        )
        assert a.judge["model"] == "tiny-llama"


def test_hf_local_context_guard():
    judge = HFLocalJudge(tiny_causal_lm("llama"), byte_tokenizer(), max_context=64)
    import asyncio

    with pytest.raises(ValueError, match="exceeds the local model's context"):
        asyncio.run(judge.complete([{"role": "user", "content": "x" * 200}], JudgeParams(max_tokens=4)))
