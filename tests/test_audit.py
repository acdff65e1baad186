"""The modality-bias audit: its numbers against hand-computed ones on made-up vectors, the verdict on
indexes of a tiny CLIP with and without an injected gap, the page in a real browser, the command."""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pytest
from conftest import sentence, write_image
from typer.testing import CliRunner

from mixsearch import Document, Encoder, InputError, UsageError, build_index, load_encoder
from mixsearch.audit import audit_index, decide
from mixsearch.audit import stats as S
from mixsearch.cli import app
from mixsearch.encoders.base import l2_normalise

# -- the numbers, by hand ------------------------------------------------------------------------

# two text parts and two image parts in 3-D; text i and image i belong to document i
T = np.array([[2.0, 0, 0], [0, 3.0, 0]])  # not unit length: the functions normalise
IMG = np.array([[0, 0, 1.0], [0, 1.0, 0]])


def test_centroid_gap_by_hand():
    # centroids (0.5, 0.5, 0) and (0, 0.5, 0.5): distance |(0.5, 0, -0.5)| = sqrt(0.5); cosine 0.25 / 0.5
    gap = S.centroid_gap(T, IMG)
    assert gap["distance"] == pytest.approx(math.sqrt(0.5))
    assert gap["cosine"] == pytest.approx(0.5)
    assert S.centroid_gap(T, T)["distance"] == pytest.approx(0.0)


def test_mean_cosines_by_hand():
    assert S.mean_cosine_within(T) == pytest.approx(0.0)  # the one pair is orthogonal
    x = np.array([[1.0, 0], [0, 1.0], [1.0, 1.0]])  # pairs: 0, 1/sqrt2, 1/sqrt2 (self-pairs excluded)
    assert S.mean_cosine_within(x) == pytest.approx(2 / math.sqrt(2) / 3)
    assert S.mean_cosine_within(np.array([[1.0, 0]])) is None
    # across: t1.i1 = 0, t1.i2 = 0, t2.i1 = 0, t2.i2 = 1 -> 1/4
    assert S.mean_cosine_across(T, IMG) == pytest.approx(0.25)
    # the closed forms equal the brute-force means over explicit pairs
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(7, 5)), rng.normal(size=(4, 5))
    ua, ub = S.unit_rows(a), S.unit_rows(b)
    brute = np.mean([ua[i] @ ua[j] for i in range(7) for j in range(7) if i != j])
    assert S.mean_cosine_within(a) == pytest.approx(brute)
    assert S.mean_cosine_across(a, b) == pytest.approx(np.mean(ua @ ub.T))


def test_matched_vs_unmatched_by_hand():
    m = S.matched_cosines(T, IMG)
    assert m["matched"] == pytest.approx(0.5)  # (t1.i1 + t2.i2) / 2 = (0 + 1) / 2
    assert m["unmatched"] == pytest.approx(0.0)  # t1.i2 = 0, t2.i1 = 0
    assert m["difference"] == pytest.approx(0.5)
    rng = np.random.default_rng(4)
    a, b = S.unit_rows(rng.normal(size=(6, 4))), S.unit_rows(rng.normal(size=(6, 4)))
    brute = np.mean([a[i] @ b[j] for i in range(6) for j in range(6) if i != j])
    assert S.matched_cosines(a, b)["unmatched"] == pytest.approx(brute)
    with pytest.raises(ValueError, match="same shape"):
        S.matched_cosines(T, IMG[:1])


def test_shares_tv_and_ratio_by_hand():
    found = S.shares(["text", "text", "image", "text"], ["text", "image", "multimodal"])
    assert found == {"text": 0.75, "image": 0.25, "multimodal": 0.0}
    corpus = {"text": 0.25, "image": 0.25, "multimodal": 0.5}
    assert S.total_variation(found, corpus) == pytest.approx(0.5)  # (0.5 + 0 + 0.5) / 2
    assert S.total_variation(corpus, corpus) == 0.0
    assert S.share_ratio(found, corpus, "text") == pytest.approx(3.0)
    assert S.share_ratio(found, {"image": 1.0}, "text") is None


def test_pca_and_sampled_pairs():
    line = np.array([[0.0, 0, 0], [1, 1, 0], [2, 2, 0], [3, 3, 0]])  # all variance on one axis
    points, explained = S.pca_2d(line)
    assert explained == pytest.approx([1.0, 0.0])
    # centred: (-1.5, -1.5), (-0.5, -0.5), (0.5, 0.5), (1.5, 1.5) -> +-sqrt(2) times -1.5 ... 1.5 on PC1
    assert np.abs(points[:, 0]) == pytest.approx(np.sqrt(2) * np.array([1.5, 0.5, 0.5, 1.5]))
    assert points[:, 1] == pytest.approx(np.zeros(4), abs=1e-9)
    rng = np.random.default_rng(0)
    within = S.sample_pair_cosines(T, n=200, rng=rng)
    assert within.shape == (200,) and np.allclose(within, 0.0)  # never a row with itself (cosine 1)
    unmatched = S.sample_unmatched_cosines(T, IMG, n=200, rng=rng)
    assert np.allclose(unmatched, 0.0)  # never t_i with its own i_i (cosine 1 for document 2)


def test_verdict_thresholds():
    gap = {"raw": {"centroids": {"text-image": {"distance": 0.8, "cosine": 0.2}}}}
    small = {"raw": {"centroids": {"text-image": {"distance": 0.05, "cosine": 0.9}}}}

    def probes(plain, calibrated, ratio=2.0):
        return {
            "n": 10,
            "k": 5,
            "tv": {"plain": plain, "calibrated": calibrated},
            "own_modality_ratio": {"plain": ratio},
        }

    code, text = decide(gap, probes(0.6, 0.1), index_calibrated=False)
    assert code == "calibrate" and text.startswith("strong same-modality bias: calibrate")
    assert decide(gap, probes(0.6, 0.1, ratio=0.5), index_calibrated=False)[1].startswith("strong modality bias")
    assert decide(small, probes(0.12, 0.1), index_calibrated=False)[0] == "no_gap"
    verdict = decide(small, probes(0.12, 0.1), index_calibrated=False)[1]
    assert verdict.startswith("no measurable gap: calibration changes")
    assert "not the gap's doing" not in verdict  # calibrated TV 0.1: little skew left
    assert "does not help" in decide(small, probes(0.1, 0.2), index_calibrated=False)[1]
    medium = {"raw": {"centroids": {"text-image": {"distance": 0.3, "cosine": 0.5}}}}
    code, text = decide(medium, probes(0.26, 0.22), index_calibrated=False)  # Flickr8k-like: skew stays
    assert code == "no_gap" and text.startswith("small gap: calibration changes little")
    assert text.endswith("the skew that stays is not the gap's doing)")
    assert decide(small, probes(0.3, 0.22), index_calibrated=False)[0] == "consider"  # drop 0.08
    assert decide(gap, probes(0.3, 0.29), index_calibrated=False)[0] == "consider"  # a large gap alone
    code, text = decide(gap, probes(0.6, 0.1), index_calibrated=True)
    assert code == "calibrated" and "reduced from TV 0.60 to 0.10" in text
    assert decide(small, probes(0.1, 0.09), index_calibrated=True)[0] == "calibrated_little"
    assert decide(gap, {"n": 0}, index_calibrated=False)[0] == "calibrate"  # no probes: the gap decides
    assert decide(small, {"n": 0}, index_calibrated=False)[0] == "no_gap"


# -- end to end on a tiny CLIP, with and without an injected gap ---------------------------------


class ShiftedEncoder(Encoder):
    """A tiny CLIP whose outputs are moved by a fixed vector per modality before normalising: the
    tower means subtracted (no gap), or those plus a different offset for texts and images (a gap)."""

    def __init__(self, base: Encoder, shifts: dict[str, np.ndarray], tag: str):
        self.base, self.shifts = base, shifts
        self.name, self.dim, self.modalities, self.max_length = f"{base.name}-{tag}", base.dim, base.modalities, 77
        digest = hashlib.sha256(b"".join(np.asarray(v, np.float32).tobytes() for v in shifts.values()))
        self.fingerprint = f"{base.fingerprint}-{digest.hexdigest()[:8]}"

    def load(self, modality, item):
        return self.base.load(modality, item)

    def _encode_batch(self, batch, modality):
        vectors, truncated = self.base._encode_batch(batch, modality)
        return l2_normalise(vectors) + self.shifts[modality], truncated


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """30 documents: 10 text, 10 image, 10 image+text; ids include markup, to check the page escapes them."""
    folder = tmp_path_factory.mktemp("audit-corpus")
    rng = np.random.default_rng(0)
    docs = [Document(id=f"t{i}", text=sentence(rng)) for i in range(10)]
    docs += [Document(id=f"i{i}", image=write_image(folder / f"i{i}.png", i)) for i in range(10)]
    docs += [
        Document(id=f"m{i}<b>", text=sentence(rng), image=write_image(folder / f"m{i}.png", 100 + i)) for i in range(10)
    ]
    return docs


@pytest.fixture(scope="module")
def encoders(tiny_clip, corpus):
    base = load_encoder(str(tiny_clip))
    texts = [d.text for d in corpus if d.text]
    images = [d.image for d in corpus if d.image]
    centre = {"text": -base.encode(texts, "text").mean(axis=0), "image": -base.encode(images, "image").mean(axis=0)}
    rng = np.random.default_rng(1)
    u = S.unit_rows(rng.normal(size=(2, base.dim)))
    gapped = {"text": centre["text"] + 3 * u[0], "image": centre["image"] + 3 * u[1]}
    return ShiftedEncoder(base, centre, "no-gap"), ShiftedEncoder(base, gapped, "gap")


@pytest.fixture(scope="module")
def indexes(encoders, corpus, tmp_path_factory):
    root = tmp_path_factory.mktemp("audit-indexes")
    no_gap, gap = encoders
    return {
        "no-gap": build_index(corpus, root / "no-gap", no_gap, calibration="none", progress=False)[0],
        "gap": build_index(corpus, root / "gap", gap, calibration="none", progress=False)[0],
        "gap-calibrated": build_index(corpus, root / "gap-cal", gap, progress=False)[0],
    }


def test_injected_gap_gets_the_calibrate_verdict(indexes):
    report = audit_index(indexes["gap"], n_probes=20, k=5)
    assert report.verdict_code == "calibrate" and report.verdict.startswith("strong same-modality bias: calibrate")
    raw, cal = report.gap["raw"], report.gap["calibrated"]
    assert raw["centroids"]["text-image"]["distance"] > 1.0  # the offsets put the clusters far apart
    assert cal["centroids"]["text-image"]["distance"] < 0.25  # corpus means subtracted (then re-normalised)
    assert raw["within"]["text"] > 0.8 and raw["across"]["text-image"] < 0.2
    p = report.probes
    assert p["n"] == 20 and p["self_excluded"] and p["hits_per_probe"]["plain"] == 5
    assert p["shares"]["plain"]["text"] == 1.0  # text probes find only text documents
    assert p["own_modality_ratio"]["plain"] == pytest.approx(3.0)
    assert p["tv"]["plain"] == pytest.approx(2 / 3) and p["tv"]["calibrated"] < p["tv"]["plain"] - 0.1
    assert "calibrating would do" in " ".join(report.notes)
    for example in p["examples"]:  # a drawn probe never finds its own document
        assert example["own"] not in [h["id"] for h in example["plain"] + example["calibrated"]]


def test_gap_free_model_does_not_get_it(indexes):
    report = audit_index(indexes["no-gap"], n_probes=20, k=5)
    assert report.verdict_code == "no_gap", report.verdict
    assert report.verdict.startswith("no measurable gap: calibration")
    assert report.gap["raw"]["centroids"]["text-image"]["distance"] < 0.2
    # 100 hits: the shares move by sampling noise only, far less than the gap's 0.5
    assert abs(report.probes["tv"]["plain"] - report.probes["tv"]["calibrated"]) < 0.1


def test_calibrated_index_reports_the_reduction(indexes):
    report = audit_index(indexes["gap-calibrated"], n_probes=20, k=5)
    assert report.verdict_code == "calibrated" and report.verdict.startswith("calibrated already: bias reduced")
    assert report.calibration["index"]["method"] == "mean" and "index's own" in report.calibration["compared"]
    plain = audit_index(indexes["gap"], n_probes=20, k=5)  # the same embeddings, plain index
    assert report.probes["shares"] == plain.probes["shares"]  # the same two views, whichever is stored


def test_audit_numbers_are_the_stats_of_the_stored_embeddings(indexes):
    idx = indexes["gap"]
    report = audit_index(idx, n_probes=5, k=3, sample=1000)
    raw = idx.raw()
    text_rows = [i for i, t in enumerate(idx.documents["text"]) if t is not None]
    image_rows = [i for i, p in enumerate(idx.documents["image"]) if p is not None]
    assert report.gap["raw"]["centroids"]["text-image"] == pytest.approx(
        S.centroid_gap(raw["text"][text_rows], raw["image"][image_rows])
    )
    pairs = [i for i in text_rows if i in image_rows]
    assert report.gap["raw"]["matched"]["text-image"] == pytest.approx(
        S.matched_cosines(raw["text"][pairs], raw["image"][pairs])
    )
    assert report.gap["paired"]["text-image"] == {"documents": 10, "sampled": 10}
    small = audit_index(idx, n_probes=5, k=3, sample=4)  # a sample of 4 parts per modality
    assert small.gap["parts"]["text"] == {"documents": 20, "sampled": 4}
    assert json.loads(json.dumps(report.to_dict()))["verdict"] == report.verdict


def test_drawn_probes_use_the_stored_text_embeddings(tiny_clip, corpus, tmp_path):
    from mixsearch import open_index

    build_index(corpus, tmp_path / "idx", str(tiny_clip), calibration="none", progress=False)
    idx = open_index(tmp_path / "idx")
    report = audit_index(idx, n_probes=4, k=3)
    assert idx._encoder is None  # drawn probes need no model: their embeddings are in the index
    rows = [idx.ids.index(ex["own"]) for ex in report.probes["examples"]]
    encoded = idx.encoder.encode([ex["probe"] for ex in report.probes["examples"]], "text")
    np.testing.assert_allclose(encoded, idx.raw()["text"][rows], atol=1e-5)  # what encoding them would give
    again = audit_index(idx, probes=[ex["probe"] for ex in report.probes["examples"]], k=4)
    for drawn, given in zip(report.probes["examples"], again.probes["examples"]):
        # the same vectors rank the same documents, less the probe's own one
        assert [h["id"] for h in drawn["plain"]] == [h["id"] for h in given["plain"] if h["id"] != drawn["own"]][:3]


def test_one_modality_corpus_without_texts(tiny_clip, corpus, tmp_path):
    images = [d for d in corpus if d.text is None]
    idx, _ = build_index(images, tmp_path / "idx", str(tiny_clip), calibration="none", progress=False)
    report = audit_index(idx)
    assert report.probes["n"] == 0 and "give probe texts" in " ".join(report.notes)
    assert report.gap["raw"]["centroids"] == {} and report.gap["raw"]["within"]["image"] is not None
    assert report.verdict_code == "no_gap" and report.verdict.startswith("nothing to compare")
    html = report.write_html(tmp_path / "a.html").read_text()
    assert html.count("data:image/png;base64,") == 2  # no probes: no share bars


def test_given_probes_from_lists_and_files(indexes, tmp_path):
    idx = indexes["gap"]
    report = audit_index(idx, probes=["dog beach", "red ball snow"], k=4)
    assert report.probes["n"] == 2 and not report.probes["self_excluded"]
    assert report.probes["examples"][0]["own"] is None and len(report.probes["examples"][0]["plain"]) == 4
    (tmp_path / "p.txt").write_text("dog beach\n\nred ball\nsnow\n")
    assert audit_index(idx, probes=tmp_path / "p.txt", k=2).probes["n"] == 3
    (tmp_path / "p.jsonl").write_text('{"text": "dog"}\n"cat"\n')
    assert audit_index(idx, probes=tmp_path / "p.jsonl", k=2, n_probes=1).probes["n"] == 1  # sampled down
    (tmp_path / "bad.jsonl").write_text('{"text": "dog"}\n{"query": "cat"}\n')
    with pytest.raises(InputError, match=r"bad\.jsonl:2: expected a non-empty 'text'"):
        audit_index(idx, probes=tmp_path / "bad.jsonl")
    with pytest.raises(UsageError, match="no such probes file"):
        audit_index(idx, probes=tmp_path / "nowhere.txt")
    with pytest.raises(UsageError, match="k must be a positive"):
        audit_index(idx, k=0)
    with pytest.raises(UsageError, match="probe 1"):
        audit_index(idx, probes=["dog", "  "])


# -- the page in a real browser -------------------------------------------------------------------


def test_page_renders_in_a_browser(indexes, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="the browser test needs Playwright")
    from test_browser import chromium

    xss = "<script>window.pwned = 1</script> a dog"
    report = audit_index(indexes["gap"], probes=[xss, "red ball"], k=5)
    page_path = report.write_html(tmp_path / "audit.html")
    html = page_path.read_text()
    assert "<script>" not in html and "&lt;b&gt;:M" in html and "<b>:M" not in html and "&lt;script&gt;" in html
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page()
            page.goto(page_path.as_uri())
            assert page.inner_text("#verdict") == f"Verdict: {report.verdict}"
            images = page.locator("figure img")
            assert images.count() == 3  # projection, histograms, top-k shares
            for i in range(3):
                img = images.nth(i)
                assert img.evaluate("e => e.complete && e.naturalWidth > 0 && e.naturalHeight > 0")
                box = img.bounding_box()
                assert box is not None and box["width"] > 100 and box["height"] > 100
            assert page.evaluate("window.pwned") is None  # the probe text was shown, not run
            assert xss in page.inner_text("table.examples")
            assert "<b>:M" in page.inner_text("table.examples")
        finally:
            browser.close()


# -- the command ------------------------------------------------------------------------------


def test_cli_audit(tiny_clip, corpus, tmp_path, monkeypatch):
    build_index(corpus, tmp_path / "idx", str(tiny_clip), calibration="none", progress=False)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    result = runner.invoke(app, ["audit", "idx", "--n-probes", "6", "-k", "3", "--json", "out/a.json"])
    output = result.output + (result.stderr if result.stderr_bytes is not None else "")
    assert result.exit_code == 0, output
    numbers = json.loads((tmp_path / "out" / "a.json").read_text())
    assert f"verdict: {numbers['verdict']}" in output
    assert "centroid distance text-image" in output and "page: audit.html" in output
    assert (tmp_path / "audit.html").read_text().count("data:image/png;base64,") == 3
    assert numbers["probes"]["n"] == 6 and numbers["probes"]["k"] == 3
    result = runner.invoke(app, ["audit", "idx", "-k", "2", "--calibration", "corpus", "--html", "b.html"])
    assert result.exit_code == 0 and (tmp_path / "b.html").is_file()
    result = runner.invoke(app, ["audit", "idx", "-k", "0"])
    assert result.exit_code == 2 and "k must be a positive" in result.output + (result.stderr or "")
    result = runner.invoke(app, ["audit", "nowhere"])
    assert result.exit_code == 1 and "not a mixsearch index" in result.output + (result.stderr or "")
    result = runner.invoke(app, ["audit", "idx", "--html", "page.png"])
    assert result.exit_code == 2


def test_page_escapes_document_texts(monkeypatch):
    """The page comes from an autoescaped template: a document's text, id or the index path with
    markup is shown as text; the page's own markup stays."""
    from types import SimpleNamespace

    from mixsearch.audit import page

    pytest.importorskip("matplotlib", reason="the audit page needs matplotlib")
    for plot in ("_projection", "_histograms", "_shares"):
        monkeypatch.setattr(page, plot, lambda report: "UE5H")  # the plots are not what is checked here
    xss = "<script>window.pwned = 1</script> a dog"
    side = {
        "centroids": {"text-image": {"distance": 0.8, "cosine": 0.1}},
        "across": {"text-image": 0.2},
        "within": {"text": 0.5},
        "matched": {},
    }
    report = SimpleNamespace(
        index="<script>idx</script>",
        verdict="biased",
        notes=[],
        model={"name": "tiny", "fingerprint": "f"},
        corpus={"counts": {"text": 1, "image": 1}, "modalities": ["text", "image"]},
        calibration={"index": {"method": "mean", "alpha": 0.5}, "compared": "corpus"},
        settings={"k": 5},
        probes={
            "n": 1,
            "k": 5,
            "source": "document texts",
            "shares": {n: {"text": 0.5, "image": 0.5} for n in ("corpus", "plain", "calibrated")},
            "tv": {"corpus": 0.0, "plain": 0.0, "calibrated": 0.0},
            "own_modality_ratio": {"plain": 1.0, "calibrated": 1.0},
            "examples": [
                {"probe": xss, "own": "<b>", "plain": [{"id": "<b>", "modality": "multimodal"}], "calibrated": []}
            ],
        },
        gap={"raw": side, "calibrated": side},
    )
    html = page.render(report)
    assert "<script>" not in html and html.count("&lt;script&gt;") == 3 and "&lt;b&gt;:M" in html
    assert '<p class="verdict" id="verdict"><strong>Verdict:</strong> biased</p>' in html
    assert html.count("data:image/png;base64,UE5H") == 3 and '<table class="examples">' in html
