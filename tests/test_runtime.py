"""ONNX Runtime towers: the same embeddings as PyTorch, exported once per model, with a fallback."""

import logging

import numpy as np
import pytest
from conftest import write_image

import mixsearch as ms
from mixsearch.encoders import onnx as onnx_module
from mixsearch.encoders import transformers as tf_backend

pytest.importorskip("onnxruntime", reason="the [onnx] extra is not installed")


def probe(tmp_path):
    texts = ["a dog", "a red ball on the grass by a child", "snow " * 30]
    images = [write_image(tmp_path / f"p{i}.png", i, size=40 + 13 * i) for i in range(3)]
    return texts, images


@pytest.mark.slow
@pytest.mark.parametrize("model", ["tiny_clip", "tiny_siglip"])
def test_onnx_towers_give_pytorchs_embeddings(model, request, tmp_path):
    folder = str(request.getfixturevalue(model))
    torch_enc = ms.load_encoder(folder, runtime="torch")
    onnx_enc = ms.load_encoder(folder, runtime="onnx")
    assert (torch_enc.runtime, onnx_enc.runtime) == ("torch", "onnx")
    texts, images = probe(tmp_path)
    for items, modality in ((texts, "text"), (images, "image"), (texts[:1], "text"), (images[:1], "image")):
        a, b = torch_enc.encode(items, modality), onnx_enc.encode(items, modality)
        assert (a * b).sum(1).min() >= 0.9999, (model, modality)
    exported = onnx_module.export_folder(torch_enc.fingerprint)
    # the towers, and the tokenizer the light query path reads (encoders.onnx_query)
    assert sorted(p.name for p in exported.iterdir()) == [
        "image.onnx",
        "text-query.json",
        "text.onnx",
        "tokenizer.json",
    ]
    again = ms.load_encoder(folder)  # auto: an export in the cache is used at once, not redone
    assert again.runtime == "onnx"


@pytest.mark.slow
def test_auto_exports_only_for_a_long_run(tiny_clip, tmp_path, monkeypatch):
    enc = ms.load_encoder(str(tiny_clip))
    assert enc.runtime == "torch"  # nothing exported yet: a few queries are not worth an export
    enc.expect(3, "text")
    assert enc.runtime == "torch"
    monkeypatch.setattr(tf_backend, "ONNX_MIN_ITEMS", 10)
    enc.expect(10, "image")
    assert enc.runtime == "onnx"


def test_a_failed_export_stays_on_pytorch_and_says_why(tiny_clip, tmp_path, monkeypatch, caplog):
    import torch

    def broken(*args, **kwargs):
        raise RuntimeError("unsupported operator in this model")

    monkeypatch.setattr(torch.onnx, "export", broken)
    with caplog.at_level(logging.WARNING, logger="mixsearch"):
        enc = ms.load_encoder(str(tiny_clip), runtime="onnx")
    assert enc.runtime == "torch"
    assert "stays on PyTorch: ONNX export failed (RuntimeError: unsupported operator in this model)" in caplog.text
    texts, _ = probe(tmp_path)
    reference = ms.load_encoder(str(tiny_clip), runtime="torch").encode(texts)
    np.testing.assert_allclose(enc.encode(texts), reference, atol=1e-6)
    assert not onnx_module.export_folder(enc.fingerprint).exists()


def test_runtime_choices_are_checked(tiny_clip, monkeypatch):
    import sys

    with pytest.raises(ms.UsageError, match="unknown runtime 'tpu'"):
        ms.load_encoder(str(tiny_clip), runtime="tpu")
    with pytest.raises(ms.UsageError, match="run only their own way"):
        ms.load_encoder("all-MiniLM-L6-v2", runtime="onnx")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ms.MissingDependencyError, match=r"mixsearch\[onnx\]"):
        ms.load_encoder(str(tiny_clip), runtime="onnx")
    assert ms.load_encoder(str(tiny_clip)).runtime == "torch"  # auto without onnxruntime: PyTorch, quietly


@pytest.mark.slow
def test_a_runtime_failure_mid_encode_falls_back_to_pytorch(tiny_clip, tmp_path, monkeypatch, caplog):
    enc = ms.load_encoder(str(tiny_clip), runtime="onnx")
    texts, images = probe(tmp_path)

    def shape_error(*args):
        raise RuntimeError("[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Got invalid dimensions for input")

    monkeypatch.setattr(onnx_module.OnnxTowers, "text", shape_error)
    with caplog.at_level(logging.WARNING, logger="mixsearch"):
        got = enc.encode(texts)
    assert enc.runtime == "torch" and "ONNX Runtime failed" in caplog.text
    np.testing.assert_allclose(got, ms.load_encoder(str(tiny_clip), runtime="torch").encode(texts), atol=1e-5)
