"""Backend for text-only sentence-transformers models (e.g. all-MiniLM-L6-v2)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ModelError
from .base import Encoder, pick_device
from .fingerprint import cut_texts, fingerprint_weights, local_folder


def accepts(source: str, folder: Path | None) -> bool:
    """Whether this backend serves a model (``encoders.base.ENCODERS`` asks)."""
    if folder is not None:
        return (folder / "modules.json").is_file()
    return source.startswith("sentence-transformers/")


class SentenceTransformerEncoder(Encoder):
    """A text-only sentence-transformers model (e.g. all-MiniLM-L6-v2)."""

    def __init__(self, source: str, device: str | None = None, fp16: bool | None = None, batch_size: int = 64):
        from sentence_transformers import SentenceTransformer

        self.device = pick_device(device)
        self.batch_size = batch_size
        try:
            self.model = SentenceTransformer(str(source), device=self.device)
        except (OSError, ValueError) as err:
            raise ModelError(f"cannot load sentence-transformers model {source!r}: {err}") from None
        if self.device.startswith("cuda") if fp16 is None else fp16:
            self.model.half()
        self.name = str(source)
        max_length, dim = self.model.max_seq_length, self.model.get_embedding_dimension()
        if max_length is None or dim is None:
            raise ModelError(f"sentence-transformers model {source!r} declares no sequence length or dimension")
        self.max_length, self.dim = int(max_length), int(dim)
        self.modalities = frozenset({"text"})
        self.fingerprint = fingerprint_weights(local_folder(source), "sentence-transformers")

    def _encode_batch(self, batch: list, modality: str) -> tuple[np.ndarray, list[bool]]:
        texts, truncated = cut_texts(self.model.tokenizer, batch, self.max_length)  # a 10 MB text: its head only
        vectors = self.model.encode(texts, batch_size=len(texts), convert_to_numpy=True, show_progress_bar=False)
        return vectors, truncated
