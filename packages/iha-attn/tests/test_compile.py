"""Issue 21 (3): the module and a patched model trace with torch.compile(fullgraph=True): no graph breaks.

``backend="eager"`` runs dynamo's tracing (where graph breaks happen) without inductor's slow codegen.
"""

import pytest
import torch

from iha_attn import IHAConfig, InterleavedHeadAttention
from iha_attn.hf import patch_model_with_iha
from paperworks_shared.models import tiny_causal_lm


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("window,mask", [(2, "flat_causal")])
def test_module_compiles_fullgraph(window, mask):
    torch.manual_seed(0)
    layer = InterleavedHeadAttention(IHAConfig(hidden_size=32, num_heads=4, num_pseudo_heads=2, window=window, mask_mode=mask)).eval()  # fmt: skip
    x = torch.randn(2, 7, 32)
    keep = torch.tensor([[1] * 7, [0, 0] + [1] * 5])
    compiled = torch.compile(layer, fullgraph=True, backend="eager")
    with torch.no_grad():  # with a padding mask: the explicit-mask path (it had a data-dependent branch)
        torch.testing.assert_close(compiled(x, attention_mask=keep)[0], layer(x, attention_mask=keep)[0])


@pytest.mark.slow  # ~15-50 s of dynamo tracing on a shared CPU
def test_patched_model_compiles_fullgraph_windowed_with_padding():
    """4:1-style schedule (a windowed IHA layer + a plain layer) with an explicit padding mask."""
    model = tiny_causal_lm("llama-gqa", seed=0)
    patch_model_with_iha(model, layers="schedule:1:1", P=2, init="identity_noise", init_std=0.3, rope_mode="virtual", seq_len=16)  # fmt: skip
    ids = torch.randint(0, 256, (2, 8), generator=torch.Generator().manual_seed(0))
    am = torch.tensor([[1] * 8, [0, 0, 0] + [1] * 5])
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    with torch.no_grad():
        torch.testing.assert_close(
            compiled(ids, attention_mask=am).logits, model(ids, attention_mask=am).logits
        )


@pytest.mark.slow  # the windowed schedule is covered by the fullgraph test above
@pytest.mark.parametrize("layers", ["all"])
def test_patched_model_has_zero_graph_breaks(layers):
    model = tiny_causal_lm("llama-gqa", seed=0)
    patch_model_with_iha(model, layers=layers, P=2, init="identity_noise", init_std=0.3, rope_mode="virtual", seq_len=16)  # fmt: skip
    ids = torch.randint(0, 256, (2, 8), generator=torch.Generator().manual_seed(0))
    am = torch.tensor([[1] * 8, [0, 0, 0] + [1] * 5])
    for kwargs in ({}, {"attention_mask": am}):  # flat-causal fast path, and an explicit padding mask
        ex = torch._dynamo.explain(model)(ids, **kwargs)
        assert ex.graph_break_count == 0, [str(b.reason) for b in ex.break_reasons]
