"""A light text encoder for queries: a model's exported ONNX text tower and its tokenizer, run by
ONNX Runtime and the ``tokenizers`` library, with neither PyTorch nor transformers imported.

A cold ``mixsearch search INDEX "a dog"`` spent most of its seconds importing torch and
transformers and loading the model, to encode a few words. When the model's towers have been
exported (``encoders.onnx``: ``<cache>/onnx/<fingerprint>-v<N>/``), ``TransformersEncoder`` also
writes there the tokenizer exactly as it tokenizes (``tokenizer.json``, truncation and padding
set as transformers sets them for the text tower) and ``text-query.json`` (the context length,
the embedding width), after checking on probe texts that the saved tokenizer gives transformers'
token ids. ``OnnxTextEncoder.from_export`` then needs only the model's fingerprint (which an
index's manifest records) to encode text the way the model does, in milliseconds after a fraction
of a second of loading. Anything missing or unreadable means ``None``: the caller loads the model.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError, require
from .base import Encoder, requested_threads
from .fingerprint import CHARS_PER_TOKEN, cut_texts
from .onnx import export_folder

log = logging.getLogger(__name__)

TOKENIZER = "tokenizer.json"
SETTINGS = "text-query.json"
#: Bump when what ``save_query_tokenizer`` writes changes meaning.
SETTINGS_VERSION = 1
#: Texts the saved tokenizer must tokenize exactly as transformers does before it is written.
PROBES = (
    "a dog",
    "Two children play on the beach, near the WATER's edge!",
    "  spaces\tand\nnewlines  ",
    "naïve café – 東京 😀",
    "word " * 300,  # longer than any text tower's context: truncation
)


def load_query_encoder(
    name: str,
    fingerprint: str,
    dim: int,
    modality: str = "text",
    *,
    device: str | None = None,
    runtime: str = "auto",
    cache_dir: str | Path | None = None,
) -> Encoder | None:
    """An encoder for queries of one modality of the model ``name`` (with this fingerprint and
    width) that loads without the model itself: the ONNX text tower when its export is in the
    cache (``cache_dir``, default ``cache_root()``). None when there is none, or when ``runtime``
    (``torch``) or ``device`` (a GPU) asks for the model itself: then ``load_encoder``."""
    if modality != "text" or runtime == "torch" or (device and not device.startswith("cpu")):
        return None
    return OnnxTextEncoder.from_export(name, fingerprint, dim, cache_dir)


#: ONNX Runtime's session setting for its intra-op threads' busy-waiting.
SPINNING = "session.intra_op.allow_spinning"


class OnnxTextEncoder(Encoder):
    """Text only, from a model's ONNX export (see the module docstring); ``from_export`` builds it."""

    modalities = frozenset({"text"})

    def __init__(self, name: str, fingerprint: str, folder: Path, threads: int | None = None):
        from tokenizers import Tokenizer

        ort = require("onnxruntime", "onnx", "the ONNX runtime")

        settings = read_settings(folder)
        if settings is None:
            raise ModelError(f"{folder}: no query tokenizer settings ({SETTINGS})")
        self.name, self.fingerprint, self.folder = name, fingerprint, folder
        self.dim, self.max_length = int(settings["dim"]), int(settings["max_length"])
        self._tokenizer_json = (folder / TOKENIZER).read_text(encoding="utf-8")
        self.tokenizer = Tokenizer.from_str(self._tokenizer_json)
        self.tokenizer.encode_special_tokens = bool(settings.get("encode_special_tokens", False))
        self._counter: Any = None  # the same tokenizer without truncation, made when a long text needs it
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.log_severity_level = 3  # warnings about unused initialisers are noise here
        # no spin-waiting between runs: idle intra-op threads would hold every core for a while after
        # each query, and on a small shared machine that doubled the query itself and slowed a server
        # beside it (benchmarks/results/issue19.md, the HTTP row: 17 vs 8 ms per query at load 3)
        options.add_session_config_entry(SPINNING, "0")
        self.session = ort.InferenceSession(str(folder / "text.onnx"), options, providers=["CPUExecutionProvider"])

    @classmethod
    def from_export(
        cls, name: str, fingerprint: str, dim: int, root: str | Path | None = None
    ) -> OnnxTextEncoder | None:
        """The light encoder of the model with this fingerprint and width, or None when its export
        (or the query tokenizer saved beside it, or onnxruntime / tokenizers) is missing."""
        folder = export_folder(fingerprint, root)
        settings = read_settings(folder)
        if settings is None or int(settings["dim"]) != int(dim) or not (folder / "text.onnx").is_file():
            return None
        try:
            import onnxruntime  # noqa: F401
            import tokenizers  # noqa: F401
        except ImportError:
            return None
        try:
            return cls(name, fingerprint, folder, threads=requested_threads())
        except Exception as err:  # noqa: BLE001 - an unusable export means "load the model", never a wrong answer
            log.warning("the ONNX text tower in %s cannot be used (%s); loading the model", folder, err)
            return None

    def _encode_batch(self, batch: list, modality: str) -> tuple[np.ndarray, list[bool]]:
        self.check_modality(modality)
        if any(len(t) > self.max_length * CHARS_PER_TOKEN for t in batch):  # a long text: its head only
            batch, truncated = cut_texts(self._count, batch, self.max_length)
        else:
            truncated = None
        encodings = self.tokenizer.encode_batch(batch, add_special_tokens=True)
        if truncated is None:
            truncated = [bool(e.overflowing) for e in encodings]
        feeds = {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
        }
        return self.session.run(None, feeds)[0], truncated

    def _count(self, texts: list[str], add_special_tokens: bool = True) -> dict:
        """Token ids without truncation (what ``cut_texts`` counts), as transformers' call returns them."""
        if self._counter is None:
            from tokenizers import Tokenizer

            counter = Tokenizer.from_str(self._tokenizer_json)
            counter.no_truncation()
            counter.no_padding()
            counter.encode_special_tokens = self.tokenizer.encode_special_tokens
            self._counter = counter
        return {"input_ids": [e.ids for e in self._counter.encode_batch(texts, add_special_tokens=add_special_tokens)]}


def read_settings(folder: Path) -> dict | None:
    """The query tokenizer's settings saved in an export folder, or None (absent, unreadable, older)."""
    try:
        settings = json.loads((folder / SETTINGS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(settings, dict) or settings.get("version") != SETTINGS_VERSION:
        return None
    if not (folder / TOKENIZER).is_file():
        return None
    return settings


def save_query_tokenizer(folder: Path, tokenizer: Any, max_length: int, pad_to_max: bool, dim: int) -> bool:
    """Write a transformers tokenizer into an export folder as ``OnnxTextEncoder`` reads it: its
    backend (``tokenizers``) with truncation and padding set as transformers sets them for
    ``tokenizer(texts, padding=..., truncation=True, max_length=max_length)``. Written only if it
    tokenizes ``PROBES`` exactly as ``tokenizer`` does (a slow tokenizer, or one that changes the
    text in Python first, is not saved). Returns whether the folder now has it."""
    if read_settings(folder) is not None:
        return True
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or tokenizer.pad_token_id is None:
        return False
    from tokenizers import Tokenizer

    light = Tokenizer.from_str(backend.to_str())
    light.enable_truncation(max_length, stride=0, strategy="longest_first", direction=tokenizer.truncation_side)
    light.enable_padding(
        length=max_length if pad_to_max else None,
        direction=tokenizer.padding_side,
        pad_id=tokenizer.pad_token_id,
        pad_token=tokenizer.pad_token,
        pad_type_id=tokenizer.pad_token_type_id,
    )
    split = bool(getattr(tokenizer, "split_special_tokens", False))
    light.encode_special_tokens = split
    padding = "max_length" if pad_to_max else True
    try:
        expected = tokenizer(list(PROBES), padding=padding, truncation=True, max_length=max_length)
        got = light.encode_batch(list(PROBES), add_special_tokens=True)
        same = [e.ids for e in got] == [list(x) for x in expected["input_ids"]] and [e.attention_mask for e in got] == [
            list(x) for x in expected["attention_mask"]
        ]
    except Exception as err:  # noqa: BLE001 - a tokenizer that cannot be compared is not saved
        log.debug("the query tokenizer for %s cannot be checked: %s", folder, err)
        same = False
    if not same:
        log.info(
            "the model's tokenizer is not saved into %s for light queries: it tokenizes unlike transformers", folder
        )
        return False
    settings = {
        "version": SETTINGS_VERSION,
        "max_length": int(max_length),
        "dim": int(dim),
        "pad_to_max": bool(pad_to_max),
        "encode_special_tokens": split,
    }
    try:  # written under temporary names and renamed: a reader sees all or nothing
        tmp = f".{os.getpid()}.tmp"
        light.save(str(folder / (TOKENIZER + tmp)))
        (folder / (SETTINGS + tmp)).write_text(json.dumps(settings, indent=1), encoding="utf-8")
        os.replace(folder / (TOKENIZER + tmp), folder / TOKENIZER)
        os.replace(folder / (SETTINGS + tmp), folder / SETTINGS)  # last: it marks the pair complete
    except OSError as err:  # a read-only cache: queries load the model, as before
        log.debug("cannot save the query tokenizer into %s: %s", folder, err)
        return False
    return True
