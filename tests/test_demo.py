"""The README's main command: the offline demo with the bundled model and calibration."""

import math
import re

import numpy as np
import pytest
from typer.testing import CliRunner

from mixsearch import load_encoder, open_index
from mixsearch.bench import load_captions
from mixsearch.calibration import shipped_calibration
from mixsearch.cli import app
from mixsearch.demo import SAMPLE


def ndcg10_by_hand(index, queries, relevant, model="mixclip-gap"):
    """NDCG@10 with one relevant document per query, from a brute-force ranking of the stored vectors."""
    encoder = load_encoder(model)
    q = index._calibrate({"text": encoder.encode([x.text for x in queries])})
    scores = q @ np.asarray(index.index.vectors).T
    gains = []
    for i, query in enumerate(queries):
        row = index.ids.index(relevant[query.id])
        rank = int((scores[i] > scores[i, row]).sum()) + 1
        gains.append(1 / math.log2(rank + 1) if rank <= 10 else 0.0)
    return float(np.mean(gains))


@pytest.mark.slow
def test_demo_runs_offline_and_its_numbers_are_right(tmp_path):
    for model in ("mixclip-gap", "mixclip-flickr8k"):
        assert shipped_calibration(model) is not None, f"the bundled {model} ships its calibration"
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "demo")])
    assert result.exit_code == 0, result.output
    out = result.output
    assert out.count("Query:") == 3 and "plain CLIP" in out and "GR-calibrated" in out
    assert "the corpus itself: 50 text, 50 image, 50 multimodal" in out
    bench = load_captions(SAMPLE, seed=0)
    relevant = {q: next(iter(docs)) for q, docs in bench.qrels.items()}
    # the gap model's summary rows first, then the gap-free model's, each from its own indexes
    main, compared = out.split("The same corpus and queries with mixclip-flickr8k")
    for text, model, folder in ((main, "mixclip-gap", ""), (compared, "mixclip-flickr8k", "mixclip-flickr8k")):
        for name in ("plain", "calibrated"):
            printed = float(re.search(rf"^\s+{name}\s+([01]\.\d+)\s", text, re.M).group(1))  # the summary row
            idx = open_index(tmp_path / "demo" / folder / name)
            assert len(idx) == 150 and idx.manifest.model.name == model
            assert printed == round(ndcg10_by_hand(idx, bench.queries, relevant, model), 3)
    cal = open_index(tmp_path / "demo" / "calibrated").manifest.calibration
    assert cal.method == "mean" and cal.counts["query"] >= 5000  # the train-split means, not the corpus
    hits = open_index(tmp_path / "demo" / "calibrated").search("a dog running in the snow", k=5)
    assert len(hits) == 5


def test_demo_page_and_audit_tag_modalities_alike():
    """One short tag per modality (T, I, M, A, V), the same in the demo, on the page and in the audit."""
    from mixsearch.audit.page import SHORT
    from mixsearch.demo import MARK, _cell
    from mixsearch.types import MODALITY_TAGS, Hit

    assert MARK == SHORT == MODALITY_TAGS and MODALITY_TAGS["multimodal"] == "M"
    assert _cell(Hit(1, "d1", 0.5, "multimodal", text="a dog"), {"d1"}, 30).startswith("1.*M  +0.50 a dog")
    page = pytest.importorskip("mixsearch.server.page", reason="the page needs the 'serve' extra")
    assert {m: tag for m, (tag, _) in page.BADGES.items()} == MODALITY_TAGS
