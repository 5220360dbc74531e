"""Issue 22.1: SVD factors computed once per model weights, shared in-process, optionally on disk."""

import torch

import xquant.svd as svd
from paperworks_shared.models import tiny_causal_lm
from xquant import XQuantCache, XQuantConfig

CFG = XQuantConfig(bits=4, group_size=16)


def _gqa(**kw):
    return tiny_causal_lm("llama-gqa", seed=0, num_hidden_layers=3, **kw)


def test_second_from_model_does_no_svd_and_shares_factors():
    model = _gqa()
    n0 = svd.SVD_CALLS
    with XQuantCache.from_model(model, CFG) as a:
        assert svd.SVD_CALLS - n0 == 3 * 2  # K and V of 3 layers
    n1 = svd.SVD_CALLS
    with XQuantCache.from_model(model, CFG) as b:
        assert svd.SVD_CALLS == n1  # no SVD the second time
        assert all(la.lk is lb.lk and la.lv is lb.lv for la, lb in zip(a.layers, b.layers))
    with torch.no_grad():
        model.model.layers[1].self_attn.k_proj.weight.mul_(1.5)  # changed weights: new hash, new factors
    with XQuantCache.from_model(model, CFG) as c:
        assert svd.SVD_CALLS == n1 + 1
        assert c.layers[1].lk is not a.layers[1].lk and c.layers[0].lk is a.layers[0].lk
        torch.testing.assert_close(c.layers[1].lk.u @ c.layers[1].lk.m,
                                   model.model.layers[1].self_attn.k_proj.weight.T)  # fmt: skip


def test_factors_on_disk_reused_by_another_model_object(tmp_path):
    a_model, b_model = _gqa(), _gqa()  # same weights, separate objects: no shared in-process memo
    with XQuantCache.from_model(a_model, CFG, svd_path=tmp_path) as a:
        pass
    files = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("."))
    assert len(files) == 6 and all(f.endswith(".pt") for f in files)
    assert not [p for p in tmp_path.iterdir() if "tmp" in p.name or "staging" in p.name]
    n = svd.SVD_CALLS
    with XQuantCache.from_model(b_model, CFG, svd_path=tmp_path) as b:
        assert svd.SVD_CALLS == n  # loaded, not recomputed
        for la, lb in zip(a.layers, b.layers):
            assert torch.equal(la.lk.u, lb.lk.u) and torch.equal(la.lv.m, lb.lv.m)
    # a corrupt file is recomputed and replaced, not trusted
    (tmp_path / files[0]).write_bytes(b"garbage")
    c_model = _gqa()
    with XQuantCache.from_model(c_model, CFG, svd_path=tmp_path):
        assert svd.SVD_CALLS == n + 1
    assert (tmp_path / files[0]).stat().st_size > 100


def test_cl_keeps_only_u_and_factor_bytes_reported():
    model = _gqa(num_key_value_heads=1)  # 2*d_kv = 32 < d = 64: CL deltas live in the U_kv latent
    cfg = XQuantConfig(bits=4, group_size=16, cross_layer=True, base_layer=0)
    with XQuantCache.from_model(model, cfg) as cache:
        lat = cache.layers[1].lkv
        assert lat.m is None and lat.u.shape == (64, 32)
        assert cache.factor_nbytes() == sum(layer.lkv.u.numel() * 4 for layer in cache.layers)


def test_factors_in_model_dtype():
    model = _gqa(dtype=torch.float16)
    with XQuantCache.from_model(model, CFG) as cache:
        assert cache.layers[0].lk.u.dtype == torch.float16 and cache.layers[0].lv.m.dtype == torch.float16


def test_shared_cache_goes_through_get_or_build(tmp_path, monkeypatch):
    """svd_path=True: factors published by paperworks_shared.cache.get_or_build (one builder, atomic rename)."""
    monkeypatch.setenv("PAPERWORKS_CACHE", str(tmp_path))
    with XQuantCache.from_model(_gqa(), CFG, svd_path=True) as a:
        pass
    ns = tmp_path / "xquant-svd"
    entries = sorted(ns.iterdir())
    done = [p for p in entries if (p / "DONE").is_file()]
    assert len(done) == 6 and all((p / "factors.pt").is_file() for p in done)
    assert not [p for p in entries if p.is_dir() and p not in done]  # no staging folder left behind
    n = svd.SVD_CALLS
    with XQuantCache.from_model(_gqa(), CFG, svd_path=True) as b:  # another model object: read from disk
        assert svd.SVD_CALLS == n
        assert all(torch.equal(la.lk.u, lb.lk.u) for la, lb in zip(a.layers, b.layers))
