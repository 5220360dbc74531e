"""Triton kernels beside the torch reference (DESIGN.md §5.3).

* ``iha_fwd``: flash-style forward over the interleaved sequence. Masks are computed in virtual units
  (flat/token causal, windows) with block skipping; with a per-head R the collapse is fused into the
  epilogue and ``[B, N, H, dv]`` is written directly (no P-fold output traffic).
* backward (issue 21.5): flash-style recomputation in virtual units with the same masks and windows:
  the training forward also stores the log-sum-exp; ``_iha_bwd_dkdv_kernel`` (per key block) and
  ``_iha_bwd_dq_kernel`` (per query block) recompute P and skip the blocks a mask hides (DESIGN.md §5.3).
* ``iha_decode``: one new token's P pseudo-queries against an *original-size* K/V cache; each program
  loads all Hkv source heads and forms the P pseudo-keys/values in registers (Σ_m α[m,g,p]·K_m), applying
  virtual RoPE there (rotation commutes with mixing at a fixed position). KV memory is P× smaller.

On CPU they run under ``TRITON_INTERPRET=1`` (set it before triton is imported).
"""

from __future__ import annotations

import os

import torch

try:
    import triton
    import triton.language as tl

    HAS_TRITON = True
except ImportError:  # pragma: no cover - triton is a declared dependency on linux
    HAS_TRITON = False

MASK_CODES = {"flat_causal": 0, "token_causal": 1, "none": 2}


def available() -> bool:
    """True when the kernels can run: Triton importable and CUDA present or TRITON_INTERPRET=1."""
    return HAS_TRITON and (torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1")


def can_decode(*tensors: torch.Tensor) -> bool:
    """True when `iha_decode` can run on these tensors here (Triton + CUDA tensors, or the interpreter
    with CPU tensors in fp32/fp16); `functional.iha_decode_attention` falls back to torch otherwise."""
    if not available():
        return False
    interp = os.environ.get("TRITON_INTERPRET") == "1"
    if interp:
        return all(t.device.type == "cpu" and t.dtype != torch.bfloat16 for t in tensors)
    return all(t.device.type == "cuda" for t in tensors)


def _check(*tensors: torch.Tensor) -> None:
    if not available():
        raise RuntimeError(
            "backend='triton' needs CUDA or TRITON_INTERPRET=1 set before importing triton; use backend='sdpa'"
        )
    dev = tensors[0].device
    interp = os.environ.get("TRITON_INTERPRET") == "1"
    if dev.type != "cuda" and not interp:
        raise RuntimeError(f"Triton kernels need CUDA tensors (got {dev}) unless TRITON_INTERPRET=1")
    if any(t.dtype == torch.bfloat16 for t in tensors) and interp:
        raise ValueError("bf16 tl.dot is unreliable under the Triton interpreter; use fp32 or fp16 on CPU")


if HAS_TRITON:

    @triton.jit
    def _allowed(tq, tk, P: tl.constexpr, MODE: tl.constexpr, WIN: tl.constexpr):
        nq = tq // P
        nk = tk // P
        if MODE == 0:
            ok = tk <= tq
            if WIN > 0:
                ok = ok & (tq - tk < WIN * P)
        elif MODE == 1:
            ok = nk <= nq
            if WIN > 0:
                ok = ok & (nq - nk < WIN)
        else:
            ok = tk >= 0
            if WIN > 0:
                ok = ok & (nq - nk < WIN) & (nk - nq < WIN)
        return ok

    @triton.jit
    def _iha_fwd_kernel(
        Q, K, V, R, O, LSE,
        sqb, sqh, sqt, skb, skh, skt, svb, svh, svt,
        sob, so1, so2, so3, slb, slh,
        N, SV, Q_OFF, scale,
        H: tl.constexpr, GROUP: tl.constexpr, P: tl.constexpr, D: tl.constexpr, DV: tl.constexpr,
        BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr, BLOCK_TOK: tl.constexpr, BLOCK_K: tl.constexpr,
        MODE: tl.constexpr, WIN: tl.constexpr, FUSE_R: tl.constexpr, STORE_LSE: tl.constexpr,
    ):  # fmt: skip
        pid_n = tl.program_id(0)
        bh = tl.program_id(1)
        b = bh // H
        h = bh % H
        g = h // GROUP
        tok = pid_n * BLOCK_TOK + tl.arange(0, BLOCK_TOK)
        tok_ok = tok < N
        od = tl.arange(0, BLOCK_D)
        odv = tl.arange(0, BLOCK_DV)
        ok_t = tl.arange(0, BLOCK_K)
        # virtual-key range this token block can see (block skipping; virtual units)
        tq_lo = (Q_OFF + pid_n * BLOCK_TOK) * P
        tq_hi = (Q_OFF + tl.minimum(pid_n * BLOCK_TOK + BLOCK_TOK, N)) * P  # exclusive
        hi = SV
        lo = 0
        if MODE != 2:
            hi = tl.minimum(SV, tq_hi)
        if WIN > 0:
            if MODE == 0:
                lo = tl.maximum(0, tq_lo - WIN * P + 1)
            else:
                lo = tl.maximum(0, (tq_lo // P - WIN + 1) * P)
            if MODE == 2:
                hi = tl.minimum(SV, tq_hi + WIN * P)
        lo = (lo // BLOCK_K) * BLOCK_K
        out = tl.zeros([BLOCK_TOK, BLOCK_DV], dtype=tl.float32)
        for p in tl.static_range(P):
            rows = tok * P + p
            tq = (Q_OFF + tok) * P + p
            q = tl.load(
                Q + b * sqb + h * sqh + rows[:, None] * sqt + od[None, :],
                mask=tok_ok[:, None] & (od[None, :] < D),
                other=0.0,
            )
            m_i = tl.full([BLOCK_TOK], -1.0e30, dtype=tl.float32)
            l_i = tl.zeros([BLOCK_TOK], dtype=tl.float32)
            acc = tl.zeros([BLOCK_TOK, BLOCK_DV], dtype=tl.float32)
            for start in range(lo, hi, BLOCK_K):
                tk = start + ok_t
                kv_ok = tk < SV
                k = tl.load(
                    K + b * skb + g * skh + tk[:, None] * skt + od[None, :],
                    mask=kv_ok[:, None] & (od[None, :] < D),
                    other=0.0,
                )
                s = tl.dot(q, tl.trans(k), input_precision="ieee") * scale
                ok = _allowed(tq[:, None], tk[None, :], P, MODE, WIN) & kv_ok[None, :]
                s = tl.where(ok, s, -1.0e30)
                m_new = tl.maximum(m_i, tl.max(s, 1))
                w = tl.where(ok, tl.exp(s - m_new[:, None]), 0.0)
                corr = tl.exp(m_i - m_new)
                l_i = l_i * corr + tl.sum(w, 1)
                v = tl.load(
                    V + b * svb + g * svh + tk[:, None] * svt + odv[None, :],
                    mask=kv_ok[:, None] & (odv[None, :] < DV),
                    other=0.0,
                )
                acc = acc * corr[:, None] + tl.dot(w.to(v.dtype), v, input_precision="ieee")
                m_i = m_new
            acc = acc / tl.maximum(l_i, 1.0e-30)[:, None]
            if STORE_LSE:  # log-sum-exp per virtual row, for the flash-style backward
                tl.store(LSE + b * slb + h * slh + rows, m_i + tl.log(tl.maximum(l_i, 1.0e-30)), mask=tok_ok)
            if FUSE_R:
                r = tl.load(R + h * P + p).to(tl.float32)
                out += r * acc
            else:
                tl.store(
                    O + b * sob + h * so1 + rows[:, None] * so2 + odv[None, :] * so3,
                    acc.to(O.dtype.element_ty),
                    mask=tok_ok[:, None] & (odv[None, :] < DV),
                )
        if FUSE_R:  # fused per-head collapse: write [B, N, H, dv] directly
            tl.store(
                O + b * sob + tok[:, None] * so1 + h * so2 + odv[None, :] * so3,
                out.to(O.dtype.element_ty),
                mask=tok_ok[:, None] & (odv[None, :] < DV),
            )

    @triton.jit
    def _iha_decode_kernel(
        Q, K, V, AK, AV, COS, SIN, KM, O,
        sqb, sqh, sqp, skb, skh, skt, svb, svh, svt, scb, sct, skmb,
        S, scale,
        H: tl.constexpr, HKV: tl.constexpr, P: tl.constexpr, D: tl.constexpr, DV: tl.constexpr,
        BLOCK_P: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr, BLOCK_S: tl.constexpr,
        MODE: tl.constexpr, WIN: tl.constexpr, ROPE: tl.constexpr, HAS_KM: tl.constexpr,
    ):  # fmt: skip
        bh = tl.program_id(0)
        b = bh // H
        h = bh % H
        g = h // (H // HKV)
        op = tl.arange(0, BLOCK_P)
        od = tl.arange(0, BLOCK_D)
        odv = tl.arange(0, BLOCK_DV)
        os_ = tl.arange(0, BLOCK_S)
        q = tl.load(
            Q + b * sqb + h * sqh + op[:, None] * sqp + od[None, :],
            mask=(op[:, None] < P) & (od[None, :] < D),
            other=0.0,
        ).to(tl.float32)
        tq = (S - 1) * P + op  # the new token is the last cached one (bottom-right alignment)
        half = D // 2
        src = tl.where(od < half, od + half, od - half)  # rotate_half source column
        sign = tl.where(od < half, -1.0, 1.0)
        m_i = tl.full([BLOCK_P], -1.0e30, dtype=tl.float32)
        l_i = tl.zeros([BLOCK_P], dtype=tl.float32)
        acc = tl.zeros([BLOCK_P, BLOCK_DV], dtype=tl.float32)
        lo = 0
        if WIN > 0:
            lo = tl.maximum(0, S - WIN - 1)  # flat windows reach one token further back
        for start in range(lo, S, BLOCK_S):
            n = start + os_
            n_ok = n < S
            if HAS_KM:  # key padding mask of this row (True = attend)
                n_ok = n_ok & (tl.load(KM + b * skmb + n, mask=n < S, other=0) != 0)
            for pk in tl.static_range(P):
                kt = tl.zeros([BLOCK_S, BLOCK_D], dtype=tl.float32)
                kr = tl.zeros([BLOCK_S, BLOCK_D], dtype=tl.float32)
                vt = tl.zeros([BLOCK_S, BLOCK_DV], dtype=tl.float32)
                for m in tl.static_range(HKV):  # mix on the fly from the original-size cache
                    a_k = tl.load(AK + (m * HKV + g) * P + pk).to(tl.float32)
                    a_v = tl.load(AV + (m * HKV + g) * P + pk).to(tl.float32)
                    kmask = n_ok[:, None] & (od[None, :] < D)
                    kb = K + b * skb + m * skh + n[:, None] * skt
                    kt += a_k * tl.load(kb + od[None, :], mask=kmask, other=0.0).to(tl.float32)
                    if ROPE:
                        kr += (
                            a_k
                            * sign[None, :]
                            * tl.load(kb + src[None, :], mask=kmask, other=0.0).to(tl.float32)
                        )
                    vt += a_v * tl.load(
                        V + b * svb + m * svh + n[:, None] * svt + odv[None, :],
                        mask=n_ok[:, None] & (odv[None, :] < DV),
                        other=0.0,
                    ).to(tl.float32)
                tk = n * P + pk
                if ROPE:  # virtual-position RoPE on the mixed key
                    cmask = n_ok[:, None] & (od[None, :] < D)
                    c = tl.load(COS + b * scb + tk[:, None] * sct + od[None, :], mask=cmask, other=0.0)
                    s_ = tl.load(SIN + b * scb + tk[:, None] * sct + od[None, :], mask=cmask, other=0.0)
                    kt = kt * c + kr * s_
                s = tl.sum(q[:, None, :] * kt[None, :, :], axis=2) * scale
                ok = _allowed(tq[:, None], tk[None, :], P, MODE, WIN) & n_ok[None, :] & (op[:, None] < P)
                s = tl.where(ok, s, -1.0e30)
                m_new = tl.maximum(m_i, tl.max(s, 1))
                w = tl.where(ok, tl.exp(s - m_new[:, None]), 0.0)
                corr = tl.exp(m_i - m_new)
                l_i = l_i * corr + tl.sum(w, 1)
                acc = acc * corr[:, None] + tl.sum(w[:, :, None] * vt[None, :, :], axis=1)
                m_i = m_new
        acc = acc / tl.maximum(l_i, 1.0e-30)[:, None]
        tl.store(
            O + b * (H * P * DV) + h * (P * DV) + op[:, None] * DV + odv[None, :],
            acc.to(O.dtype.element_ty),
            mask=(op[:, None] < P) & (odv[None, :] < DV),
        )

    @triton.jit
    def _iha_bwd_dkdv_kernel(
        Q, K, V, DO, LSE, DELTA, DK, DVP,
        sqb, sqh, sqt, skb, skh, skt, svb, svh, svt, sdob, sdoh, sdot,
        slb, slh, sdkb, sdkh, sdkt, sdvb, sdvh, sdvt,
        TQ, SV, Q_OFF, scale,
        H: tl.constexpr, GROUP: tl.constexpr, P: tl.constexpr, D: tl.constexpr, DV: tl.constexpr,
        BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
        MODE: tl.constexpr, WIN: tl.constexpr,
    ):  # fmt: skip
        """dK, dV of one block of virtual keys (flash-style: recompute P from Q, K and the saved lse)."""
        pid_n = tl.program_id(0)
        bg = tl.program_id(1)
        b = bg // (H // GROUP)
        g = bg % (H // GROUP)
        tk = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        kv_ok = tk < SV
        od = tl.arange(0, BLOCK_D)
        odv = tl.arange(0, BLOCK_DV)
        om = tl.arange(0, BLOCK_M)
        k = tl.load(K + b * skb + g * skh + tk[:, None] * skt + od[None, :],
                    mask=kv_ok[:, None] & (od[None, :] < D), other=0.0)  # fmt: skip
        v = tl.load(V + b * svb + g * svh + tk[:, None] * svt + odv[None, :],
                    mask=kv_ok[:, None] & (odv[None, :] < DV), other=0.0)  # fmt: skip
        dk = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
        dv = tl.zeros([BLOCK_N, BLOCK_DV], dtype=tl.float32)
        # query rows (virtual, relative to this call's queries) that can see this key block: a superset
        tk_lo = pid_n * BLOCK_N
        tk_hi = tl.minimum(SV, tk_lo + BLOCK_N)  # exclusive
        lo = 0
        hi = TQ
        if MODE != 2:
            lo = tl.maximum(0, (tk_lo // P) * P - Q_OFF * P)
            if WIN > 0:
                hi = tl.minimum(TQ, ((tk_hi - 1) // P + WIN + 1) * P - Q_OFF * P)
        elif WIN > 0:
            lo = tl.maximum(0, (tk_lo // P - WIN) * P - Q_OFF * P)
            hi = tl.minimum(TQ, ((tk_hi - 1) // P + WIN + 1) * P - Q_OFF * P)
        lo = (lo // BLOCK_M) * BLOCK_M
        for j in tl.static_range(GROUP):
            h = g * GROUP + j
            for start in range(lo, hi, BLOCK_M):
                rows = start + om
                row_ok = rows < TQ
                tq = Q_OFF * P + rows
                q = tl.load(Q + b * sqb + h * sqh + rows[:, None] * sqt + od[None, :],
                            mask=row_ok[:, None] & (od[None, :] < D), other=0.0)  # fmt: skip
                do = tl.load(DO + b * sdob + h * sdoh + rows[:, None] * sdot + odv[None, :],
                             mask=row_ok[:, None] & (odv[None, :] < DV), other=0.0)  # fmt: skip
                lse = tl.load(LSE + b * slb + h * slh + rows, mask=row_ok, other=0.0)
                delta = tl.load(DELTA + b * slb + h * slh + rows, mask=row_ok, other=0.0)
                s = tl.dot(q, tl.trans(k), input_precision="ieee") * scale
                ok = _allowed(tq[:, None], tk[None, :], P, MODE, WIN) & kv_ok[None, :] & row_ok[:, None]
                p = tl.where(ok, tl.exp(s - lse[:, None]), 0.0)
                dv += tl.dot(tl.trans(p.to(do.dtype)), do, input_precision="ieee")
                dp = tl.dot(do, tl.trans(v), input_precision="ieee")
                ds = p * (dp - delta[:, None]) * scale
                dk += tl.dot(tl.trans(ds.to(q.dtype)), q, input_precision="ieee")
        tl.store(DK + b * sdkb + g * sdkh + tk[:, None] * sdkt + od[None, :], dk,
                 mask=kv_ok[:, None] & (od[None, :] < D))  # fmt: skip
        tl.store(DVP + b * sdvb + g * sdvh + tk[:, None] * sdvt + odv[None, :], dv,
                 mask=kv_ok[:, None] & (odv[None, :] < DV))  # fmt: skip

    @triton.jit
    def _iha_bwd_dq_kernel(
        Q, K, V, DO, LSE, DELTA, DQ,
        sqb, sqh, sqt, skb, skh, skt, svb, svh, svt, sdob, sdoh, sdot, slb, slh, sdqb, sdqh, sdqt,
        TQ, SV, Q_OFF, scale,
        H: tl.constexpr, GROUP: tl.constexpr, P: tl.constexpr, D: tl.constexpr, DV: tl.constexpr,
        BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
        MODE: tl.constexpr, WIN: tl.constexpr,
    ):  # fmt: skip
        """dQ of one block of virtual query rows (recompute P; loop over the visible key blocks only)."""
        pid_m = tl.program_id(0)
        bh = tl.program_id(1)
        b = bh // H
        h = bh % H
        g = h // GROUP
        rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        row_ok = rows < TQ
        tq = Q_OFF * P + rows
        od = tl.arange(0, BLOCK_D)
        odv = tl.arange(0, BLOCK_DV)
        on = tl.arange(0, BLOCK_N)
        q = tl.load(Q + b * sqb + h * sqh + rows[:, None] * sqt + od[None, :],
                    mask=row_ok[:, None] & (od[None, :] < D), other=0.0)  # fmt: skip
        do = tl.load(DO + b * sdob + h * sdoh + rows[:, None] * sdot + odv[None, :],
                     mask=row_ok[:, None] & (odv[None, :] < DV), other=0.0)  # fmt: skip
        lse = tl.load(LSE + b * slb + h * slh + rows, mask=row_ok, other=0.0)
        delta = tl.load(DELTA + b * slb + h * slh + rows, mask=row_ok, other=0.0)
        dq = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
        tq_lo = Q_OFF * P + pid_m * BLOCK_M
        tq_hi = Q_OFF * P + tl.minimum(TQ, pid_m * BLOCK_M + BLOCK_M)  # exclusive
        lo = 0
        hi = SV
        if MODE != 2:
            hi = tl.minimum(SV, ((tq_hi - 1) // P + 1) * P)
        if WIN > 0:
            lo = tl.maximum(0, (tq_lo // P - WIN) * P)
            if MODE == 2:
                hi = tl.minimum(SV, ((tq_hi - 1) // P + WIN + 1) * P)
        lo = (lo // BLOCK_N) * BLOCK_N
        for start in range(lo, hi, BLOCK_N):
            tk = start + on
            kv_ok = tk < SV
            k = tl.load(K + b * skb + g * skh + tk[:, None] * skt + od[None, :],
                        mask=kv_ok[:, None] & (od[None, :] < D), other=0.0)  # fmt: skip
            v = tl.load(V + b * svb + g * svh + tk[:, None] * svt + odv[None, :],
                        mask=kv_ok[:, None] & (odv[None, :] < DV), other=0.0)  # fmt: skip
            s = tl.dot(q, tl.trans(k), input_precision="ieee") * scale
            ok = _allowed(tq[:, None], tk[None, :], P, MODE, WIN) & kv_ok[None, :] & row_ok[:, None]
            p = tl.where(ok, tl.exp(s - lse[:, None]), 0.0)
            dp = tl.dot(do, tl.trans(v), input_precision="ieee")
            ds = p * (dp - delta[:, None]) * scale
            dq += tl.dot(ds.to(k.dtype), k, input_precision="ieee")
        tl.store(DQ + b * sdqb + h * sdqh + rows[:, None] * sdqt + od[None, :], dq,
                 mask=row_ok[:, None] & (od[None, :] < D))  # fmt: skip


def _np2(x: int) -> int:
    return max(16, triton.next_power_of_2(x))


def _fwd_launch(qm, km, vm, R, P, mask_mode, window, q_offset, scale, want_lse=False):
    b, h, t, d = qm.shape
    hkv, sv, dv = km.shape[1], km.shape[2], vm.shape[-1]
    n = t // P
    qm, km, vm = qm.contiguous(), km.contiguous(), vm.contiguous()
    fuse = R is not None
    if fuse:
        o = torch.empty(b, n, h, dv, device=qm.device, dtype=qm.dtype)
        r = R.to(torch.float32).contiguous()
    else:
        o = torch.empty(b, h, t, dv, device=qm.device, dtype=qm.dtype)
        r = qm  # unused
    lse = torch.empty(b, h, t, device=qm.device, dtype=torch.float32) if want_lse else qm
    block_tok = 16
    grid = (triton.cdiv(n, block_tok), b * h)
    _iha_fwd_kernel[grid](
        qm, km, vm, r, o, lse,
        qm.stride(0), qm.stride(1), qm.stride(2), km.stride(0), km.stride(1), km.stride(2),
        vm.stride(0), vm.stride(1), vm.stride(2),
        o.stride(0), o.stride(1), o.stride(2), o.stride(3), h * t, t,
        n, sv, q_offset, scale,
        H=h, GROUP=h // hkv, P=P, D=d, DV=dv, BLOCK_D=_np2(d), BLOCK_DV=_np2(dv),
        BLOCK_TOK=block_tok, BLOCK_K=32, MODE=MASK_CODES[mask_mode], WIN=window or 0, FUSE_R=fuse,
        STORE_LSE=want_lse,
    )  # fmt: skip
    return (o, lse) if want_lse else o


def _bwd_launch(qm, km, vm, do, lse, delta, P, mask_mode, window, q_offset, scale):
    """Flash-style backward: dK/dV per key block (looping over the GROUP query heads of its KV head and
    the query rows that can see it), dQ per query block; P is recomputed from Q, K and the saved lse."""
    b, h, t, d = qm.shape
    hkv, sv, dv = km.shape[1], km.shape[2], vm.shape[-1]
    qm, km, vm, do = qm.contiguous(), km.contiguous(), vm.contiguous(), do.contiguous()
    dq = torch.empty(b, h, t, d, device=qm.device, dtype=torch.float32)
    dk = torch.empty(b, hkv, sv, d, device=qm.device, dtype=torch.float32)
    dvv = torch.empty(b, hkv, sv, dv, device=qm.device, dtype=torch.float32)
    bm, bn = 16, 16
    common = dict(H=h, GROUP=h // hkv, P=P, D=d, DV=dv, BLOCK_D=_np2(d), BLOCK_DV=_np2(dv), BLOCK_M=bm,
                  BLOCK_N=bn, MODE=MASK_CODES[mask_mode], WIN=window or 0)  # fmt: skip
    _iha_bwd_dkdv_kernel[(triton.cdiv(sv, bn), b * hkv)](
        qm, km, vm, do, lse, delta, dk, dvv,
        qm.stride(0), qm.stride(1), qm.stride(2), km.stride(0), km.stride(1), km.stride(2),
        vm.stride(0), vm.stride(1), vm.stride(2), do.stride(0), do.stride(1), do.stride(2),
        lse.stride(0), lse.stride(1), dk.stride(0), dk.stride(1), dk.stride(2),
        dvv.stride(0), dvv.stride(1), dvv.stride(2),
        t, sv, q_offset, scale, **common,
    )  # fmt: skip
    _iha_bwd_dq_kernel[(triton.cdiv(t, bm), b * h)](
        qm, km, vm, do, lse, delta, dq,
        qm.stride(0), qm.stride(1), qm.stride(2), km.stride(0), km.stride(1), km.stride(2),
        vm.stride(0), vm.stride(1), vm.stride(2), do.stride(0), do.stride(1), do.stride(2),
        lse.stride(0), lse.stride(1), dq.stride(0), dq.stride(1), dq.stride(2),
        t, sv, q_offset, scale, **common,
    )  # fmt: skip
    return dq.to(qm.dtype), dk.to(km.dtype), dvv.to(vm.dtype)


def _reference(qm, km, vm, R, P, mask_mode, window, q_offset, scale):
    """Torch path with the same semantics (used for the backward pass and in tests)."""
    from ..functional import attend_sdpa, unmerge_pseudo
    from ..masks import virtual_mask

    n_q, n_kv = qm.shape[2] // P, km.shape[2] // P
    mask = virtual_mask(n_q, n_kv, P, mask_mode, window, q_offset, device=qm.device)
    o = attend_sdpa(qm, km, vm, mask, scale)
    if R is None:
        return o
    return torch.einsum("hp,bhnpd->bnhd", R.to(o.dtype), unmerge_pseudo(o, P))


class _IHAFwd(torch.autograd.Function):
    """Fused forward; the backward is the Triton flash-style backward (`_bwd_launch`), in virtual
    units with the same masks and windows. In training the forward writes the uncollapsed output and
    its log-sum-exp (needed by the backward); a per-head R is then applied by a small einsum."""

    @staticmethod
    def forward(ctx, qm, km, vm, R, P, mask_mode, window, q_offset, scale, train):
        ctx.has_r = R is not None
        ctx.args = (P, mask_mode, window, q_offset, scale)
        if not train:  # inference: fused collapse epilogue, no lse
            return _fwd_launch(qm, km, vm, R, P, mask_mode, window, q_offset, scale)
        o, lse = _fwd_launch(qm, km, vm, None, P, mask_mode, window, q_offset, scale, want_lse=True)
        ctx.save_for_backward(qm, km, vm, o, lse, R if R is not None else qm.new_empty(0))
        if R is None:
            return o
        return torch.einsum("hp,bhnpd->bnhd", R.to(o.dtype), o.unflatten(2, (-1, P)))

    @staticmethod
    def backward(ctx, grad):
        qm, km, vm, o, lse, R = ctx.saved_tensors
        P, mask_mode, window, q_offset, scale = ctx.args
        dR = None
        if ctx.has_r:  # out[b,n,h] = Σ_p R[h,p] o[b,h,n,p]
            b, h, t, dv = o.shape
            do = torch.einsum("hp,bnhd->bhnpd", R.to(grad.dtype), grad).reshape(b, h, t, dv)
            dR = torch.einsum("bhnpd,bnhd->hp", o.unflatten(2, (-1, P)).float(), grad.float()).to(R.dtype)
        else:
            do = grad
        delta = (o.float() * do.float()).sum(-1)  # rowsum(dO ∘ O), [B, H, Nq·P]
        dq, dk, dv_ = _bwd_launch(
            qm, km, vm, do.to(qm.dtype), lse, delta, P, mask_mode, window, q_offset, scale
        )
        return dq, dk, dv_, dR, None, None, None, None, None, None


def iha_fwd(qm, km, vm, *, P, mask_mode="flat_causal", window=None, q_offset=None, scale=None, R=None):
    """Fused IHA forward on interleaved ``qm [B,H,Nq·P,d]``, ``km/vm [B,Hkv,S·P,·]``.

    Returns ``[B, H, Nq·P, dv]``, or ``[B, Nq, H, dv]`` when a per-head ``R [H, P]`` is given (fused
    collapse). A global R needs the cheap torch einsum afterwards (DESIGN.md §5.3).
    """
    _check(qm, km, vm)
    if mask_mode not in MASK_CODES:
        raise ValueError(f"unknown mask_mode {mask_mode!r}")
    if qm.shape[2] % P or km.shape[2] % P:
        raise ValueError(f"virtual lengths {qm.shape[2]}, {km.shape[2]} must be multiples of P={P}")
    if R is not None and R.shape != (qm.shape[1], P):
        raise ValueError(
            f"fused collapse needs a per-head R [H, P] = [{qm.shape[1]}, {P}], got {tuple(R.shape)}"
        )
    if q_offset is None:
        q_offset = (km.shape[2] - qm.shape[2]) // P
    scale = qm.shape[-1] ** -0.5 if scale is None else scale
    train = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (qm, km, vm, R))
    return _IHAFwd.apply(qm, km, vm, R, P, mask_mode, window, q_offset, scale, train)


@torch.no_grad()
def iha_decode(
    qm,
    k_cache,
    v_cache,
    alpha_k,
    alpha_v=None,
    *,
    mask_mode="flat_causal",
    window=None,
    scale=None,
    rope_k=None,
    key_mask=None,
):
    """Decode one token: ``qm [B,H,P,d]`` (mixed; rotated) vs the unmixed cache ``k/v [B,Hkv,S,·]``.

    ``rope_k`` is an optional (cos, sin) pair ``[B|1, S·P, d]`` at the keys' virtual positions, applied
    to the pseudo-keys formed in registers (a batch-1 table is read with stride 0, never copied per
    row). ``key_mask [B, S]`` (bool, True = attend) masks padded cache entries. Returns
    ``[B, H, P, dv]`` (pre-collapse); a row with no visible key gives 0. Inference only.
    """
    _check(qm, k_cache, v_cache)
    b, h, P, d = qm.shape
    hkv, S, dv = k_cache.shape[1], k_cache.shape[2], v_cache.shape[-1]
    if alpha_k.shape != (hkv, hkv, P):
        raise ValueError(f"alpha_k must be [{hkv}, {hkv}, {P}], got {tuple(alpha_k.shape)}")
    if alpha_v is None:  # unmixed values: every pseudo-value is its own head's value
        alpha_v = torch.eye(hkv, device=qm.device)[:, :, None].expand(hkv, hkv, P)
    scale = d**-0.5 if scale is None else scale
    o = torch.empty(b, h, P, dv, device=qm.device, dtype=qm.dtype)
    if rope_k is not None:
        cos, sin = (t.to(torch.float32).reshape(-1, S * P, d).contiguous() for t in rope_k)
        if cos.shape[0] not in (1, b):
            raise ValueError(f"rope_k tables must be [1 or {b}, {S * P}, {d}], got {tuple(rope_k[0].shape)}")
        scb = cos.stride(0) if cos.shape[0] == b and b > 1 else 0  # batch-1 table: stride 0, no copy
    else:
        cos = sin = qm
        scb = 0
    if key_mask is not None:
        if key_mask.shape != (b, S):
            raise ValueError(f"key_mask must be [{b}, {S}], got {tuple(key_mask.shape)}")
        km = key_mask.to(torch.int8).contiguous()
    else:
        km = qm
    qm, k_cache, v_cache = qm.contiguous(), k_cache.contiguous(), v_cache.contiguous()
    _iha_decode_kernel[(b * h,)](
        qm, k_cache, v_cache, alpha_k.float().contiguous(), alpha_v.float().contiguous(), cos, sin, km, o,
        qm.stride(0), qm.stride(1), qm.stride(2), k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
        v_cache.stride(0), v_cache.stride(1), v_cache.stride(2), scb, cos.stride(1),
        km.stride(0) if key_mask is not None else 0,
        S, scale,
        H=h, HKV=hkv, P=P, D=d, DV=dv, BLOCK_P=_np2(P), BLOCK_D=_np2(d), BLOCK_DV=_np2(dv), BLOCK_S=16,
        MODE=MASK_CODES[mask_mode], WIN=window or 0, ROPE=rope_k is not None, HAS_KM=key_mask is not None,
    )  # fmt: skip
    return o
