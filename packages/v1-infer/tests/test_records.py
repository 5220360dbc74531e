"""Every committed result of this package is a valid record: strict JSON, commit / machine / time."""

from pathlib import Path

import pytest

from paperworks_shared.bench import Record

RESULTS = Path(__file__).resolve().parents[3] / "benchmarks" / "results" / "v1-infer"
FILES = sorted(RESULTS.glob("*.json"))


@pytest.mark.skipif(not FILES, reason="no committed results in this checkout")
@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_committed_result_is_a_valid_record(path):
    rec = Record.load(path)  # raises RecordError on NaN, non-JSON or missing provenance
    assert rec.package == "v1-infer" and rec.experiment == path.stem
    assert rec.commit and rec.machine and rec.time
