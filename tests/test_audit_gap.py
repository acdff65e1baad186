"""The audit's verdict on the two bundled models: mixclip-gap has CLIP's modality gap (calibrate),
mixclip-flickr8k has none (no gap), on the mixed corpus of the 1,000 Flickr8k dev photos that
docs/audit.md audits (1:1:1 text / image / image+text, 200 probes drawn from the corpus's texts).

On smaller corpora the gap-free model's verdict is borderline: 300 photos and 100 probes move its
top-10 mix by TV 0.063 (0.21 -> 0.15), just past the 0.05 that reads "calibrating helps a little"."""

import pytest
from conftest import requires_shared

from mixsearch import build_index
from mixsearch.audit import audit_index
from mixsearch.bench import load_captions, mixed_corpus


@pytest.fixture(scope="module")
def corpus():
    data = requires_shared("flickr8k")
    bench = load_captions(data / "dev.jsonl", seed=0)
    docs, _ = mixed_corpus(bench, 0)
    return docs


@pytest.mark.slow
@pytest.mark.parametrize(("model", "code"), [("mixclip-gap", "calibrate"), ("mixclip-flickr8k", "no_gap")])
def test_audit_calls_the_gap_model_calibrate_and_the_gap_free_one_no_gap(corpus, tmp_path, model, code):
    index, _ = build_index(corpus, tmp_path / "index", model, calibration="none", progress=False)
    report = audit_index(index)
    assert report.verdict_code == code, report.summary()
    distance = report.gap["raw"]["centroids"]["text-image"]["distance"]
    if code == "calibrate":
        assert distance >= 0.5 and report.verdict.startswith("strong")
        within = min(report.gap["raw"]["within"]["text"], report.gap["raw"]["within"]["image"])
        assert within > report.gap["raw"]["across"]["text-image"] + 0.2  # the two cones
    else:
        assert distance < 0.5
