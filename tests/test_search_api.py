"""One obvious ``search`` (issue 17): a text, a ``Query`` or the keyword shorthand in -> one hit
list out; a list in -> ``SearchResults`` in the order asked; ``search_vectors`` below it; a bare
string is never read as characters (``search_batch``, ``Encoder.encode``)."""

import numpy as np
import pytest
from conftest import good_records

import mixsearch as ms


@pytest.fixture(scope="module")
def built(tiny_clip, tmp_path_factory):
    folder = tmp_path_factory.mktemp("search-api")
    docs = [
        ms.Document(r["id"], text=r.get("text"), image=folder / r["image"] if "image" in r else None)
        for r in good_records(folder, np.random.default_rng(0))
    ]
    index, _ = ms.build_index(docs, folder / "idx", str(tiny_clip), progress=False)
    return index, folder / "img"


def same(a: list[ms.Hit], b: list[ms.Hit]) -> None:
    assert [(h.id, h.rank) for h in a] == [(h.id, h.rank) for h in b]
    np.testing.assert_allclose([h.score for h in a], [h.score for h in b], atol=1e-5)


def test_one_query_in_one_hit_list_out(built):
    index, img = built
    hits = index.search("dog beach ball", k=4)
    assert isinstance(hits, list) and len(hits) == 4 and all(isinstance(h, ms.Hit) for h in hits)
    same(index.search(ms.Query("dog beach ball"), k=4), hits)
    by_image = index.search(image=img / "i2.png", k=3)
    assert isinstance(by_image, list) and by_image[0].id == "i2"
    same(index.search(ms.Query(image=img / "i2.png"), k=3), by_image)
    same(index.search("a dog", image=img / "m1.png", k=5), index.search(ms.Query("a dog", image=img / "m1.png"), k=5))


def test_a_mixed_list_comes_back_in_order_as_if_asked_one_by_one(built):
    index, img = built
    queries = [
        "dog beach ball",
        ms.Query(image=img / "i0.png"),
        ms.Query("snow child", image=img / "m2.png"),
        "red bike street",
        ms.Query(image=img / "i3.png"),
    ]
    results = index.search(queries, k=5, modality=["image", "multimodal"])
    assert isinstance(results, ms.SearchResults) and len(results) == len(queries)
    for query, hits in zip(queries, results):
        same(hits, index.search(query, k=5, modality=["image", "multimodal"]))
    assert results[1][0].id == "i0" and results[4][0].id == "i3"
    assert len(index.search([], k=3)) == 0
    assert index.search(("a dog",), k=2).ids() == [[h.id for h in index.search("a dog", k=2)]]


def test_search_vectors_takes_raw_parts_or_calibrated_rows(built):
    index, img = built
    raw = index.encoder.encode(["dog beach ball", "snow child"])
    found = index.search_vectors({"text": raw}, k=6)
    assert isinstance(found, ms.SearchResults) and len(found) == 2
    same(found[0], index.search("dog beach ball", k=6))
    one = index.search_vectors({"text": index.encoder.encode("snow child")}, k=6)  # one vector: still a list of one
    assert isinstance(one, ms.SearchResults) and len(one) == 1
    same(one[0], found[1])
    pair = {"text": index.encoder.encode(["a dog"]), "image": index.encoder.encode([img / "m1.png"], "image")}
    same(index.search_vectors(pair, k=5)[0], index.search(ms.Query("a dog", image=img / "m1.png"), k=5))
    calibrated = index.calibrator.transform(raw, role="query")
    assert index.search_vectors(calibrated, k=6).ids() == found.ids()
    with pytest.raises(ms.UsageError, match="by part"):
        index.search_vectors({"txt": raw})
    with pytest.raises(ms.UsageError, match="come in pairs"):
        index.search_vectors({"text": raw, "image": raw[:1]})


def test_encode_of_one_string_is_one_vector(built):
    index, img = built
    encoder = index.encoder
    one = encoder.encode("a dog")
    assert one.shape == (encoder.dim,)
    np.testing.assert_allclose(one, encoder.encode(["a dog"])[0], atol=1e-6)
    assert encoder.encode(["a dog", "a cat"]).shape == (2, encoder.dim)
    vector, truncated = encoder.encode_with_flags("a dog")
    assert vector.shape == (encoder.dim,) and not truncated
    for item in (img / "i1.png", str(img / "i1.png")):  # one path, as a Path or a str
        np.testing.assert_allclose(encoder.encode(item, "image"), encoder.encode([img / "i1.png"], "image")[0])


def test_search_batch_is_a_deprecated_alias_that_refuses_a_bare_string(built):
    index, img = built
    with pytest.warns(DeprecationWarning, match="search_batch is deprecated"):
        old = index.search_batch(["dog beach ball", "snow child"], k=4)
    assert old.ids() == index.search(["dog beach ball", "snow child"], k=4).ids()
    with pytest.warns(DeprecationWarning):
        pairs = index.search_batch(["a dog"], [img / "m1.png"], k=3)
    assert pairs.ids() == index.search([ms.Query("a dog", image=img / "m1.png")], k=3).ids()
    with pytest.warns(DeprecationWarning):
        raw = index.search_batch(embeddings={"text": index.encoder.encode(["snow child"])}, k=4)
    assert raw.ids() == [[h.id for h in index.search("snow child", k=4)]]
    with pytest.warns(DeprecationWarning), pytest.raises(ms.UsageError, match="use search"):
        index.search_batch("dog")  # not three queries "d", "o", "g"
    with pytest.warns(DeprecationWarning), pytest.raises(ms.UsageError, match="use search"):
        index.search_batch(images=img / "i1.png")


def test_query_mistakes_fail_before_the_model_loads(built, tmp_path):
    index, img = built
    fresh = ms.open_index(index.folder)
    bad = [
        dict(),
        dict(query="   "),
        dict(query=img / "i1.png"),  # a path as the text
        dict(image=img / "i1.png", video=img / "i1.png"),
        dict(query="x", k=0),
        dict(query="x", modality="pictures"),
        dict(query="x", where="nosuchfield = 1"),
        dict(query="x", min_relevance=0.5),  # no relevance map in this calibration
        dict(query=["a", "b"], image=img / "i1.png"),  # keyword media are for one query
        dict(query=ms.Query("a"), image=img / "i1.png"),
        dict(query=["a", ms.Query("b"), 3]),
    ]
    for kwargs in bad:
        with pytest.raises(ms.UsageError):
            fresh.search(**kwargs)
    assert fresh._encoder is None  # nothing above needed the model
    with pytest.raises(ms.UsageError, match="one kind of media per query"):
        ms.Query(image="a.png", audio="a.wav")
    with pytest.raises(ms.UsageError, match="text must be a string"):
        ms.Query(text=["a", "dog"])  # type: ignore[arg-type]
    assert ms.Query("a dog", image="q.jpg").parts == ("text", "image")


def test_hit_lists_are_made_when_read_and_match_the_ids(built):
    index, _ = built
    raw = index.encoder.encode(["dog beach ball", "snow child", "red bike street"])
    found = index.search_vectors({"text": raw}, k=4)
    ids = found.ids()  # read without making any Hit
    assert all(hits is None for hits in found._lists)
    assert found[-1] is found[2] and [h.id for h in found[2]] == ids[2]  # made once, then kept
    assert [[h.id for h in hits] for hits in found[0:2]] == ids[:2]
    assert [[h.id for h in hits] for hits in found] == ids == found.ids()
    assert [h.rank for h in found[1]] == [1, 2, 3, 4] and repr(found) == "SearchResults(3 queries, 12 hits)"
    assert found.to_dicts()[0][0]["id"] == ids[0][0]


def test_deferred_hits_show_the_documents_as_searched(tiny_clip, tmp_path):
    docs = [
        ms.Document(r["id"], text=r.get("text"), image=tmp_path / r["image"] if "image" in r else None)
        for r in good_records(tmp_path, np.random.default_rng(0))
    ]
    index, _ = ms.build_index(docs, tmp_path / "idx", str(tiny_clip), progress=False)
    found = index.search(["dog beach ball", "snow child"], k=3)
    ids = found.ids()
    gone = ids[0][0]
    index.delete([gone])  # the index changes before any hit is read
    assert [h.id for h in found[0]] == ids[0] and found[0][0].id == gone
    assert gone not in [h.id for h in index.search("dog beach ball", k=3)]
