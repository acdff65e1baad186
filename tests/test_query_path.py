"""The light query path: a text query on an index whose model has an ONNX export is encoded by the
exported text tower and the saved tokenizer (``encoders.onnx_query``), importing neither torch nor
transformers, and ranks exactly as the PyTorch path does; anything else loads the model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import mixsearch as ms
from mixsearch.cli import app
from mixsearch.cli.search import export_hint
from mixsearch.encoders import OnnxTextEncoder, onnx_query
from mixsearch.encoders.onnx import export_folder

pytest.importorskip("onnxruntime", reason="the [onnx] extra is not installed")

ROOT = Path(__file__).resolve().parents[1]
QUERIES = ["a dog", "Two children play on the beach, near the WATER's edge!", "snow " * 300]


@pytest.fixture
def exported_index(tiny_clip, mixed_corpus, tmp_path):
    """An index of the tiny CLIP, and the model's towers exported to ONNX into the test's cache."""
    encoder = ms.load_encoder(str(tiny_clip), runtime="onnx")  # exports, and saves the query tokenizer
    assert encoder.runtime == "onnx"
    ms.build_index(mixed_corpus, tmp_path / "idx", encoder, progress=False)
    return tmp_path / "idx", encoder


@pytest.mark.slow
def test_the_saved_tokenizer_and_text_tower_encode_as_the_model(exported_index):
    _, encoder = exported_index
    folder = export_folder(encoder.fingerprint)
    assert {"text.onnx", onnx_query.TOKENIZER, onnx_query.SETTINGS} <= {p.name for p in folder.iterdir()}
    light = OnnxTextEncoder.from_export(encoder.name, encoder.fingerprint, encoder.dim)
    assert light is not None and light.max_length == encoder.max_length
    assert light.session.get_session_options().get_session_config_entry(onnx_query.SPINNING) == "0"
    torch_encoder = ms.load_encoder(encoder.name, runtime="torch")
    for texts in (QUERIES, QUERIES[:1]):  # a batch padded to its longest, and one text alone
        expected = torch_encoder.tokenizer(
            texts, padding=True, truncation=True, max_length=torch_encoder.max_length, return_tensors="np"
        )
        got = light.tokenizer.encode_batch(texts)
        np.testing.assert_array_equal(np.array([e.ids for e in got]), expected["input_ids"])
        np.testing.assert_array_equal(np.array([e.attention_mask for e in got]), expected["attention_mask"])
    a, flags_a = light.encode_with_flags(QUERIES)
    b, flags_b = torch_encoder.encode_with_flags(QUERIES)
    assert (a * b).sum(1).min() >= 0.9999
    assert flags_a.tolist() == flags_b.tolist() == [False, False, True]  # the long text is cut, as the model's
    with pytest.raises(ms.ModelError, match="no image tower"):
        light.encode([], "image")
    assert OnnxTextEncoder.from_export(encoder.name, encoder.fingerprint, encoder.dim + 1) is None  # another width


@pytest.mark.slow
def test_a_text_query_imports_neither_torch_nor_transformers(exported_index):
    """The CLI in a fresh process: its hits are the PyTorch path's (ids equal, scores within 1e-4)."""
    index, _ = exported_index
    script = (
        "import atexit, json, runpy, sys\n"
        "atexit.register(lambda: print('MODULES ' + json.dumps(sorted(m for m in ('torch', 'transformers', "
        "'pandas') if m in sys.modules)), file=sys.stderr))\n"
        f"sys.argv = ['mixsearch', 'search', {str(index)!r}, 'a dog', '--json', '-k', '10']\n"
        "runpy.run_module('mixsearch', run_name='__main__')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    modules = next(line for line in done.stderr.splitlines() if line.startswith("MODULES "))
    assert json.loads(modules.removeprefix("MODULES ")) == []
    hits = [json.loads(line) for line in done.stdout.splitlines()]
    reference = ms.open_index(index, runtime="torch").search("a dog", k=10)
    assert [h["id"] for h in hits] == [h.id for h in reference] and len(hits) == 10
    np.testing.assert_allclose([h["score"] for h in hits], [h.score for h in reference], atol=1e-4)


@pytest.mark.slow
def test_which_encoder_answers_which_query(exported_index, tmp_path):
    index_dir, encoder = exported_index
    index = ms.open_index(index_dir)
    assert isinstance(index.query_encoder("text"), OnnxTextEncoder)
    assert index._encoder is None  # a text query loaded no model
    plain = index.with_calibration("none")
    assert isinstance(plain.query_encoder("text"), OnnxTextEncoder)
    image = next(p for p in (tmp_path / "img").glob("*.png"))
    assert index.search(image=image, k=3)  # an image query loads the model
    assert index.query_encoder("image") is index.encoder
    assert not isinstance(index.encoder, OnnxTextEncoder)
    # PyTorch asked for, or an encoder given: it encodes every query
    assert index.query_encoder("text") is not index.encoder
    assert ms.open_index(index_dir, runtime="torch").query_encoder("text").runtime == "torch"
    given = ms.open_index(index_dir, encoder=encoder)
    assert given.query_encoder("text") is encoder


def test_without_an_export_the_model_answers_and_the_cli_says_how(tiny_clip, mixed_corpus, tmp_path):
    ms.build_index(mixed_corpus, tmp_path / "idx", str(tiny_clip), progress=False)
    index = ms.open_index(tmp_path / "idx")
    assert index.query_encoder("text") is index.encoder and index.encoder.runtime == "torch"
    assert "--runtime onnx" in export_hint(index, "auto")
    assert export_hint(index, "torch") is None  # PyTorch was asked for
    result = CliRunner().invoke(app, ["search", str(tmp_path / "idx"), "a dog", "-k", "2"])
    assert result.exit_code == 0 and "hint" not in result.output  # not a terminal: the results alone


def test_an_unusable_export_loads_the_model(tiny_clip, tmp_path, caplog):
    folder = export_folder("0123456789abcdef")
    assert OnnxTextEncoder.from_export("m", "0123456789abcdef", 16) is None  # nothing there
    folder.mkdir(parents=True)
    (folder / onnx_query.TOKENIZER).write_text("{}")
    (folder / onnx_query.SETTINGS).write_text(json.dumps({"version": 1, "dim": 16, "max_length": 8}))
    (folder / "text.onnx").write_bytes(b"not an onnx graph")
    assert OnnxTextEncoder.from_export("m", "0123456789abcdef", 16) is None
    assert "cannot be used" in caplog.text
    assert onnx_query.load_query_encoder("m", "0123456789abcdef", 16, "image") is None
