"""The paper's constructions solve their tasks exactly (DESIGN.md §3.3 tests 2, 3, 9)."""

import pytest
import torch

from iha_attn.constructions import (
    cpm3_workspace_construction,
    cpm3_workspace_target,
    polynomial_filter_construction,
    polynomial_filter_target,
    tanh_witness,
)
from iha_attn.functional import iha_attention
from iha_attn.tasks import cpm3_labels


@pytest.mark.parametrize("H", [2, 3])
def test_polynomial_filter_construction(H):
    g = torch.Generator().manual_seed(H)
    N = 10
    A = torch.randn(N, N, generator=g, dtype=torch.float64)
    A = 0.9 * A / torch.linalg.eigvals(A).abs().max()
    X = torch.randn(N, 2, generator=g, dtype=torch.float64)
    out = polynomial_filter_construction(A, X, H)
    torch.testing.assert_close(out, polynomial_filter_target(A, X, H * H), atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize("N", [4, 9])
def test_cpm3_workspace_gives_all_cyclic_shifts(N):
    x = torch.randn(N, dtype=torch.float64, generator=torch.Generator().manual_seed(N))
    torch.testing.assert_close(
        cpm3_workspace_construction(x), cpm3_workspace_target(x, N), atol=1e-6, rtol=1e-6
    )


def test_tanh_witness_is_nonlinear():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, dtype=torch.float64, generator=g) * 0.5
    wq, wk, wv = (torch.randn(3, 3, dtype=torch.float64, generator=g) for _ in range(3))
    f = tanh_witness(x, wq, wk, wv)
    torch.testing.assert_close(f, torch.tanh((x @ wq) @ (x @ wk)) * (x @ wv))
    assert (tanh_witness(2 * x, wq, wk, wv) - 2 * f).abs().max() > 1e-3  # MHA would be linear here


def _witness(x, wq, wk, wv, v_sign):
    """App. B.1 on a repeated-token input X = 1xᵀ (H = 1, P = 2): α^Q = (1, 0), α^K = (1, −1), α^V = (1, v_sign)."""
    X = x[None].expand(4, -1)
    q, k, v = ((X @ w)[None, None] for w in (wq, wk, wv))
    a_q = torch.tensor([[[1.0, 0.0]]], dtype=x.dtype)
    a_k = torch.tensor([[[1.0, -1.0]]], dtype=x.dtype)
    a_v = torch.tensor([[[1.0, v_sign]]], dtype=x.dtype)
    R = torch.tensor([[1.0, 0.0]], dtype=x.dtype)
    return iha_attention(q, k, v, a_q, a_k, a_v, R, mask_mode="none", scale=1.0, backend="eager")[0, 0, 0]


def test_paper_plus_identity_witness_is_linear():
    # App. B.1 as written (α^V_2 = +I): the query sees (k, v) and (−k, +v) equally often, so the softmax
    # weights sum to 1 over copies of v and the output is exactly v = x W_V: linear in x (DESIGN.md pitfall 14).
    # With α^V_2 = −I the same layer gives tanh(⟨q,k⟩)·v, which is not.
    g = torch.Generator().manual_seed(3)
    x = torch.randn(3, dtype=torch.float64, generator=g)
    wq, wk, wv = (torch.randn(3, 3, dtype=torch.float64, generator=g) for _ in range(3))
    plus = _witness(x, wq, wk, wv, +1.0)
    torch.testing.assert_close(plus, x @ wv)
    torch.testing.assert_close(_witness(2 * x, wq, wk, wv, +1.0), 2 * plus)
    minus = _witness(x, wq, wk, wv, -1.0)
    torch.testing.assert_close(minus, torch.tanh((x @ wq) @ (x @ wk)) * (x @ wv))
    assert (_witness(2 * x, wq, wk, wv, -1.0) - 2 * minus).abs().max() > 1e-2


def test_cpm3_labels_by_hand_and_order_sensitivity():
    x = torch.tensor([[0, 1, 3]])
    # i=0: pairs (j1,j2) with (0 + 17·x_j1 + x_j2) % 7 == 0. 17 ≡ 3: 3a+b ≡ 0 -> (0,0) only ... count by hand
    # 17 ≡ 3 (mod 7), so count pairs (a, b) of sequence values with x_i + 3a + b ≡ 0 (mod 7), by hand:
    # x_i=0: (0,0) -> 1;  x_i=1: (1,3) -> 1;  x_i=3: (1,1) -> 1
    assert cpm3_labels(x).tolist() == [[1, 1, 1]]
    # repeated values count once per position pair: x=[0,0,1]: x_i=0 -> the four (0,0) position pairs; x_i=1 -> none
    assert cpm3_labels(torch.tensor([[0, 0, 1]])).tolist() == [[4, 4, 0]]
    with pytest.raises(ValueError, match="symmetric"):
        cpm3_labels(x, M=5, G=11)
