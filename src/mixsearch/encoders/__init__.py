"""Encoders: models that turn texts and media into normalised embeddings (``base.Encoder``),
one module per backend, registered for ``load_encoder``."""

from .base import BUNDLED_MODELS, ENCODERS, Encoder, l2_normalise, load_encoder, register_encoder, resolve_model
from .onnx_query import OnnxTextEncoder, load_query_encoder

__all__ = [
    "BUNDLED_MODELS",
    "ENCODERS",
    "Encoder",
    "OnnxTextEncoder",
    "l2_normalise",
    "load_encoder",
    "load_query_encoder",
    "register_encoder",
    "resolve_model",
]
