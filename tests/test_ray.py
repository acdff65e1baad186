"""Encoding on Ray: a local Ray on 2 CPUs, a tiny CLIP saved to disk, a small mixed corpus with a
corrupt image. The Ray path must give the single-process embeddings, fill the same cache, report
a bad item like a run without Ray, and refuse a worker whose model differs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import good_records
from typer.testing import CliRunner

import mixsearch
from mixsearch import build_index, load_encoder
from mixsearch.cli import app
from mixsearch.embedding import open_cache
from mixsearch.embedding.distributed import RayOptions, fill_cache_on_ray, ray_options
from mixsearch.errors import MissingDependencyError, ModelError, UsageError

# a local Ray cluster per module: the slowest file of the suite, run by `make test-all` (CI)
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_local(tmp_path_factory):
    """One local Ray for the module (starting one takes seconds). Its workers import this
    checkout's mixsearch (the virtualenv may hold another) and keep their cache in tmp."""
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'mixsearch[ray]')")
    pytest.importorskip("ray.data", reason="Ray Data is not installed (pip install 'mixsearch[ray]')")
    if ray.is_initialized():
        ray.shutdown()
    src = str(Path(mixsearch.__file__).resolve().parents[1])
    env = {"PYTHONPATH": src, "MIXSEARCH_CACHE_DIR": str(tmp_path_factory.mktemp("worker-cache"))}
    env["HF_HUB_OFFLINE"] = "1"
    env["TOKENIZERS_PARALLELISM"] = "false"
    ray.init(
        num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": env}, logging_level="ERROR"
    )
    yield ray
    ray.shutdown()


@pytest.fixture
def corpus(tmp_path) -> Path:
    """12 good documents (texts, images, image+text, two with the same text), one corrupt image."""
    records = good_records(tmp_path, np.random.default_rng(3))
    records.append({"id": "same", "text": records[0]["text"]})  # one content, two documents
    (tmp_path / "img" / "corrupt.jpg").write_bytes(b"not a jpeg at all")
    records.append({"id": "corrupt", "image": "img/corrupt.jpg"})
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_ray_build_matches_single_process_and_fills_the_cache(ray_local, tiny_clip, corpus, tmp_path):
    encoder = load_encoder(tiny_clip)
    cache = tmp_path / "ray-cache"
    on_ray, report = build_index(corpus, tmp_path / "ray-idx", encoder, cache_dir=cache, ray=RayOptions(workers=2))
    local, local_report = build_index(corpus, tmp_path / "local-idx", encoder, cache_dir=tmp_path / "local-cache")

    # the corrupt image is reported and skipped as without Ray; the build goes on
    assert report.skipped_ids == ["corrupt"] == local_report.skipped_ids
    assert [str(p) for p in report.problems] == [str(p) for p in local_report.problems]
    assert any("corrupt.jpg" in str(p) for p in report.problems)
    assert report.indexed == local_report.indexed == 13
    # 8 distinct texts (one in two documents) + 8 images, all encoded on Ray, none locally
    assert report.encoded == local_report.encoded == 16
    assert report.from_cache == local_report.from_cache == 0
    note = next(n for n in report.notes if n.startswith("Ray:"))
    assert "16 items encoded by 2 workers" in note and "1 could not be encoded there" in note

    assert on_ray.documents == local.documents
    raw, expected = on_ray.raw(), local.raw()
    assert set(raw) == set(expected) == {"text", "image"}
    for m in raw:
        present = np.linalg.norm(expected[m], axis=1) > 0
        assert present.sum() >= 8
        assert np.all(np.linalg.norm(raw[m][~present], axis=1) == 0)
        assert cosines(raw[m][present], expected[m][present]).min() >= 0.9999
    assert [h.id for h in on_ray.search("dog beach", k=5)] == [h.id for h in local.search("dog beach", k=5)]

    # the cache was filled: a second build (even with Ray asked for) encodes nothing and starts no job
    again, second = build_index(corpus, tmp_path / "ray-idx-2", encoder, cache_dir=cache, ray="local")
    assert second.encoded == 0 and second.from_cache == 17
    assert "nothing to encode on the cluster" in " ".join(second.notes)
    assert second.skipped_ids == ["corrupt"]  # tried again locally, and reported again


def test_fill_cache_only_encodes_what_is_missing(ray_local, tiny_clip, tmp_path):
    encoder = load_encoder(tiny_clip)
    cache = open_cache(encoder, tmp_path / "cache")
    texts = ["a dog", "a red ball", "a dog", "snow on the street"]
    cache.put_many(*_cached(encoder, "a dog"))
    try:
        run = fill_cache_on_ray(encoder, {"text": texts}, cache, options=RayOptions(workers=1))
        assert (run.encoded, run.rows, run.failed, run.workers) == (2, 2, 0, 1)
        assert len(cache) == 3
        from mixsearch.embedding import content_key

        keys = [content_key("text", t) for t in texts]
        stored = cache.get_many(keys)
        vectors = np.stack([stored[k][0] for k in keys])
        assert cosines(vectors, encoder.encode(texts)).min() >= 0.9999
    finally:
        cache.close()


def _cached(encoder, text):
    from mixsearch.embedding import content_key

    return [content_key("text", text)], encoder.encode([text]), [False]


def test_a_worker_with_other_weights_is_refused(ray_local, tiny_clip, tiny_clip_other, tmp_path):
    encoder = load_encoder(tiny_clip)
    encoder.name = str(tiny_clip_other)  # the workers would load other weights under this name
    cache = open_cache(encoder, tmp_path / "cache")
    try:
        with pytest.raises(ModelError, match="fingerprint"):
            fill_cache_on_ray(encoder, {"text": ["a dog"]}, cache, options=RayOptions(workers=1))
        assert len(cache) == 0
    finally:
        cache.close()


def test_a_model_workers_cannot_load_is_a_clear_error(ray_local, tiny_clip, tmp_path):
    encoder = load_encoder(tiny_clip)
    encoder.name = str(tmp_path / "no-such-model")
    cache = open_cache(encoder, tmp_path / "cache")
    try:
        with pytest.raises(ModelError, match="Ray worker cannot load model"):
            fill_cache_on_ray(encoder, {"text": ["a dog"]}, cache, options=RayOptions(workers=1))
    finally:
        cache.close()


def test_cli_index_with_ray(ray_local, tiny_clip, corpus, tmp_path):
    result = CliRunner().invoke(
        app,
        [
            "index",
            str(corpus),
            "--model",
            str(tiny_clip),
            "--out",
            str(tmp_path / "idx"),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--ray-workers",
            "2",
        ],
    )
    out = result.output + (result.stderr if result.stderr_bytes is not None else "")
    assert result.exit_code == 0, out
    assert "indexed 13 documents" in out and "corrupt.jpg" in out
    assert "Ray: 16 items encoded by 2 workers" in out


def test_ray_options_are_checked():
    assert ray_options(None) is None and ray_options(False) is None
    assert ray_options(True) == RayOptions()
    assert ray_options("ray://head:10001") == RayOptions(address="ray://head:10001")
    with pytest.raises(UsageError):
        RayOptions(workers=0)
    with pytest.raises(UsageError):
        ray_options(3)  # type: ignore[arg-type]


def test_without_ray_installed_the_error_names_the_extra(tiny_clip, corpus, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    monkeypatch.setitem(sys.modules, "ray.data", None)
    with pytest.raises(MissingDependencyError, match=r"mixsearch\[ray\]"):
        build_index(corpus, tmp_path / "idx", load_encoder(tiny_clip), ray="local")
    assert not (tmp_path / "idx").exists()


# -- the pieces, in this process (no Ray needed) ------------------------------------------------


def test_worker_encodes_a_batch_and_reports_bad_items(tiny_clip, tmp_path):
    from conftest import write_image

    from mixsearch.embedding import content_key
    from mixsearch.embedding.distributed import _EncodeBatches

    encoder = load_encoder(tiny_clip)
    good, changed = write_image(tmp_path / "good.png", 1), write_image(tmp_path / "changed.png", 2)
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"not a jpeg")
    keys = [content_key("image", good), content_key("image", changed)]
    write_image(changed, 3)  # the bytes a worker reads are not those the driver hashed
    worker = _EncodeBatches(str(tiny_clip), {}, encoder.fingerprint, encoder.dim, {"image": 3, "text": 1})
    batch = {
        "key": np.array([keys[0], keys[1], content_key("text", "a dog"), content_key("image", corrupt)], dtype=object),
        "modality": np.array(["image", "image", "text", "image"], dtype=object),
        "item": np.array([str(good), str(changed), "a dog", str(corrupt)], dtype=object),
    }
    out = worker(batch)
    assert list(out["fatal"]) == ["", "", "", ""]
    assert out["error"][0] == "" and out["error"][2] == ""
    assert "differs on the Ray worker" in out["error"][1]
    assert out["error"][3].startswith(f"{corrupt}: unreadable image")  # the image loader's own message
    assert cosines(out["vector"][[0]], encoder.encode([str(good)], "image")).min() >= 0.9999
    assert cosines(out["vector"][[2]], encoder.encode(["a dog"])).min() >= 0.9999
    assert np.all(out["vector"][[1, 3]] == 0)


def test_worker_with_another_fingerprint_marks_every_batch_fatal(tiny_clip, tiny_clip_other):
    from mixsearch.embedding.distributed import _EncodeBatches

    expected = load_encoder(tiny_clip).fingerprint
    worker = _EncodeBatches(str(tiny_clip_other), {}, expected, 16, {})
    out = worker({"key": np.array(["k"]), "modality": np.array(["text"]), "item": np.array(["a dog"])})
    assert "fingerprint" in out["fatal"][0] and expected in out["fatal"][0]


class _FakeRay:
    def __init__(self, resources):
        self.resources = resources

    def cluster_resources(self):
        return self.resources


def test_pool_size_follows_the_cluster():
    from mixsearch.embedding.distributed import _pool

    assert _pool(_FakeRay({"CPU": 2.0}), None) == (2, {"num_cpus": 1.0})
    assert _pool(_FakeRay({"CPU": 2.0}), 4) == (4, {"num_cpus": 0.5})  # more workers than CPUs: a share each
    assert _pool(_FakeRay({"CPU": 32.0, "GPU": 4.0}), None) == (4, {"num_gpus": 1})
    assert _pool(_FakeRay({"CPU": 32.0, "GPU": 4.0}), 2) == (2, {"num_gpus": 1})


def test_cli_ray_errors_before_the_model_loads(corpus, tmp_path, monkeypatch):
    args = ["index", str(corpus), "--model", str(tmp_path / "no-model"), "--out", str(tmp_path / "idx")]
    result = CliRunner().invoke(app, [*args, "--ray-workers", "0"])
    assert result.exit_code == 2 and "Ray workers must be a positive whole number" in result.output
    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.setitem(sys.modules, "ray.data", None)
    result = CliRunner().invoke(app, [*args, "--ray"])
    assert result.exit_code == 1 and "pip install 'mixsearch[ray]'" in result.output
