"""The paper's explicit weight constructions (App. B), run through the package's own IHA core.

They are deterministic tests of the α index convention [m, h, p], the token-major interleave and the
global collapse index h'·P+p: a transposed α or a wrong collapse index breaks them.
"""

from __future__ import annotations

import torch

from .functional import iha_attention


def _eye_sel(H: int, P: int, kind: str) -> torch.Tensor:
    a = torch.zeros(H, H, P)
    for m in range(H):
        for h in range(H):
            for j in range(P):
                if kind == "query" and m == h and j == 0:  # α^Q_{m,h,j} = 1[m=h]·1[j=1]
                    a[m, h, j] = 1.0
                if kind == "kv" and m == j:  # α^K_{m,h,j} = α^V_{m,h,j} = 1[m=j]
                    a[m, h, j] = 1.0
    return a


def _first_pseudo_R(H: int, P: int) -> torch.Tensor:
    R = torch.zeros(H, H * P)
    R[torch.arange(H), torch.arange(H) * P] = 1.0  # R selects pseudo 1 of each head
    return R


def _power_construction(
    A: torch.Tensor, X: torch.Tensor, H: int, *, softmax: str, scale: float, v_gain: float
):
    """Shared skeleton of App. B.2/B.3: W_Q^{(m)} = [0; A^{(m−1)H}], W_K^{(m)} = [0; (A^{m−1})ᵀ], W_V^{(m)}
    routes X (×v_gain) into the m-th block of a (c·H)-wide head; then S_{h,j} = A^{(h−1)H+(j−1)}."""
    N, c = X.shape
    P = H
    q = torch.stack([torch.linalg.matrix_power(A, m * H) for m in range(H)])  # [H, N, N]  rows = tokens
    k = torch.stack([torch.linalg.matrix_power(A, m).T for m in range(H)])
    v = torch.zeros(H, N, c * H, dtype=X.dtype)
    for m in range(H):
        v[m, :, m * c : (m + 1) * c] = v_gain * X
    out = iha_attention(
        q[None],
        k[None],
        v[None],
        _eye_sel(H, P, "query"),
        _eye_sel(H, P, "kv"),
        _eye_sel(H, P, "kv"),
        _first_pseudo_R(H, P),
        collapse_mode="global",
        mask_mode="none",
        scale=scale,
        backend="eager",
        softmax=softmax,
    )  # [1, N, H, c·H]
    return out[0].reshape(N, H * H * c)


def polynomial_filter_construction(A: torch.Tensor, X: torch.Tensor, H: int) -> torch.Tensor:
    """App. B.2: one IHA layer (H = P, linear attention) computing [X, AX, …, A^{H²−1}X] exactly.

    ``A [N, N]``, ``X [N, c]`` -> ``[N, H²·c]`` with block t = A^t X. MHA needs H² heads for this.
    """
    if A.shape[0] != A.shape[1] or A.shape[0] != X.shape[0]:
        raise ValueError(f"A must be [N, N] and X [N, c]; got {tuple(A.shape)} and {tuple(X.shape)}")
    return _power_construction(A.double(), X.double(), H, softmax="linear", scale=1.0, v_gain=1.0)


def polynomial_filter_target(A: torch.Tensor, X: torch.Tensor, k: int) -> torch.Tensor:
    """[X, AX, …, A^{k−1}X] as ``[N, k·c]``."""
    outs, cur = [], X
    for _ in range(k):
        outs.append(cur)
        cur = A @ cur
    return torch.cat(outs, dim=-1)


def cyclic_shift(N: int) -> torch.Tensor:
    """The cyclic-shift permutation matrix S with (S x)[n] = x[(n+1) mod N]."""
    return torch.roll(torch.eye(N), shifts=1, dims=1)


def cpm3_workspace_construction(x: torch.Tensor, logit_scale: float = 60.0) -> torch.Tensor:
    """App. B.3 (CPM-3 "workspace"): H = ⌈√N⌉ heads, P = H, softmax at temperature→0 (logit scale 60).

    Every position n receives all cyclic shifts (S^t x)[n] for t = 0..H²−1, i.e. ``[N, H²]`` with
    column t = roll(x, −t). Values are scaled by H because each query attends evenly to its H matches.
    """
    N = x.shape[0]
    H = int(torch.ceil(torch.sqrt(torch.tensor(float(N)))).item())
    out = _power_construction(
        cyclic_shift(N).double(),
        x.double()[:, None],
        H,
        softmax="softmax",
        scale=logit_scale,
        v_gain=float(H),
    )
    return out


def cpm3_workspace_target(x: torch.Tensor, n_shifts: int) -> torch.Tensor:
    return torch.stack([torch.roll(x, -t) for t in range(n_shifts)], dim=-1)


def tanh_witness(x: torch.Tensor, w_q: torch.Tensor, w_k: torch.Tensor, w_v: torch.Tensor) -> torch.Tensor:
    """App. B.1 witness (corrected, DESIGN.md pitfall 14): H = 1, P = 2 on a repeated-token input X = 1xᵀ.

    Pseudo 2 has α^K = α^V = −I (the appendix writes +I for V, which makes the output linear).
    Query (n, 1) then sees N copies of (k, v) and N of (−k, −v): output = tanh(⟨q,k⟩)·v, which no MHA
    can produce, since MHA on repeated tokens is linear in x (every softmax is uniform).
    Returns the output at the first token, ``[d_v]``.
    """
    N = 4
    X = x[None].expand(N, -1)
    q, k, v = (X @ w_q)[None, None], (X @ w_k)[None, None], (X @ w_v)[None, None]
    a_q = torch.tensor([[[1.0, 0.0]]], dtype=x.dtype)
    a_kv = torch.tensor([[[1.0, -1.0]]], dtype=x.dtype)
    R = torch.tensor([[1.0, 0.0]], dtype=x.dtype)
    out = iha_attention(q, k, v, a_q, a_kv, a_kv, R, mask_mode="none", scale=1.0, backend="eager")
    return out[0, 0, 0]
