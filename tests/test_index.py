import numpy as np
import pytest
from conftest import random_unit

import mixsearch as ms
from mixsearch import ExactIndex, UsageError, VectorIndexError
from mixsearch.index import exact as index_module


def brute_force(q, d, k):
    scores = q @ d.T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, axis=1), order


def test_exact_matches_brute_force_in_any_chunking(monkeypatch):
    rng = np.random.default_rng(1)
    docs, queries = random_unit(rng, 5000, 32), random_unit(rng, 7, 32)
    expected_scores, expected_rows = brute_force(queries, docs, 10)
    for budget in (index_module.SCORE_BUDGET, 4 * 7 * 1024):  # one chunk, then five
        monkeypatch.setattr(index_module, "SCORE_BUDGET", budget)
        scores, rows = ExactIndex(docs, [str(i) for i in range(len(docs))]).search_rows(queries, 10)
        np.testing.assert_array_equal(rows, expected_rows)
        np.testing.assert_allclose(scores, expected_scores, rtol=1e-5)


def test_mask_k_larger_than_allowed_and_ties():
    vectors = np.array([[1, 0], [1, 0], [0, 1], [1, 0]], dtype=np.float32)
    idx = ExactIndex(vectors, ["a", "b", "c", "d"])
    scores, rows = idx.search_rows(np.array([[1, 0]], np.float32), k=3)
    assert rows.tolist() == [[0, 1, 3]]  # ties break by row order
    allowed = np.array([False, True, True, False])
    scores, rows = idx.search_rows(np.array([[1, 0]], np.float32), k=3, allowed=allowed)
    assert rows.tolist() == [[1, 2, -1]] and scores[0, 2] == -np.inf
    scores, rows = idx.search_rows(np.array([[1, 0]], np.float32), k=99)
    assert rows.shape == (1, 4)


def test_dimension_mismatch_is_named(tmp_path):
    idx = ExactIndex(np.eye(3, dtype=np.float32), ["a", "b", "c"], {"modality": np.array(["text", "image", "text"])})
    idx.save(tmp_path)
    loaded = ExactIndex.load(tmp_path)
    assert isinstance(loaded.vectors, np.memmap) and loaded.ids == ["a", "b", "c"]
    assert loaded.fields["modality"].tolist() == ["text", "image", "text"]
    with pytest.raises(VectorIndexError, match=f"query dimension 5 does not match the index at {tmp_path}'s 3"):
        loaded.search(np.ones((1, 5), np.float32))


def test_protocol_add_delete_and_filters(tmp_path):
    from mixsearch.index import INDEX_KINDS, Filter, VectorIndex, build_index_of_kind, load_index

    rng = np.random.default_rng(3)
    vectors = random_unit(rng, 6, 8)
    modality = np.array(["text", "image", "multimodal", "text", "image", "text"])
    idx = build_index_of_kind("exact", vectors, list("abcdef"), {"modality": modality})
    assert isinstance(idx, VectorIndex) and INDEX_KINDS["exact"] is ExactIndex
    found = idx.search(vectors[:2], k=3, filter=Filter.of(["image", "multimodal"]))
    assert found.ids[0][0] in {"b", "c", "e"} and all(i in {"b", "c", "e"} for ids in found.ids for i in ids)
    assert found.ids[1][0] == "b" and found.scores.shape == (2, 3)
    # replace 'b' with a copy of 'a', add 'g'; delete 'c' and an id that is not there
    idx.add(np.vstack([vectors[0], vectors[5]]), ["b", "g"], {"modality": np.array(["image", "text"])})
    assert idx.delete(["c", "zz"]) == 1 and len(idx) == 6 and sorted(idx.ids) == list("abdefg")
    assert idx.search(vectors[:1], k=2, filter=Filter.of("image")).ids == [["b", "e"]]
    idx.save(tmp_path / "saved")
    again = load_index(tmp_path / "saved", "exact")
    assert again.ids == idx.ids and again.search(vectors[:1], k=6).ids == idx.search(vectors[:1], k=6).ids
    with pytest.raises(VectorIndexError, match="unknown index kind .annoy."):
        load_index(tmp_path / "saved", "annoy")
    with pytest.raises(ms.UsageError, match="unknown modality pictures"):
        Filter.of("pictures")
    with pytest.raises(VectorIndexError, match="need the fields"):
        idx.add(vectors[:1], ["h"])


def test_a_snapshot_changes_and_saves_apart_from_its_original(tmp_path):
    rng = np.random.default_rng(4)
    vectors = random_unit(rng, 5, 8)
    original = ExactIndex.build(vectors, list("abcde"), {"modality": np.array(["text"] * 5)})
    original.save(tmp_path / "one")
    original = ExactIndex.load(tmp_path / "one")
    assert original.delete(["e"]) == 1  # a deleted row before the snapshot too
    before = original.search(vectors, k=4)
    copy = original.snapshot()
    copy.add(vectors[:2], ["a", "f"], {"modality": np.array(["image", "text"])})
    assert copy.delete(["b"]) == 1 and sorted(copy.ids) == list("acdf")
    copy.save(tmp_path / "two")
    assert original.ids == list("abcd") and len(original) == 4
    after = original.search(vectors, k=4)
    assert after.ids == before.ids and np.array_equal(after.scores, before.scores)
    assert original.delete(["a"]) == 1 and copy.delete(["e"]) == 0  # their masks are their own
    again = ExactIndex.load(tmp_path / "two")
    assert again.ids == copy.ids and again.search(vectors, k=4).ids == copy.search(vectors, k=4).ids
    original.save(tmp_path / "three")  # its parts still name their own files
    assert ExactIndex.load(tmp_path / "three").ids == list("bcd")


def test_engine_opens_the_kind_the_manifest_names(tiny_clip, mixed_corpus, tmp_path, monkeypatch):
    """A registered kind is all the engine needs: it never names ExactIndex itself."""
    from mixsearch.index import INDEX_KINDS

    class Recording(ExactIndex):
        kind = "recording"
        searched = 0

        def search(self, queries, k=10, filter=None):
            Recording.searched += 1
            return super().search(queries, k, filter)

    monkeypatch.setitem(INDEX_KINDS, "recording", Recording)  # registered for this test only
    built, _ = ms.build_index(mixed_corpus, tmp_path / "idx", str(tiny_clip), kind="recording", progress=False)
    assert built.manifest.index.kind == "recording"
    reopened = ms.open_index(tmp_path / "idx")
    assert type(reopened.index) is Recording and len(reopened.search("dog", k=3)) == 3 and Recording.searched == 1
    assert type(reopened.with_calibration("none").index) is Recording
    with pytest.raises(VectorIndexError, match="unknown index kind"):
        ms.build_index(mixed_corpus, tmp_path / "other", str(tiny_clip), kind="nope", progress=False)
    assert not (tmp_path / "other").exists()


def test_modality_has_one_name_and_takes_its_aliases():
    """``multimodal`` is the name; image+text, IT, I+T, image_text are read as it, wherever a filter is made."""
    from mixsearch.index import Filter
    from mixsearch.types import modality_name

    for alias in ("multimodal", "image+text", "IT", "I+T", "image_text", " Image+Text "):
        assert modality_name(alias) == "multimodal"
        assert Filter.of(alias).modality == {"multimodal"}
    assert Filter.of(["text", "IT"]).modality == {"text", "multimodal"}
    with pytest.raises(UsageError, match="unknown modality pictures"):
        Filter.of("pictures")
