"""The engine end to end on tiny random checkpoints loaded the way users load theirs."""

import numpy as np
import pytest
from conftest import write_image

from mixsearch import (
    CalibrationError,
    Calibrator,
    Document,
    InputError,
    ModelError,
    build_index,
    fit_calibration,
    load_encoder,
    open_index,
)


def test_transformers_encoders_load_from_folders(tiny_clip, tiny_siglip, tiny_clip_other, tmp_path):
    img = write_image(tmp_path / "x.png", 0)
    for folder in (tiny_clip, tiny_siglip):
        enc = load_encoder(str(folder))
        t = enc.encode(["a dog", "a cat on a mat"], "text")
        i = enc.encode([img, str(img)], "image")
        assert t.shape == (2, enc.dim) and i.shape == (2, enc.dim)
        np.testing.assert_allclose(np.linalg.norm(np.vstack([t, i]), axis=1), 1, atol=1e-5)
        np.testing.assert_allclose(i[0], i[1], atol=1e-6)
    clip, other = load_encoder(str(tiny_clip)), load_encoder(str(tiny_clip_other))
    assert clip.fingerprint == load_encoder(str(tiny_clip)).fingerprint != other.fingerprint


def test_sentence_transformers_backend_is_text_only():
    enc = load_encoder("all-MiniLM-L6-v2")
    v = enc.encode(["a dog runs on the beach", "a puppy on the sand", "stock market report"])
    assert v.shape == (3, 384)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2  # a real model: paraphrases are closer
    with pytest.raises(ModelError, match="has no image tower"):
        enc.encode(["x.png"], "image")


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(ModelError, match="not a model folder"):
        load_encoder(str(tmp_path))


def test_build_search_and_bad_input(tiny_clip, mixed_corpus, tmp_path):
    enc = load_encoder(str(tiny_clip))
    idx, report = build_index(mixed_corpus, tmp_path / "idx", enc, progress=False)
    assert report.indexed == 13 and len(idx) == 13  # 12 good + the long text
    assert sorted(report.skipped_ids) == ["corrupt", "missing"]
    problems = "\n".join(map(str, report.problems))
    assert "corrupt.jpg: unreadable image" in problems and "nowhere.png: image file not found" in problems
    assert "document 'empty'" in problems and "not valid JSON" in problems
    assert report.truncated == 1
    assert "document means were fitted on this corpus" in report.summary()
    assert idx.manifest.documents.to_dict() == {
        "total": 13,
        "text": 5,
        "image": 4,
        "audio": 0,
        "video": 0,
        "multimodal": 4,
    }

    hits = idx.search("dog beach ball", k=5)
    assert [h.rank for h in hits] == [1, 2, 3, 4, 5]
    assert all(a.score >= b.score for a, b in zip(hits, hits[1:]))
    assert {h.modality for h in idx.search("dog", k=13, modality="image")} == {"image"}
    image_hits = idx.search(image=mixed_corpus.parent / "img" / "i2.png", k=1)
    assert image_hits[0].id == "i2"  # an image query finds itself first

    # the stored vectors are exactly the calibration maths applied to the stored raw embeddings
    raw, cal = idx.raw(), idx.calibrator
    row = idx.ids.index("m1")
    expected = 0.5 * (raw["text"][row] - cal.means_["text"]) + 0.5 * (raw["image"][row] - cal.means_["image"])
    np.testing.assert_allclose(idx.index.vectors[row], expected / np.linalg.norm(expected), atol=1e-5)
    np.testing.assert_array_equal(cal.means_["query"], cal.means_["text"])  # borrowed, and said so


def test_interrupted_build_resumes_and_old_index_survives(tiny_clip, mixed_corpus, tmp_path, monkeypatch):
    enc = load_encoder(str(tiny_clip), batch_size=2)
    out = tmp_path / "idx"
    build_index(mixed_corpus, out, enc, calibration="none", progress=False)
    before = open_index(out).index.vectors.copy()

    calls = {"n": 0}
    real = enc._encode_batch

    def dies_on_third_batch(batch, modality):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(batch, modality)

    monkeypatch.setenv("MIXSEARCH_CACHE_DIR", str(tmp_path / "fresh-cache"))
    monkeypatch.setattr(enc, "_encode_batch", dies_on_third_batch)
    with pytest.raises(KeyboardInterrupt):
        build_index(mixed_corpus, out, enc, calibration="none", progress=False)
    np.testing.assert_array_equal(open_index(out).index.vectors, before)  # untouched
    _, report = build_index(mixed_corpus, out, enc, calibration="none", progress=False)
    assert report.from_cache == 4  # the two batches done before the interruption
    # 10 texts and 8 readable images, less the 4 cached
    assert report.encoded == 18 - 4
    np.testing.assert_allclose(open_index(out).index.vectors, before, atol=1e-6)


def test_calibration_files_and_model_check(tiny_clip, tiny_clip_other, mixed_corpus, tmp_path):
    (tmp_path / "q.txt").write_text("a dog\na cat in the snow\nchild on a bike\n")
    (tmp_path / "t.jsonl").write_text('{"text": "a long caption of a dog on grass"}\n{"text": "red ball"}\n')
    enc, other = load_encoder(str(tiny_clip)), load_encoder(str(tiny_clip_other))
    cal = fit_calibration(
        enc,
        {"query": tmp_path / "q.txt", "text": tmp_path / "t.jsonl", "image": mixed_corpus.parent / "img"},
        report=lambda p: None,
    )
    assert cal.counts_ == {"query": 3, "text": 2, "image": 8}  # the corrupt image is skipped
    np.testing.assert_allclose(
        cal.means_["query"], enc.encode(["a dog", "a cat in the snow", "child on a bike"]).mean(0), atol=1e-6
    )
    with pytest.raises(CalibrationError, match="cannot be applied"):
        build_index(mixed_corpus, tmp_path / "other", other, calibration=cal, progress=False)
    assert not (tmp_path / "other").exists()

    idx, _ = build_index(mixed_corpus, tmp_path / "idx", enc, calibration="none", progress=False)
    with pytest.raises(CalibrationError, match="cannot query it"):
        open_index(tmp_path / "idx", encoder=other)
    # recalibrating from the stored raw embeddings equals building with that calibration
    recal = idx.recalibrate(cal, alpha=0.3)
    direct, _ = build_index(mixed_corpus, tmp_path / "direct", enc, calibration=cal, alpha=0.3, progress=False)
    np.testing.assert_allclose(recal.index.vectors, direct.index.vectors, atol=1e-6)
    assert recal.manifest.calibration.alpha == 0.3


def test_siglip_indexes_too(tiny_siglip, mixed_corpus, tmp_path):
    idx, report = build_index(mixed_corpus, tmp_path / "idx", str(tiny_siglip), progress=False)
    assert report.indexed == 13 and len(idx.search("snow", k=3)) == 3


def test_text_model_skips_image_documents(mixed_corpus, tmp_path):
    idx, report = build_index(mixed_corpus, tmp_path / "idx", "all-MiniLM-L6-v2", progress=False)
    assert set(idx.modality) == {"text"} and report.indexed == 5
    assert "cannot encode image" in "\n".join(map(str, report.problems))


def test_refuses_to_replace_a_folder_that_is_not_an_index(tiny_clip, mixed_corpus, tmp_path):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.txt").write_text("years of work")
    with pytest.raises(InputError, match="not a mixsearch index; refusing to write into it"):
        build_index(mixed_corpus, precious, str(tiny_clip), progress=False)
    assert (precious / "thesis.txt").read_text() == "years of work"
    with pytest.raises(InputError, match="would replace the corpus"):
        build_index(mixed_corpus.parent, mixed_corpus.parent, str(tiny_clip), progress=False)


def test_failed_recalibration_changes_nothing(tiny_clip, mixed_corpus, tmp_path):
    enc = load_encoder(str(tiny_clip))
    idx, _ = build_index(mixed_corpus, tmp_path / "idx", enc, calibration="none", progress=False)
    before = np.array(idx.index.vectors)
    files_before = sorted(p.name for p in (tmp_path / "idx").iterdir())
    arrays = {"query": enc.encode(["a dog"]), "text": enc.encode(["a cat", "snow"])}
    with pytest.raises(CalibrationError, match="does not say which model"):
        idx.recalibrate(Calibrator().fit(arrays))
    text_only = Calibrator(fitted_for=enc.info()).fit(arrays)
    with pytest.raises(CalibrationError, match="no 'image' mean"):
        idx.recalibrate(text_only)
    again = open_index(tmp_path / "idx")
    assert again.manifest.calibration.method == "none" and again.calibrator.method == "none"
    np.testing.assert_array_equal(again.index.vectors, before)
    assert sorted(p.name for p in (tmp_path / "idx").iterdir()) == files_before  # no half-written generation


def test_default_calibration_serves_every_query_kind(tiny_clip, tmp_path):
    """A folder of photos searched by text, a text corpus searched by a photo; a skipped image."""
    (tmp_path / "photos").mkdir()
    for i in range(3):
        write_image(tmp_path / "photos" / f"p{i}.png", i)
    idx, report = build_index(tmp_path / "photos", tmp_path / "a", str(tiny_clip), progress=False)
    assert "no query, text, video items here: those stay uncalibrated" in report.summary()
    assert len(idx.search("a dog", k=2)) == 2
    docs = [
        Document("t1", text="hello"),
        Document("t2", text="world"),
        Document("t2", text="dup"),
        Document("i1", image=tmp_path / "missing.png"),
    ]
    idx, report = build_index(docs, tmp_path / "b", str(tiny_clip), progress=False)
    assert idx.ids == ["t1", "t2"] and report.skipped_ids == ["i1"]
    assert "duplicate id" in "\n".join(map(str, report.problems))
    assert idx.search(image=tmp_path / "photos" / "p0.png", k=1)[0].id in {"t1", "t2"}


def test_awkward_text(tiny_clip, tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"id": "a", "text": "caf\\u00e9 \\ud83d"}\n{"id": "b", "text": "fine \\u00e9t\\u00e9"}\n')
    idx, report = build_index(path, tmp_path / "idx", str(tiny_clip), progress=False)
    assert idx.ids == ["b"] and "not valid Unicode" in str(report.problems[0])
    assert idx.search("~5 dogs", k=1)[0].id == "b"
    assert len(idx.search_vectors(np.zeros((0, idx.model.dim), np.float32))) == 0
    assert idx.search("x" * 5000 + ".jpg", k=1)[0].id == "b"  # text, whatever it looks like


def test_texts_are_encoded_shortest_first_with_the_same_embeddings(tiny_clip, monkeypatch):
    from mixsearch.embedding import embed

    enc = load_encoder(str(tiny_clip), batch_size=2)
    texts = ["a dog " * 9, "cat", "a red ball on the grass " * 2, "snow", "child water", "bike " * 7]
    batches = []
    real = enc._encode_batch
    monkeypatch.setattr(
        enc, "_encode_batch", lambda batch, modality: batches.append(list(batch)) or real(batch, modality)
    )
    result = embed(enc, texts, "text")
    assert [t for b in batches for t in b] == sorted(texts, key=len)  # each batch pads to similar lengths
    np.testing.assert_allclose(result.vectors, load_encoder(str(tiny_clip)).encode(texts), atol=1e-5)  # rows in order


def test_report_counts_in_words():
    from mixsearch import BuildReport, Problem

    one = BuildReport(indexed=3, skipped=1, problems=[Problem("c.jsonl:2", "not valid JSON; line skipped")])
    assert "1 document skipped; 1 problems:\n  - c.jsonl:2: not valid JSON" in one.summary()
    assert "2 documents skipped" in BuildReport(skipped=2).summary()
