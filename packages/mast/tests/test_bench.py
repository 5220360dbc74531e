"""The quick benchmark experiments run end to end and their numbers are what the design predicts."""

import json

from mast.bench import chunk_inflation, kappa_vs_prevalence, parse_accuracy
from paperworks_shared.bench import BenchContext


def test_parse_accuracy_and_kappa_experiments(tmp_path):
    ctx = BenchContext("mast", "smoke", tmp_path)
    parse_accuracy(ctx)
    kappa_vs_prevalence(ctx)
    rec = json.loads((tmp_path / "mast" / "parse-accuracy.json").read_text())
    rows = {r["style"]: r for r in rec["rows"]}
    assert abs(rows["label_echo_all_yes"]["first_match_wrong_%"] - 100 * 2 / 14) < 1e-9
    assert rec["metrics"]["overall_ours_wrong_%"] == 0.0
    assert rows["truncated_last_line"]["ours_unparsed_%"] > 0 and rows["terse"]["ours_unparsed_%"] == 0
    assert (tmp_path / "mast" / "parse-accuracy.png").exists()
    k = json.loads((tmp_path / "mast" / "kappa-vs-prevalence.json").read_text())
    kv = {r["mode"]: r for r in k["rows"]}
    assert kv["2.6"]["kappa_flip5"] > kv["1.2"]["kappa_flip5"] + 0.3  # prevalence paradox
    assert 0.93 < k["metrics"]["accuracy_flip5"] < 0.97


def test_chunk_inflation_experiment(tmp_path):
    ctx = BenchContext("mast", "smoke", tmp_path)
    chunk_inflation(ctx)
    rows = json.loads((tmp_path / "mast" / "chunk-inflation.json").read_text())["rows"]
    assert [round(r["chunks_per_trace"]) for r in rows] == [1, 2, 4]
    assert rows[2]["measured_prevalence"] > rows[0]["measured_prevalence"] + 0.05
