"""Backend for transformers dual encoders: any model with ``get_text_features`` and
``get_image_features`` (``CLIPModel``, ``SiglipModel``, ``VisionTextDualEncoderModel``; OpenCLIP
models published in transformers format load the same way)."""

from __future__ import annotations

import logging

import numpy as np
from PIL import Image

from ..errors import MissingDependencyError, ModelError, UsageError
from .base import Encoder, pick_device, register_encoder
from .fingerprint import count_truncated, fingerprint_weights, local_folder
from .onnx import OnnxTowers, export_folder, load_or_export

log = logging.getLogger(__name__)

#: ``torch``; ``onnx`` (ONNX Runtime, exported once per model); ``auto`` (ONNX Runtime for runs of
#: ``ONNX_MIN_ITEMS`` items or more, or once an export exists, when onnxruntime is installed).
RUNTIMES = ("auto", "torch", "onnx")
ONNX_MIN_ITEMS = 256


@register_encoder("transformers")  # the fallback: any model no other backend claims
class TransformersEncoder(Encoder):
    """A transformers dual encoder (CLIP, SigLIP, VisionTextDualEncoder, ...)."""

    def __init__(
        self,
        source: str,
        device: str | None = None,
        fp16: bool | None = None,
        batch_size: int = 32,
        runtime: str = "auto",
    ):
        import torch
        import transformers
        from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoTokenizer

        transformers.logging.set_verbosity_error()  # e.g. the PIL-fallback note for image processors
        transformers.utils.logging.disable_progress_bar()
        self.device = pick_device(device)
        self.fp16 = self.device.startswith("cuda") if fp16 is None else fp16
        self.batch_size = batch_size
        try:
            config = AutoConfig.from_pretrained(source)
            # weights may be stored in fp16: compute in fp32 on CPU, fp16 on GPU when asked
            dtype = torch.float16 if self.fp16 else torch.float32
            self.model = AutoModel.from_pretrained(source, dtype=dtype).to(self.device).eval()
            self.tokenizer = AutoTokenizer.from_pretrained(source)
            self.image_processor = AutoImageProcessor.from_pretrained(source)
        except (OSError, ValueError) as err:
            raise ModelError(f"cannot load model {source!r}: {err}") from None
        if not (hasattr(self.model, "get_text_features") and hasattr(self.model, "get_image_features")):
            raise ModelError(f"model {source!r} ({config.model_type}) is not an image-text dual encoder")
        self.name = str(source)
        self.model_type = config.model_type
        text_config = getattr(config, "text_config", config)
        limits = [getattr(text_config, "max_position_embeddings", None), self.tokenizer.model_max_length]
        self.max_length = min(int(x) for x in limits if x and x < 1e9)
        # SigLIP was trained on text padded to the full context; padding changes its embeddings
        self.pad_to_max = config.model_type.startswith("siglip")
        self.modalities = frozenset({"text", "image"})
        self.dim = int(self._features(self.model.get_text_features, **self._tokenize(["probe"])).shape[1])
        self.fingerprint = fingerprint_weights(local_folder(source), config.model_type)
        if runtime not in RUNTIMES:
            raise UsageError(f"unknown runtime {runtime!r}; expected one of {', '.join(RUNTIMES)}")
        self.requested_runtime, self.runtime = runtime, "torch"
        self._onnx: OnnxTowers | None = None
        self._onnx_failed = False
        if runtime == "onnx" or (runtime == "auto" and export_folder(self.fingerprint).is_dir()):
            self._start_onnx(required=runtime == "onnx")

    def expect(self, n_items: int, modality: str) -> None:
        """With ``runtime="auto"``, a run of many items switches to ONNX Runtime (exporting the
        model once, which takes seconds): worth it for a corpus, not for a handful of queries."""
        if self.requested_runtime == "auto" and n_items >= ONNX_MIN_ITEMS and self._onnx is None:
            self._start_onnx(required=False)

    def _start_onnx(self, required: bool) -> None:
        if self._onnx_failed or not self.device.startswith("cpu") or self.fp16:
            return  # on GPU PyTorch (fp16) is the fast path
        import torch

        try:
            pixels = self.image_processor(images=[Image.new("RGB", (64, 48), (90, 140, 200))] * 2, return_tensors="pt")[
                "pixel_values"
            ]
            probe = self._tokenize(["a short probe", "a longer probe sentence for the text tower"])
            self._onnx = load_or_export(self.model, self.fingerprint, probe, pixels, threads=torch.get_num_threads())
            self.runtime = "onnx"
        except MissingDependencyError:
            if required:
                raise
            self._onnx_failed = True
        except ModelError as err:
            self._onnx_failed = True
            log.warning("model %s stays on PyTorch: %s", self.name, err)

    def _tokenize(self, texts: list[str]) -> dict:
        padding = "max_length" if self.pad_to_max else True
        batch = self.tokenizer(texts, padding=padding, truncation=True, max_length=self.max_length, return_tensors="pt")
        # some dual encoders' forward signatures take only ids and mask
        return {k: v.to(self.device) for k, v in batch.items() if k in ("input_ids", "attention_mask")}

    def _features(self, fn, **inputs) -> np.ndarray:
        import torch

        with torch.inference_mode():
            out = fn(**inputs)
        # transformers 5 returns a model output whose pooler_output is the projected embedding
        tensor = out if isinstance(out, torch.Tensor) else out.pooler_output
        return tensor.float().cpu().numpy()

    def _encode_batch(self, batch: list, modality: str) -> tuple[np.ndarray, list[bool]]:
        if modality == "text":
            truncated = count_truncated(self.tokenizer, batch, self.max_length)
            inputs = self._tokenize(batch)
            if self._onnx is not None:
                return self._onnx.text(inputs["input_ids"].numpy(), inputs["attention_mask"].numpy()), truncated
            return self._features(self.model.get_text_features, **inputs), truncated
        pixels = self.image_processor(images=batch, return_tensors="pt")["pixel_values"]
        if self._onnx is not None:
            return self._onnx.image(pixels.numpy()), [False] * len(batch)
        pixels = pixels.to(self.device, dtype=self.model.dtype)
        return self._features(self.model.get_image_features, pixel_values=pixels), [False] * len(batch)
