"""Backend for transformers dual encoders: any model with ``get_text_features`` and
``get_image_features`` (``CLIPModel``, ``SiglipModel``, ``VisionTextDualEncoderModel``; OpenCLIP
models published in transformers format load the same way)."""

from __future__ import annotations

import numpy as np

from ..errors import ModelError
from .base import Encoder, pick_device, register_encoder
from .fingerprint import count_truncated, fingerprint_weights, local_folder


@register_encoder("transformers")  # the fallback: any model no other backend claims
class TransformersEncoder(Encoder):
    """A transformers dual encoder (CLIP, SigLIP, VisionTextDualEncoder, ...)."""

    def __init__(self, source: str, device: str | None = None, fp16: bool | None = None, batch_size: int = 32):
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
            return self._features(self.model.get_text_features, **self._tokenize(batch)), truncated
        pixels = self.image_processor(images=batch, return_tensors="pt")["pixel_values"]
        pixels = pixels.to(self.device, dtype=self.model.dtype)
        return self._features(self.model.get_image_features, pixel_values=pixels), [False] * len(batch)
