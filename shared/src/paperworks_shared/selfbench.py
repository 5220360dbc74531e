"""The foundation's own benchmark: the tiny LMs really learn (validation loss before/after training)."""

from __future__ import annotations

from .bench import BenchContext, new_figure
from .corpus import corpus_stats
from .train import pretrained_tiny


def run(ctx: BenchContext) -> None:
    archs = ctx.pick(smoke=["llama"], cpu=["llama", "llama-gqa"], gpu=["llama", "llama-gqa", "qwen3"])
    rows = []
    for arch in archs:
        r = pretrained_tiny(arch, ctx.scale)
        m = r.metrics
        rows.append(
            {
                "arch": arch,
                "params": m["parameters"],
                "val_loss_before": m["val_loss_before"],
                "val_loss_after": m["val_loss_after"],
                "bits_per_byte_after": m["val_loss_after"] / 0.6931471805599453,
                "train_s": m["train_seconds"],
                "cached": r.cache_hit,
            }
        )
    fig, ax = new_figure()
    ax = ax[0][0]
    xs = range(len(rows))
    ax.bar([x - 0.2 for x in xs], [r["val_loss_before"] for r in rows], 0.4, label="before")
    ax.bar([x + 0.2 for x in xs], [r["val_loss_after"] for r in rows], 0.4, label="after")
    ax.set_xticks(list(xs), [r["arch"] for r in rows])
    ax.set_ylabel("validation loss (nats/byte)")
    ax.set_title("tiny LMs on the offline corpus")
    ax.legend()
    ok = all(r["val_loss_after"] < r["val_loss_before"] - 1.0 for r in rows)
    ctx.record(
        "tiny-lm-trains",
        rows=rows,
        metrics={"corpus_" + k: v for k, v in corpus_stats().items() if k.endswith("chars")},
        claim="(foundation) the shared tiny LMs learn the offline corpus: validation loss falls clearly.",
        verdict=(
            "validation loss fell by more than 1 nat/byte for every architecture"
            if ok
            else "validation loss did NOT fall by 1 nat/byte for every architecture"
        ),
        figure=fig,
    )
