"""The public Python API as users meet it: indexes made by mixsearch 0.1 (format 1), calibration
views, the batch query API, library manners. (The examples of the README and docs: test_docs.py.)"""

import json
import logging
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

import mixsearch as ms
from mixsearch.engine import store
from mixsearch.progress import show_progress

LEGACY = Path(__file__).parent / "data" / "legacy-v1"


def test_index_made_by_mixsearch_0_1_opens_searches_and_upgrades(tmp_path, monkeypatch):
    """tests/data/legacy-v1 was built by mixsearch 0.1 (format 1), with its answers recorded."""
    folder = tmp_path / "legacy"
    shutil.copytree(LEGACY, folder)
    monkeypatch.chdir(folder)  # format 1 stored image paths relative to the build's working directory
    expected = json.loads((folder / "expected.json").read_text())["results"]

    def answers(index):
        out = {}
        for query in expected:
            hits = (
                index.search(image=query[len("image:") :], k=6)
                if query.startswith("image:")
                else index.search(query, k=6)
            )
            out[query] = [[h.id, h.score] for h in hits]
        return out

    def assert_same(got):
        for query, hits in expected.items():
            assert [h[0] for h in got[query]] == [h[0] for h in hits], query
            np.testing.assert_allclose([h[1] for h in got[query]], [h[1] for h in hits], atol=1e-5)

    index = ms.open_index("index")
    assert index.manifest.format == "mixsearch-index/1"
    assert_same(answers(index))
    assert {h.modality for h in index.search("a dog", k=6, modality="image")} == {"image"}
    shipped = ms.calibration.shipped_calibration("mixclip-flickr8k")
    index.recalibrate("none")  # upgrades the folder to format 2
    assert ms.open_index("index").manifest.format == store.FORMAT
    assert not {"vectors.npy", "ids.json", "calibration.safetensors"} & {p.name for p in Path("index").iterdir()}
    index.recalibrate(shipped)  # back to the calibration it was built with
    assert_same(answers(ms.open_index("index")))


@pytest.fixture
def built(tiny_clip, mixed_corpus, tmp_path):
    index, _ = ms.build_index(mixed_corpus, tmp_path / "idx", str(tiny_clip), progress=False)
    return index


def test_views_leave_the_folder_alone_and_equal_a_persisted_recalibration(built, tmp_path):
    folder = built.folder
    before = {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    view = built.with_calibration("none", alpha=0.3)
    assert view.is_view and view.alpha == 0.3 and view.calibrator.method == "none" and built.calibrator.method == "mean"
    hits = view.search("dog beach ball", k=13)
    assert {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before
    # the view's vectors are plain CLIP: normalise(0.3 t + 0.7 i) for image+text documents
    raw, row = built.raw(), built.ids.index("m1")
    expected = 0.3 * raw["text"][row] + 0.7 * raw["image"][row]
    np.testing.assert_allclose(view.index.vectors[row], expected / np.linalg.norm(expected), atol=1e-5)
    built.recalibrate("none", alpha=0.3)
    assert not built.is_view and ms.open_index(folder).alpha == 0.3
    again = ms.open_index(folder).search("dog beach ball", k=13)
    assert [h.id for h in again] == [h.id for h in hits]
    np.testing.assert_allclose([h.score for h in again], [h.score for h in hits], atol=1e-6)
    persisted = ms.open_index(folder).with_calibration(None, alpha=0.6).persist()
    assert ms.open_index(folder).manifest.calibration.source == "corpus" and persisted.alpha == 0.6
    assert len(list(folder.glob("calibration-*.safetensors"))) == 1 and len(list(folder.glob("index-*"))) == 1


def test_batch_search_equals_one_query_at_a_time(built, mixed_corpus):
    img = mixed_corpus.parent / "img"
    texts = ["dog beach ball", "snow child", "red bike street"]
    images = [img / "i0.png", img / "m2.png", img / "i3.png"]
    cases = [texts, [ms.Query(image=i) for i in images], [ms.Query(t, image=i) for t, i in zip(texts, images)]]
    for queries in cases:
        batch = built.search(queries, k=4, modality=["image", "multimodal"])
        assert len(batch) == 3
        for i, hits in enumerate(batch):
            one = built.search(queries[i], k=4, modality=["image", "multimodal"])
            assert [(h.id, h.rank) for h in hits] == [(h.id, h.rank) for h in one]
            assert all(h.modality in ("image", "multimodal") for h in hits)
    raw = {"text": built.encoder.encode(texts)}
    assert built.search_vectors(raw, k=4).ids() == built.search(texts, k=4).ids()
    assert built.search(image=img / "i2.png", k=1)[0].id == "i2"
    from PIL import Image

    assert built.search(image=Image.open(img / "i2.png"), k=1)[0].id == "i2"  # a loaded image too


def test_query_mistakes_are_clear_errors(built, tmp_path):
    with pytest.raises(ms.InputError, match="nowhere.png: image file not found"):
        built.search(image=tmp_path / "nowhere.png")
    with pytest.raises(ms.UsageError, match="pass an image as image="):
        built.search(Path("photo.png"))
    for bad in (dict(), dict(query="   "), dict(query="x", k=0), dict(query="x", modality="pictures")):
        with pytest.raises(ms.UsageError):
            built.search(**bad)
    with pytest.raises(ms.UsageError, match="come in pairs"):
        built.search_batch(["a", "b"], [tmp_path / "x.png"])


def test_library_logs_instead_of_printing(tiny_clip, mixed_corpus, tmp_path, capsys, caplog):
    logger = logging.getLogger("mixsearch")
    assert logger.getEffectiveLevel() > logging.INFO and not show_progress(None)  # quiet unless asked
    with caplog.at_level(logging.INFO, logger="mixsearch"):
        assert show_progress(None) and not show_progress(False)
        ms.build_index(mixed_corpus, tmp_path / "idx", str(tiny_clip), progress=False)
    captured = capsys.readouterr()
    assert captured.out == "" and "indexed 13 documents" in caplog.text


def test_missing_optional_dependency_names_the_extra(monkeypatch):
    from mixsearch.eval import evaluate

    monkeypatch.setitem(sys.modules, "pytrec_eval", None)  # as if not installed
    with pytest.raises(ms.MissingDependencyError, match=r"pip install 'mixsearch\[bench\]'"):
        evaluate({"q": {"d": 1}}, {"q": {"d": 1.0}})


def test_version_and_typing_marker():
    from importlib.metadata import version

    assert ms.__version__ == version("mixsearch")
    assert (Path(ms.__file__).parent / "py.typed").is_file()


def test_is_stale_sees_a_recalibration_from_elsewhere(built):
    reader = ms.open_index(built.folder)
    assert not reader.is_stale()
    ms.open_index(built.folder).recalibrate("none")
    assert reader.is_stale() and not ms.open_index(built.folder).is_stale()
