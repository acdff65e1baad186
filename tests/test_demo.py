"""The README's main command: the offline demo with the bundled model and calibration."""

import re

from typer.testing import CliRunner

from mixsearch import open_index
from mixsearch.calibration_file import shipped_calibration
from mixsearch.cli import app


def test_demo_runs_offline_and_leaves_searchable_indexes(tmp_path):
    assert shipped_calibration("mixclip-flickr8k") is not None, "the bundled model ships its calibration"
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "demo")])
    assert result.exit_code == 0, result.output
    out = result.output
    assert out.count("Query:") == 3 and "plain CLIP" in out and "GR-calibrated" in out
    assert "the corpus itself: 50 text, 50 image, 50 image+text" in out
    for name in ("plain", "calibrated"):
        ndcg = float(re.search(rf"^\s+{name}\s+([01]\.\d+)\s", out, re.M).group(1))  # the summary row
        assert 0.0 < ndcg <= 1.0
        idx = open_index(tmp_path / "demo" / name)
        assert len(idx) == 150 and idx.manifest["model"]["name"] == "mixclip-flickr8k"
    cal = open_index(tmp_path / "demo" / "calibrated").manifest["calibration"]
    assert cal["method"] == "mean" and cal["counts"]["query"] >= 5000  # the train-split means, not the corpus
    hits = open_index(tmp_path / "demo" / "calibrated").search("a dog running in the snow", k=5)
    assert len(hits) == 5
