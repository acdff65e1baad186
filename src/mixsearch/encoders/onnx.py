"""ONNX Runtime towers for transformers dual encoders: the same model, run by ONNX Runtime on CPU.

Each tower (``get_text_features``, ``get_image_features``) is exported once per model — keyed
by its weight fingerprint — into the cache (``<cache>/onnx/<fingerprint>-v<N>/``), then loaded by
any process that uses the model. Export happens on a copy of the model (the exporter can change
the module it traces), is written to a temporary folder and renamed into place, and is checked
against PyTorch on probe inputs before use: a model whose export fails or disagrees keeps running
in PyTorch, with a message saying why.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..config import cache_root
from ..errors import ModelError, require

log = logging.getLogger(__name__)

#: Bump when the export changes (opset, inputs), so older exports are not reused.
EXPORT_VERSION = 1
#: Cosine every probe embedding must reach against PyTorch before the export is used.
MIN_COSINE = 0.9999
OPSET = 18


def export_folder(fingerprint: str, root: str | Path | None = None) -> Path:
    """Where a model's towers are exported: under the cache folder ``root`` (``--cache-dir``;
    default ``cache_root()``, i.e. ``$MIXSEARCH_CACHE_DIR``), beside the embeddings."""
    return Path(root or cache_root()) / "onnx" / f"{fingerprint}-v{EXPORT_VERSION}"


class OnnxTowers:
    """Inference sessions for a model's text and image towers."""

    def __init__(self, folder: Path, threads: int | None = None):
        ort = require("onnxruntime", "onnx", "the ONNX runtime")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.log_severity_level = 3  # warnings about unused initialisers are noise here
        self.sessions = {
            tower: ort.InferenceSession(str(folder / f"{tower}.onnx"), options, providers=["CPUExecutionProvider"])
            for tower in ("text", "image")
        }

    def text(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Text embeddings (not normalised) of a tokenised batch."""
        feeds = {"input_ids": input_ids.astype(np.int64), "attention_mask": attention_mask.astype(np.int64)}
        return self.sessions["text"].run(None, feeds)[0]

    def image(self, pixel_values: np.ndarray) -> np.ndarray:
        """Image embeddings (not normalised) of a preprocessed batch."""
        return self.sessions["image"].run(None, {"pixel_values": pixel_values.astype(np.float32)})[0]


def load_or_export(
    model: Any,
    fingerprint: str,
    text_inputs: dict,
    pixel_values: Any,
    threads: int | None = None,
    root: str | Path | None = None,
) -> OnnxTowers:
    """The model's ONNX towers: loaded from the cache folder ``root``, or exported there first.

    ``text_inputs`` (``input_ids`` and ``attention_mask`` tensors) and ``pixel_values`` are probe
    batches: they trace the export and check its output against ``model``.
    """
    require("onnxruntime", "onnx", "the ONNX runtime")
    folder = export_folder(fingerprint, root)
    if not all((folder / f"{tower}.onnx").is_file() for tower in ("text", "image")):
        _export(model, folder, text_inputs, pixel_values)
    try:
        towers = OnnxTowers(folder, threads)
    except Exception as err:  # noqa: BLE001 - a graph ONNX Runtime cannot run: stay on PyTorch
        raise ModelError(
            f"ONNX Runtime cannot load the export in {folder} ({str(err).splitlines()[0][:200]})"
        ) from None
    _check_agreement(model, towers, text_inputs, pixel_values)
    with contextlib.suppress(OSError):  # last used now: the cache's size limit evicts the oldest first
        os.utime(folder)
    return towers


def _export(model: Any, folder: Path, text_inputs: dict, pixel_values: Any) -> None:
    import torch
    from filelock import FileLock

    require("onnxscript", "onnx", "exporting a model to ONNX")
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):  # one process exports; the others wait and load it
        if folder.is_dir():
            return
        log.info("exporting the model's towers to ONNX (once per model) into %s", folder)
        staging = folder.with_name(f"{folder.name}.{os.getpid()}.tmp")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        traced = copy.deepcopy(model).float().cpu().eval()
        quiet = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "onnxscript", "onnx_ir")]
        levels = [logger.level for logger in quiet]
        for logger in quiet:  # the exporter narrates every pass at INFO
            logger.setLevel(logging.ERROR)
        batch = sequence = torch.export.Dim.AUTO  # dynamic, in whatever range the model allows
        towers = {
            "text": (
                _tower(traced, "text"),
                (text_inputs["input_ids"], text_inputs["attention_mask"]),
                ({0: batch, 1: sequence}, {0: batch, 1: sequence}),
                ["input_ids", "attention_mask"],
            ),
            "image": (_tower(traced, "image"), (pixel_values,), ({0: batch},), ["pixel_values"]),
        }
        try:
            for name, (module, args, shapes, inputs) in towers.items():
                with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
                    warnings.simplefilter("ignore")
                    torch.onnx.export(
                        module,
                        args,
                        str(staging / f"{name}.onnx"),
                        dynamo=True,
                        opset_version=OPSET,
                        input_names=inputs,
                        output_names=["mixsearch_features"],
                        dynamic_shapes=shapes,
                        external_data=False,
                        verbose=False,
                    )
        except Exception as err:  # noqa: BLE001 - exporters fail in many ways; each means "stay on PyTorch"
            shutil.rmtree(staging, ignore_errors=True)
            raise ModelError(f"ONNX export failed ({type(err).__name__}: {str(err).splitlines()[0][:200]})") from None
        finally:
            for logger, level in zip(quiet, levels):
                logger.setLevel(level)
        staging.rename(folder)


def _tower(model: Any, tower: str) -> Any:
    """One tower as a module with plain tensor inputs and output (what the exporter traces)."""
    import torch

    def plain(out: Any) -> Any:
        return out if isinstance(out, torch.Tensor) else out.pooler_output

    class TextTower(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            return plain(self.model.get_text_features(input_ids=input_ids, attention_mask=attention_mask))

    class ImageTower(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, pixel_values: Any) -> Any:
            return plain(self.model.get_image_features(pixel_values=pixel_values))

    return TextTower() if tower == "text" else ImageTower()


def _check_agreement(model: Any, towers: OnnxTowers, text_inputs: dict, pixel_values: Any) -> None:
    """Refuse an export whose embeddings differ from PyTorch's on the probes."""
    import torch

    with torch.inference_mode():
        text = _tower(model, "text")(text_inputs["input_ids"], text_inputs["attention_mask"]).float().cpu().numpy()
        image = _tower(model, "image")(pixel_values).float().cpu().numpy()
    got_text = towers.text(text_inputs["input_ids"].cpu().numpy(), text_inputs["attention_mask"].cpu().numpy())
    got_image = towers.image(pixel_values.float().cpu().numpy())
    worst = min(_min_cosine(text, got_text), _min_cosine(image, got_image))
    if not worst >= MIN_COSINE:
        raise ModelError(f"the ONNX towers disagree with PyTorch (cosine {worst:.6f} < {MIN_COSINE})")


def _min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))).min())
