"""GPU check for a machine with CUDA (e.g. an H200), prepared to run in < 10 minutes; NOT run yet.

1. Kernel throughput of the fused dequant+matmul (4-bit X codes of l tokens x d=4096 times [W_k|W_v])
   as a fraction of the HBM bandwidth and of dense fp16 peak.
2. Decode latency (ms/token) of a random-weight Llama-3.1-8B-shaped model (8 of its 32 layers) with
   DynamicCache vs XQuantCache (GQA latent, 4-bit) at 4K-32K context, batch 1.

    python packages/xquant/scripts/gpu_check.py --tbps 4.8 --tflops 989 > gpu_check.json
"""

from __future__ import annotations

import argparse
import json

import torch


def kernel_throughput(tbps: float, tflops: float) -> list[dict]:
    from xquant.kernels.triton_dequant_matmul import dequant_matmul
    from xquant.quant import quantize

    rows = []
    d, n = 4096, 2048
    w = (torch.randn(d, n, device="cuda") / 64).half()
    for tokens in (4096, 16384, 32768):
        q = quantize(torch.randn(1, tokens, d, device="cuda"), 4, 128, "token")
        for _ in range(3):
            dequant_matmul(q, w, out_dtype=torch.float16, block_m=64, block_n=64)
        torch.cuda.synchronize()
        ev0, ev1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        ev0.record()
        for _ in range(10):
            dequant_matmul(q, w, out_dtype=torch.float16, block_m=64, block_n=64)
        ev1.record()
        torch.cuda.synchronize()
        sec = ev0.elapsed_time(ev1) / 10 / 1e3
        nbytes = q.nbytes() + w.numel() * 2 + tokens * n * 2
        flops = 2 * tokens * d * n
        rows.append({"tokens": tokens, "ms": sec * 1e3, "bw_fraction": nbytes / sec / (tbps * 1e12),
                     "flop_fraction": flops / sec / (tflops * 1e12)})  # fmt: skip
    return rows


@torch.no_grad()
def decode_latency() -> list[dict]:
    from transformers import AutoModelForCausalLM, DynamicCache, LlamaConfig

    from xquant import XQuantCache, XQuantConfig

    cfg = LlamaConfig(hidden_size=4096, intermediate_size=14336, num_hidden_layers=8, num_attention_heads=32,
                      num_key_value_heads=8, vocab_size=32000, max_position_embeddings=40000)  # fmt: skip
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float16).cuda().eval()
    rows = []
    for ctx in (4096, 16384, 32768):
        ids = torch.randint(0, 32000, (1, ctx), device="cuda")
        for name, make in (("fp16", lambda: DynamicCache(config=cfg)),
                           ("xquant-4-latent", lambda: XQuantCache.from_model(model, XQuantConfig(bits=4)))):  # fmt: skip
            cache = make()
            out = model(input_ids=ids, past_key_values=cache, use_cache=True)
            nxt = out.logits[:, -1:].argmax(-1)
            torch.cuda.synchronize()
            ev0, ev1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            ev0.record()
            for _ in range(8):
                nxt = model(input_ids=nxt, past_key_values=cache, use_cache=True).logits[:, -1:].argmax(-1)
            ev1.record()
            torch.cuda.synchronize()
            rows.append({"context": ctx, "cache": name, "ms_per_token": ev0.elapsed_time(ev1) / 8})
            if hasattr(cache, "detach"):
                cache.detach()
            del cache
            torch.cuda.empty_cache()
    return rows


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tbps", type=float, default=4.8)
    ap.add_argument("--tflops", type=float, default=989.0)
    a = ap.parse_args()
    print(json.dumps({"kernel": kernel_throughput(a.tbps, a.tflops), "decode": decode_latency()}, indent=1))
