"""Triton kernels for IHA (fused forward with per-head collapse epilogue; decode from an MHA-sized cache)."""
