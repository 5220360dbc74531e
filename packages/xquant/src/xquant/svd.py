"""Offline SVD latents for GQA models (paper §3.3, DESIGN.md §1.5/§1.6), computed once per model.

W (math convention, X·W) = U Σ Bᵀ. XQuant-GQA caches X·U (without Σ, paper §3.3.1) and
rematerializes K = (X·U)·M with M = Σ Bᵀ. XQuant-CL on GQA uses U_kv from the SVD of [W_k | W_v] and
reconstructs X̂_i = X̂_{i-1} + Q(ΔX_i U_kv) U_kvᵀ, exact on K/V when Q is the identity because W_kv
only sees its column space; CL never uses M, so it is not kept. Computed in float64 (DESIGN.md pitfall 3),
stored in the model dtype.

Reuse (issue 22.1): factors are memoized in-process per weight tensor, keyed by the SHA-256 of the
weights' bytes (a changed weight gets new factors), so every cache of a model shares one copy and a
second `from_model` does no SVD. With ``svd_path=`` they are also kept on disk (one file per factor
set, named by that hash, written to a private temp file and renamed under a file lock, so concurrent
processes compute each factor set once); ``svd_path=True`` uses the shared paperworks cache.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch

#: SVDs computed by this process (tests count them to prove factors are reused).
SVD_CALLS = 0


@dataclass
class Latent:
    u: torch.Tensor  # [d, r] orthonormal columns
    m: torch.Tensor | None  # [r, n] = Σ Bᵀ, so that W = U M (None where the mode never uses it)

    @property
    def rank(self) -> int:
        return self.u.shape[1]

    def tensors(self) -> list[torch.Tensor]:
        return [t for t in (self.u, self.m) if t is not None]


def latent_factors(w: torch.Tensor, dtype: torch.dtype, check: bool = True, keep_m: bool = True) -> Latent:
    """Thin SVD of `w` [d, n] (math convention) in float64 -> (U, M) in `dtype`; verifies U M == W."""
    global SVD_CALLS
    SVD_CALLS += 1
    w64 = w.detach().to(torch.float64)
    u, s, vh = torch.linalg.svd(w64, full_matrices=False)
    m = s[:, None] * vh
    if check:
        err = (u @ m - w64).abs().max().item()
        scale = w64.abs().max().item() or 1.0
        if err > 1e-9 * max(1.0, scale) * max(w.shape):
            raise RuntimeError(f"SVD reconstruction error {err:.3g} too large")
    return Latent(u.to(dtype).contiguous(), m.to(dtype).contiguous() if keep_m else None)


def weight_hash(w: torch.Tensor) -> str:
    """SHA-256 of a weight's dtype, shape and bytes, memoized on the tensor until it is modified in place."""
    memo = getattr(w, "_xquant_hash", None)
    stamp = (w.data_ptr(), w._version, tuple(w.shape), w.dtype)
    if memo is not None and memo[0] == stamp:
        return memo[1]
    h = hashlib.sha256(f"{w.dtype}|{tuple(w.shape)}|".encode())
    h.update(w.detach().contiguous().cpu().view(torch.uint8).numpy().tobytes())
    digest = h.hexdigest()
    try:
        setattr(w, "_xquant_hash", (stamp, digest))  # noqa: B010 - a private memo on the tensor
    except (AttributeError, RuntimeError):  # pragma: no cover - tensors that refuse attributes
        pass
    return digest


def _load(path: Path, device, dtype, keep_m: bool) -> Latent | None:
    try:
        d = torch.load(path, map_location=device, weights_only=True)
        u, m = d["u"], d.get("m")
        if u.dtype != dtype or (keep_m and m is None):
            return None
        return Latent(u, m if keep_m else None)
    except Exception:  # unreadable/corrupt file: recompute and replace it
        return None


def cached_factors(
    owner, weights: list[torch.Tensor], dtype: torch.dtype, keep_m: bool, svd_path=None
) -> Latent:
    """Factors of the column-concatenation of `weights` (each [out, in] nn.Linear weights), reused.

    `owner` (the k_proj module) holds the in-process memo, so the factors live as long as the model.
    """
    key = "+".join(weight_hash(w) for w in weights) + f"|{dtype}|{'um' if keep_m else 'u'}"
    memo = owner.__dict__.setdefault("_xquant_factors", {})
    if key in memo:
        return memo[key]
    full = key.replace(f"|{'um' if keep_m else 'u'}", "|um")
    if not keep_m and full in memo:  # a latent-mode set exists: share its U
        shared = Latent(memo[full].u, None)
        memo[key] = shared
        return shared
    device = weights[0].device

    def compute() -> Latent:
        w = torch.cat([x.detach() for x in weights], 0).T
        return latent_factors(w, dtype, keep_m=keep_m)

    def blob(lat: Latent) -> dict:
        return {"u": lat.u.cpu(), "m": None if lat.m is None else lat.m.cpu(), "key": key}

    name = hashlib.sha256(key.encode()).hexdigest()[:32]
    lat: Latent | None = None
    if svd_path is True:  # the shared paperworks cache: one builder, published by atomic rename
        from paperworks_shared.cache import get_or_build
        from paperworks_shared.files import atomic_torch_save

        built: list[Latent] = []

        def build(staging: Path) -> None:
            built.append(compute())
            atomic_torch_save(blob(built[0]), staging / "factors.pt")

        folder, _ = get_or_build("xquant-svd", name, build)
        lat = built[0] if built else _load(folder / "factors.pt", device, dtype, keep_m)
        if lat is None:  # an unreadable entry (foreign dtype, corrupt): recompute in memory
            lat = compute()
    elif svd_path is not None and svd_path is not False:
        from paperworks_shared.files import atomic_torch_save, file_lock

        folder = Path(svd_path).expanduser()
        path = folder / f"{name}.pt"
        lat = _load(path, device, dtype, keep_m) if path.is_file() else None
        if lat is None:
            with file_lock(folder / f".{name}.lock"):
                lat = _load(path, device, dtype, keep_m) if path.is_file() else None
                if lat is None:
                    lat = compute()
                    atomic_torch_save(blob(lat), path)  # private temp file + rename
    else:
        lat = compute()
    memo[key] = lat
    return lat
