"""Backend for transformers multi-tower encoders: a text tower and one or more towers of other
modalities embedding into one space.

- image + text: ``CLIPModel``, ``SiglipModel``, ``Siglip2Model`` (NaFlex), ``ChineseCLIPModel``,
  ``AlignModel``, ``VisionTextDualEncoderModel``, ``BlipForImageTextRetrieval`` (its contrastive
  heads), and OpenCLIP models published in transformers format;
- audio + text: ``ClapModel``;
- video + text: ``XCLIPModel``; every image model also encodes video, frame by frame.

Loading is honest: the checkpoint is loaded with the class it was saved from (``architectures``
in its config), every weight must load (a tower left at random initialisation is refused, naming
what is missing and the class whose weights the checkpoint holds), and the towers must embed into
one space of one dimension. Scores are cosines of L2-normalised embeddings for every family;
SigLIP's learnt sigmoid scale and bias are a monotone map of that cosine, so they change no ranking.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import numpy as np
from PIL import Image

from ..errors import MissingDependencyError, ModelError, UsageError
from ..ingest.audio import Audio
from ..ingest.media import load_media
from ..ingest.video import DEFAULT_FRAMES, Video, load_video
from ..vectors import normalize
from .base import Encoder, pick_device
from .fingerprint import cut_texts, fingerprint_weights, local_folder
from .onnx import OnnxTowers, export_folder, load_or_export
from .onnx_query import save_query_tokenizer

log = logging.getLogger(__name__)

#: ``torch``; ``onnx`` (ONNX Runtime, exported once per model); ``auto`` (ONNX Runtime for runs of
#: ``ONNX_MIN_ITEMS`` items or more, or once an export exists, when onnxruntime is installed).
RUNTIMES = ("auto", "torch", "onnx")
ONNX_MIN_ITEMS = 256
#: The transformers method that embeds each modality, where the model has it.
FEATURE_METHODS = {
    "text": "get_text_features",
    "image": "get_image_features",
    "audio": "get_audio_features",
    "video": "get_video_features",
}
#: A seed for the random crops some audio processors take of clips longer than their window
#: (CLAP's ``rand_trunc`` and ``fusion``): seeded per clip, a clip always encodes the same way.
AUDIO_CROP_SEED = 0
_NUMPY_RNG = threading.Lock()


class TransformersEncoder(Encoder):
    """A transformers model with a text tower and image, audio and/or video towers."""

    def __init__(
        self,
        source: str,
        device: str | None = None,
        fp16: bool | None = None,
        batch_size: int = 32,
        runtime: str = "auto",
        video_frames: int | None = None,
        cache_dir: str | Path | None = None,
    ):
        import torch
        import transformers

        transformers.logging.set_verbosity_error()  # e.g. the PIL-fallback note for image processors
        transformers.utils.logging.disable_progress_bar()
        if runtime not in RUNTIMES:
            raise UsageError(f"unknown runtime {runtime!r}; expected one of {', '.join(RUNTIMES)}")
        if video_frames is not None and (isinstance(video_frames, bool) or int(video_frames) < 1):
            raise UsageError(f"frames per video must be a positive whole number, got {video_frames!r}")
        #: Where the ONNX export goes (None: ``cache_root()``); ``open_cache`` binds it to the
        #: embedding cache's folder when it was not given
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.device = pick_device(device)
        self.fp16 = self.device.startswith("cuda") if fp16 is None else fp16
        self.batch_size = batch_size
        config = _loading(source, "configuration", lambda: transformers.AutoConfig.from_pretrained(source))
        model_class = _model_class(config)
        # weights may be stored in fp16: compute in fp32 on CPU, fp16 on GPU when asked
        dtype = torch.float16 if self.fp16 else torch.float32
        model, info = _loading(
            source, "weights", lambda: model_class.from_pretrained(source, dtype=dtype, output_loading_info=True)
        )
        check_loading(source, config, model, info)
        self.model = model.to(self.device).eval()
        self.name = str(source)
        self.model_type = config.model_type
        self._towers = _towers(self.model)
        if "text" not in self._towers or len(self._towers) < 2:
            raise ModelError(
                f"model {source!r} ({type(model).__name__}) is not a dual encoder: mixsearch needs a text tower "
                "and an image, audio or video tower embedding into one space (CLIP, SigLIP, CLAP, X-CLIP, ...)"
            )
        self.tokenizer = _loading(source, "tokenizer", lambda: transformers.AutoTokenizer.from_pretrained(source))
        self.image_processor = None
        if "image" in self._towers or "video" in self._towers:
            self.image_processor = _loading(
                source, "image processor", lambda: transformers.AutoImageProcessor.from_pretrained(source)
            )
        self.feature_extractor = None
        if "audio" in self._towers:
            self.feature_extractor = _loading(
                source, "audio feature extractor", lambda: transformers.AutoFeatureExtractor.from_pretrained(source)
            )
        text_config = getattr(config, "text_config", config)
        limits = [_position_limit(self.model, text_config), self.tokenizer.model_max_length]
        self.max_length = min(int(x) for x in limits if x and x < 1e9)
        # SigLIP was trained on text padded to the full context; padding changes its embeddings
        self.pad_to_max = config.model_type.startswith("siglip")
        # video: a model's own video tower (X-CLIP: its frame count is fixed), else the image
        # tower on frames sampled from the clip, mean-pooled
        self.video_tower = "video" in self._towers
        model_frames = getattr(getattr(config, "vision_config", None), "num_frames", None)
        if self.video_tower and model_frames:
            if video_frames is not None and int(video_frames) != int(model_frames):
                raise UsageError(f"model {source!r} takes exactly {model_frames} frames per video, not {video_frames}")
            video_frames = int(model_frames)
        self.video_frames = int(video_frames or DEFAULT_FRAMES)
        modalities = set(self._towers)
        if "image" in modalities:
            modalities.add("video")
        self.modalities = frozenset(modalities)
        self._onnx: OnnxTowers | None = None
        self.dim = self._check_dimensions(source)
        self.fingerprint = fingerprint_weights(local_folder(source), config.model_type)
        self.requested_runtime, self.runtime = runtime, "torch"
        # ONNX Runtime runs towers fed by token ids and pixel values alone: a model whose image
        # processor gives more (SigLIP2 NaFlex), or with other towers or heads, stays on PyTorch
        self._onnx_failed = not self._onnx_capable
        if runtime == "onnx" and self._onnx_failed:
            raise UsageError(
                f"runtime 'onnx': model {source!r} ({type(model).__name__}) runs only on PyTorch in mixsearch"
            )
        if runtime == "onnx" or (runtime == "auto" and export_folder(self.fingerprint, self.cache_dir).is_dir()):
            self._start_onnx(required=runtime == "onnx")

    # -- what it is ---------------------------------------------------------------------------

    def info(self) -> dict:
        """The manifest record, with the frames sampled per video (they change video embeddings)."""
        record = super().info()
        return {**record, "video_frames": self.video_frames} if "video" in self.modalities else record

    def cache_tag(self, modality: str) -> str:
        """Video embeddings depend on the frames sampled per clip: cached apart per frame count."""
        return f"video@{self.video_frames}" if modality == "video" else modality

    def load(self, modality: str, item: Any) -> Any:
        """Open one media item; a video samples this model's number of frames."""
        if modality == "video" and isinstance(item, (str, Path)):
            return load_video(item, self.video_frames)
        return load_media(modality, item)

    def _check_dimensions(self, source: str) -> int:
        """Embed a probe per tower: each must give one vector per item, all of one width."""
        probes: dict[str, Callable[[], np.ndarray]] = {
            # a probe as long as the context, so a wrong context length fails here, not on a document
            "text": lambda: self._text_features(self._tokenize(["probe " * (self.max_length + 8)])),
            "image": lambda: self._image_features([Image.new("RGB", (64, 48), (90, 140, 200))]),
            "audio": lambda: self._audio_features([Audio(np.zeros(self._audio_rate, np.float32), self._audio_rate)]),
            "video": lambda: self._video_features(
                [Video([Image.new("RGB", (64, 48), (90, 140, 200 - i)) for i in range(self.video_frames)])]
            ),
        }
        dims = {}
        for modality in self._towers:
            try:
                out = probes[modality]()
            except MissingDependencyError:
                raise
            except Exception as err:  # noqa: BLE001 - a tower that cannot run a probe is not one we can use
                raise ModelError(
                    f"model {source!r} ({type(self.model).__name__}): its {modality} tower does not run on a probe "
                    f"input ({type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}); "
                    "it is not a dual encoder mixsearch can use"
                ) from None
            if out.ndim != 2 or out.shape[0] != 1:
                raise ModelError(
                    f"model {source!r} ({type(self.model).__name__}): its {modality} features have shape "
                    f"{tuple(out.shape)}, not one vector per item; it is not a dual encoder mixsearch can use"
                )
            dims[modality] = int(out.shape[1])
        if len(set(dims.values())) > 1:
            widths = ", ".join(f"{m} {d}" for m, d in dims.items())
            raise ModelError(
                f"model {source!r} ({type(self.model).__name__}) embeds into spaces of different widths "
                f"({widths} dimensions): its towers do not share one embedding space, so their embeddings "
                "cannot be compared; use a checkpoint whose towers project to the same dimension"
            )
        return next(iter(dims.values()))

    @property
    def _audio_rate(self) -> int:
        return int(self.feature_extractor.sampling_rate)  # type: ignore[union-attr]

    @property
    def onnx_exportable(self) -> bool:
        """Whether ``runtime="onnx"`` would run this model by ONNX Runtime here (an export exists
        or can be made; CPU, float32)."""
        return not self._onnx_failed and self.device.startswith("cpu") and not self.fp16

    @property
    def _onnx_capable(self) -> bool:
        if set(self._towers) != {"text", "image"} or type(self.model).__name__ == "BlipForImageTextRetrieval":
            return False
        probe = self.image_processor(images=[Image.new("RGB", (8, 8))], return_tensors="pt")  # type: ignore[misc]
        return set(probe.keys()) == {"pixel_values"}

    # -- the ONNX Runtime path ----------------------------------------------------------------

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
            pixels = self._pixels([Image.new("RGB", (64, 48), (90, 140, 200))] * 2)["pixel_values"]
            probe = self._tokenize(["a short probe", "a longer probe sentence for the text tower"])
            self._onnx = load_or_export(
                self.model, self.fingerprint, probe, pixels, threads=torch.get_num_threads(), root=self.cache_dir
            )
            self.runtime = "onnx"
            # beside the export, the tokenizer as it tokenizes here: text queries then need
            # neither torch nor transformers (encoders.onnx_query)
            save_query_tokenizer(
                export_folder(self.fingerprint, self.cache_dir),
                self.tokenizer,
                self.max_length,
                self.pad_to_max,
                self.dim,
            )
        except MissingDependencyError:
            if required:
                raise
            self._onnx_failed = True
        except ModelError as err:
            self._onnx_failed = True
            log.warning("model %s stays on PyTorch: %s", self.name, err)

    # -- encoding -----------------------------------------------------------------------------

    def _tokenize(self, texts: list[str]) -> dict:
        padding = "max_length" if self.pad_to_max else True
        batch = self.tokenizer(texts, padding=padding, truncation=True, max_length=self.max_length, return_tensors="pt")
        # some dual encoders' forward signatures take only ids and mask
        return {k: v.to(self.device) for k, v in batch.items() if k in ("input_ids", "attention_mask")}

    def _run(self, fn: Callable[..., Any], inputs: dict) -> np.ndarray:
        import torch

        with torch.inference_mode():
            out = fn(**inputs)
        # transformers 5 returns a model output whose pooler_output is the projected embedding
        tensor = out if isinstance(out, torch.Tensor) else out.pooler_output
        return tensor.float().cpu().numpy()

    def _onnx_failed_now(self, err: Exception) -> None:
        """ONNX Runtime failed on real input (a shape its export cannot take, say): PyTorch from now on."""
        log.warning(
            "model %s: ONNX Runtime failed (%s); continuing on PyTorch", self.name, str(err).splitlines()[0][:200]
        )
        self._onnx, self._onnx_failed, self.runtime = None, True, "torch"

    def _text_features(self, inputs: dict) -> np.ndarray:
        if self._onnx is not None:
            try:
                return self._onnx.text(inputs["input_ids"].cpu().numpy(), inputs["attention_mask"].cpu().numpy())
            except Exception as err:  # noqa: BLE001 - any runtime failure falls back, never a wrong answer
                self._onnx_failed_now(err)
        return self._run(self._towers["text"], inputs)

    def _pixels(self, images: list) -> dict:
        """Every output of the image processor the image tower takes (NaFlex: the patches, their
        attention mask and the images' patch grid shapes), on the model's device."""
        out = self.image_processor(images=images, return_tensors="pt")  # type: ignore[misc]
        return self._to_model(out, self._towers["image"])

    def _to_model(self, processed: Any, fn: Callable[..., Any]) -> dict:
        import torch

        accepted = _parameters(fn)
        inputs = {}
        for key, value in processed.items():
            if key not in accepted:
                log.debug("%s: processor output %r is not an input of %s; not passed", self.name, key, fn)
                continue
            if isinstance(value, torch.Tensor):
                value = (
                    value.to(self.device, dtype=self.model.dtype)
                    if value.is_floating_point()
                    else value.to(self.device)
                )
            inputs[key] = value
        return inputs

    def _image_features(self, images: list) -> np.ndarray:
        if self._onnx is not None:
            pixels = self.image_processor(images=images, return_tensors="pt")["pixel_values"]  # type: ignore[misc]
            try:
                return self._onnx.image(pixels.numpy())
            except Exception as err:  # noqa: BLE001 - any runtime failure falls back, never a wrong answer
                self._onnx_failed_now(err)
        return self._run(self._towers["image"], self._pixels(images))

    def _audio_features(self, clips: list) -> np.ndarray:
        extractor = self.feature_extractor
        rate = int(extractor.sampling_rate)  # type: ignore[union-attr]
        window = getattr(extractor, "nb_max_samples", None)
        rows: dict[str, list] = {}
        for clip in clips:
            samples = _samples(clip, rate)
            with _seeded_numpy(AUDIO_CROP_SEED):  # the processor's crop of a long clip, fixed per clip
                out = extractor(samples, sampling_rate=rate, return_tensors="np")  # type: ignore[misc]
            if "is_longer" in out and window:
                # CLAP's processor marks a random clip of an all-short batch as long (a training
                # trick): what a clip is depends only on the clip here
                out["is_longer"] = np.array([[len(samples) > window]])
            for key, value in out.items():
                rows.setdefault(key, []).append(np.asarray(value))
        import torch

        batch = {key: torch.from_numpy(np.concatenate(values)) for key, values in rows.items()}
        return self._run(self._towers["audio"], self._to_model(batch, self._towers["audio"]))

    def _video_features(self, videos: list) -> np.ndarray:
        frames = [v.frames if isinstance(v, Video) else list(v) for v in videos]
        if self.video_tower:  # the model's own video tower (X-CLIP): all frames of a clip at once
            n = self.video_frames
            clips = [(f * n)[:n] if len(f) < n else f[:n] for f in frames]
            processed = self.image_processor(clips, return_tensors="pt")  # type: ignore[misc]
            return self._run(self._towers["video"], self._to_model(processed, self._towers["video"]))
        # the image tower on each frame; each frame normalised, then averaged per clip
        flat = [image for clip in frames for image in clip]
        vectors = np.concatenate(
            [self._image_features(flat[i : i + self.batch_size]) for i in range(0, len(flat), self.batch_size)]
        )
        vectors = normalize(vectors)
        bounds = np.cumsum([0] + [len(clip) for clip in frames])
        return np.stack([vectors[a:b].mean(axis=0) for a, b in zip(bounds[:-1], bounds[1:])])

    def _encode_batch(self, batch: list, modality: str) -> tuple[np.ndarray, list[bool]]:
        if modality == "text":
            texts, truncated = cut_texts(self.tokenizer, batch, self.max_length)  # a 10 MB text: its head only
            return self._text_features(self._tokenize(texts)), truncated
        if modality == "image":
            return self._image_features(batch), [False] * len(batch)
        if modality == "audio":
            return self._audio_features(batch), [False] * len(batch)
        if modality == "video":
            return self._video_features(batch), [False] * len(batch)
        raise ModelError(f"model {self.name!r} has no {modality} tower")


# -- loading ----------------------------------------------------------------------------------


def _loading(source: str, what: str, load: Callable[[], Any]) -> Any:
    """Run one loading step; a missing library or an unreadable file becomes a clear error."""
    try:
        return load()
    except ImportError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise MissingDependencyError(
            f"cannot load model {source!r} (its {what}): {first} (install the package it names into this "
            "environment; mixsearch's own dependencies cover SentencePiece tokenizers, and its [audio] and "
            "[video] extras audio and video decoding)"
        ) from None
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelError(f"cannot load model {source!r} (its {what}): {first}") from None


def _model_class(config: Any) -> Any:
    """The class the checkpoint was saved from (its config's ``architectures``) when transformers
    has it, else the model type's base class (``AutoModel``)."""
    import transformers

    for name in getattr(config, "architectures", None) or []:
        cls = getattr(transformers, name, None)
        if cls is not None and hasattr(cls, "from_pretrained"):
            return cls
    return transformers.AutoModel


def check_loading(source: str, config: Any, model: Any, info: dict) -> None:
    """Refuse a checkpoint whose weights do not all load into ``model``: transformers would leave
    those tensors randomly initialised, a different random tower on every load."""
    missing = list(info.get("missing_keys") or [])
    mismatched = [k[0] if isinstance(k, tuple) else k for k in info.get("mismatched_keys") or []]
    if not missing and not mismatched:
        return
    cls = type(model).__name__
    parts = []
    if missing:
        parts.append(f"missing from the checkpoint: {_modules(missing)}")
    if mismatched:
        parts.append(f"of another shape in the checkpoint: {_modules(mismatched)}")
    right = suggest_class(config, model, missing, list(info.get("unexpected_keys") or []))
    hint = (
        f'its weights are those of {right}: set "architectures": ["{right}"] in its config.json, or load it '
        f"with that class"
        if right
        else "load it with the class it was saved from, or use a checkpoint saved whole"
    )
    raise ModelError(
        f"model {source!r} does not load whole as {cls} ({'; '.join(parts)}); transformers would fill those "
        f"with random numbers, different on every load, so mixsearch refuses it: {hint}"
    )


def _modules(keys: list[str], most: int = 6) -> str:
    """Parameter names grouped by their top module: ``text_model (38 tensors), text_projection``."""
    groups: dict[str, int] = {}
    for key in keys:
        top = key.split(".")[0]
        groups[top] = groups.get(top, 0) + 1
    names = [f"{m} ({n} tensors)" if n > 1 else m for m, n in groups.items()]
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


def suggest_class(config: Any, model: Any, missing: list[str], unexpected: list[str]) -> str | None:
    """The class of the model's family whose parameters are exactly the checkpoint's, if one is."""
    import torch

    present = set(model.state_dict()) - set(missing) | set(unexpected)
    module = importlib.import_module(type(model).__module__)
    for name in getattr(module, "__all__", []):
        cls = getattr(module, name, None)
        if (
            not inspect.isclass(cls)
            or cls is type(model)
            or not hasattr(cls, "from_pretrained")
            or name.endswith("PreTrainedModel")
            or getattr(cls, "config_class", None) is not type(config)
        ):
            continue
        try:
            with torch.device("meta"):
                candidate = cast(Any, cls)(config)
        except Exception:  # noqa: BLE001 - a class that cannot be built from this config is no candidate
            continue
        if set(candidate.state_dict()) == present:
            return name
    return None


def _towers(model: Any) -> dict[str, Callable[..., Any]]:
    """The embedding function of each modality the model has."""
    if type(model).__name__ == "BlipForImageTextRetrieval":
        # BLIP's retrieval checkpoint: the contrastive (ITC) heads, the first token projected
        def text(input_ids: Any, attention_mask: Any = None) -> Any:
            hidden = model.text_encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            return model.text_proj(hidden[:, 0, :])

        def image(pixel_values: Any) -> Any:
            return model.vision_proj(model.vision_model(pixel_values=pixel_values).last_hidden_state[:, 0, :])

        return {"text": text, "image": image}
    return {m: getattr(model, name) for m, name in FEATURE_METHODS.items() if callable(getattr(model, name, None))}


def _parameters(fn: Callable[..., Any]) -> set[str]:
    return {
        name
        for name, p in inspect.signature(fn).parameters.items()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }


def _position_limit(model: Any, text_config: Any) -> int | None:
    """The longest token sequence the text tower takes: its position table, less the offset of
    RoBERTa-style embeddings (positions start after the padding index: CLAP, XLM-R based models)."""
    import torch

    limit = getattr(text_config, "max_position_embeddings", None)
    if not limit:
        return None
    for name, module in model.named_modules():
        if name.startswith("text") and name.endswith("position_embeddings") and isinstance(module, torch.nn.Embedding):
            if module.padding_idx is not None:
                return int(limit) - int(module.padding_idx) - 1
    return int(limit)


def _samples(clip: Any, rate: int) -> np.ndarray:
    """Mono float32 samples at ``rate`` of an ``Audio`` or a ``(samples, rate)`` pair."""
    if isinstance(clip, Audio):
        return clip.at_rate(rate)
    if isinstance(clip, tuple) and len(clip) == 2:
        return Audio(np.asarray(clip[0], np.float32).reshape(-1), int(clip[1])).at_rate(rate)
    raise UsageError(f"an audio item is a file path, an Audio or a (samples, rate) pair, not {type(clip).__name__}")


@contextlib.contextmanager
def _seeded_numpy(seed: int) -> Iterator[None]:
    """numpy's global generator seeded for the block, then restored (processors draw from it)."""
    with _NUMPY_RNG:
        state = np.random.get_state()
        np.random.seed(seed)
        try:
            yield
        finally:
            np.random.set_state(state)
