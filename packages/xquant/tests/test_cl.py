"""Acceptance: XQuant-CL closed loop is bounded in depth, open loop measurably worse; CL + GQA latent
exact without quantization (DESIGN.md §3.4 tests 4-5)."""

import torch
from transformers import DynamicCache

from xquant import XQuantCache, XQuantConfig
from xquant.cache import XQuantLayer


def _record_cl(monkeypatch):
    """Wrap the real CL writer to record (true X, reconstruction, delta scale) per layer."""
    rec = {}
    orig = XQuantLayer._write_cl

    def spy(self, x, final):
        xhat = orig(self, x, final)
        scale = (
            None
            if self.xs.q is None
            else self.xs.q.scale.float().repeat_interleave(self.config.group_size, -1)
        )
        rec[self.idx] = (x.detach().clone(), xhat.detach().clone(), scale)
        return xhat

    monkeypatch.setattr(XQuantLayer, "_write_cl", spy)
    return rec


def _run(model, cfg, ids):
    with XQuantCache.from_model(model, cfg, simulate=True) as cache:
        model(input_ids=ids, past_key_values=cache, use_cache=True)


def test_closed_loop_error_bounded_open_loop_grows(tiny, monkeypatch):
    model = tiny("llama", num_hidden_layers=10)
    ids = torch.randint(0, 256, (2, 32), generator=torch.Generator().manual_seed(0))
    errs = {}
    for closed in (True, False):
        rec = _record_cl(monkeypatch)
        cfg = XQuantConfig(
            bits=2,
            group_size=16,
            residual_length=0,
            cross_layer=True,
            base_layer=0,
            base_bits=2,
            closed_loop=closed,
        )
        _run(model, cfg, ids)
        errs[closed] = []
        for i in range(10):
            x, xhat, s = rec[i]
            err = (xhat - x).abs()
            errs[closed].append(err.mean().item())
            if closed:
                # closed loop: reconstruction error is only this layer's delta quantization error
                assert (err <= s / 2 + 1e-3).all(), f"layer {i}: closed-loop error exceeds half a step"
        monkeypatch.undo()
    closed, opened = errs[True], errs[False]
    # open loop accumulates: deep-layer error clearly above closed loop and above its own first layers
    assert sum(opened[5:]) > 1.5 * sum(closed[5:])
    assert max(opened[7:]) > 1.5 * opened[1]


def test_cl_bits16_reconstructs_x_exactly_mha(tiny, monkeypatch):
    model = tiny("llama", num_hidden_layers=4)
    rec = _record_cl(monkeypatch)
    cfg = XQuantConfig(bits=16, base_bits=16, residual_length=0, cross_layer=True, base_layer=1)
    _run(model, cfg, torch.randint(0, 256, (1, 12)))
    for i in (1, 2, 3):
        x, xhat, _ = rec[i]
        torch.testing.assert_close(xhat, x, atol=1e-5, rtol=1e-5)


def test_gqa_cl_latent_exact_without_quantization_though_xhat_differs(tiny, monkeypatch):
    """Paper §3.3.2: X̂_i = X̂_{i-1} + ΔX_i U_kv U_kvᵀ ≠ X_i, yet [K|V] = X̂_i W_kv are exact."""
    model = tiny("llama-gqa", num_key_value_heads=1, num_hidden_layers=4)  # 2·d_kv = 32 < d = 64
    ids = torch.randint(0, 256, (1, 10), generator=torch.Generator().manual_seed(1))
    rec = _record_cl(monkeypatch)
    cfg = XQuantConfig(bits=16, base_bits=16, residual_length=0, cross_layer=True, base_layer=0)
    ref = DynamicCache(config=model.config)
    with torch.no_grad():
        ref_logits = model(input_ids=ids, past_key_values=ref, use_cache=True).logits
        with XQuantCache.from_model(model, cfg) as cache:
            assert cache.layers[1].lkv.rank == 32
            logits = model(input_ids=ids, past_key_values=cache, use_cache=True).logits
            nxt = ref_logits[:, -1:].argmax(-1)
            a = model(input_ids=nxt, past_key_values=cache, use_cache=True).logits
            b = model(input_ids=nxt, past_key_values=ref, use_cache=True).logits
    torch.testing.assert_close(logits, ref_logits)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    for i in range(4):
        x, xhat, _ = rec[i]
        xhat = xhat[:, -x.shape[1] :]  # the decode step's token
        assert (xhat - x).abs().max() > 1e-2  # the reconstruction itself is NOT X
        spec = cache.layers[i].spec
        torch.testing.assert_close(spec.remat_k(xhat), spec.remat_k(x), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(spec.remat_v(xhat), spec.remat_v(x), atol=1e-5, rtol=1e-4)


def _cl_chain(n_layers: int, d: int, closed: bool):
    """The package's own XQuant-CL layers (roles cl_base + cl_delta) on stand-in projections."""
    from torch import nn

    from xquant.adapters import AttnSpec
    from xquant.base import SharedState

    specs = [AttnSpec(layer_idx=i, module=nn.Identity(), k_proj=nn.Linear(d, d), v_proj=nn.Linear(d, d),
                      k_norm=None, head_dim=d, num_heads=1, num_kv_heads=1, hidden_size=d)
             for i in range(n_layers)]  # fmt: skip
    cfg = XQuantConfig(bits=2, group_size=d, residual_length=0, cross_layer=True, base_layer=0,
                       base_bits=2, closed_loop=closed, backend="torch")  # fmt: skip
    state = SharedState(specs, "cos_sin", None)
    return [
        XQuantLayer(s, state, cfg, "cl_base" if s.layer_idx == 0 else "cl_delta", 2, False) for s in specs
    ]


def test_cl_deltas_smaller_range_than_x_on_random_walk():
    """Random-walk residual stream through the package's CL writer: the stored deltas have a much
    smaller range than X, closed-loop error stays flat (half a delta step), open-loop error grows."""
    from xquant.quant import quantize

    g = torch.Generator().manual_seed(3)
    xs = [torch.randn(1, 64, 32, generator=g)]
    for _ in range(24):
        xs.append(xs[-1] + 0.3 * torch.randn(1, 64, 32, generator=g))
    errs, scales = {}, {}
    for closed in (True, False):
        layers = _cl_chain(len(xs), 32, closed)
        errs[closed], scales[closed] = [], []
        for layer, x in zip(layers, xs):
            xhat = layer._write_cl(x, final=True)
            assert xhat.shape == x.shape and layer.xs.n_quantized == 64  # everything stored, 2-bit
            errs[closed].append((xhat - x).abs().mean().item())
            s = layer.xs.q.scale.float()
            scales[closed].append(s.mean().item())
            if closed:
                assert ((xhat - x).abs() <= s.repeat_interleave(32, -1) / 2 + 1e-3).all()
    ce, oe = errs[True], errs[False]
    x_scale = [quantize(x, 2, 32, "token").scale.float().mean().item() for x in xs]
    # the deltas (layers >= 1) need a far smaller quantization step than X itself would
    assert max(scales[True][1:]) < 0.5 * min(x_scale[1:])
    assert max(ce[1:]) < 2 * ce[1] + 1e-6  # closed loop: flat in depth
    assert oe[-1] > 3 * ce[-1]  # open loop: accumulates
    assert oe[-1] > 1.3 * oe[2]  # ... growing with depth
