"""Backend for generative (VLM) embedders: a vision-language model whose last hidden state, at the
last token of an instruction prompt, is the embedding.

- ``vlm2vec``: VLM2Vec (TIGER-Lab), Phi-3.5-V (``phi3_v``, the paper's baseline; its modeling code
  ships with the checkpoint, so it needs ``trust_remote_code=True``) or Qwen2-VL;
- ``gme``: GME (Alibaba-NLP, ``gme-Qwen2-VL-2B/7B-Instruct``), Qwen2-VL with a chat prompt;
- ``e5v``: E5-V (``royokong/e5-v``), LLaVA-NeXT with its "in one word" prompts.

The family comes from the model's name (``vlm2vec``, ``gme``, ``e5-v`` in it) or its config's
``model_type`` (``phi3_v`` -> vlm2vec, ``qwen2_vl`` -> gme, ``llava_next`` -> e5v), or is given.
Queries and documents take different prompts (``encode_query``); an image+text item is one prompt
with the image and the text, encoded jointly in one forward pass (``encode_multimodal``).

Every family pools the hidden state of the last real token (right padding: a batch gives the
embeddings each item gets alone) and L2-normalises it. Images of a batch are sorted by size and run
in groups of similar size, so a batch pads little (``SIZE_RATIO``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError, UsageError
from .base import Encoder, pick_device
from .fingerprint import cut_texts, fingerprint_weights, local_folder
from .transformers import _loading, check_loading

log = logging.getLogger(__name__)

#: Images in one forward pass differ in pixel count by at most this factor (sorted by size first).
SIZE_RATIO = 1.5
#: Tokens of a document's or query's text kept (the prompt and image tokens come on top).
MAX_TEXT_TOKENS = 512
#: Model types this backend serves, and the family each defaults to.
MODEL_TYPES = {"phi3_v": "vlm2vec", "qwen2_vl": "gme", "llava_next": "e5v"}
DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclass(frozen=True)
class Family:
    """A generative embedder's prompts. Each template has ``{text}`` and/or ``{image}`` (the
    model's image placeholder); ``query_*`` for queries, ``doc_*`` for documents."""

    name: str
    query_text: str
    query_image: str
    query_multimodal: str
    doc_text: str
    doc_image: str
    doc_multimodal: str

    def template(self, modality: str, query: bool) -> str:
        """The prompt of a ``text``, ``image`` or ``multimodal`` item, as a query or a document."""
        return str(getattr(self, f"{'query' if query else 'doc'}_{modality}"))


def _gme(instruction: str, content: str) -> str:
    return (
        f"<|im_start|>system\n{instruction}<|im_end|>\n<|im_start|>user\n{content}<|im_end|>\n"
        "<|im_start|>assistant\n<|endoftext|>"
    )


def _e5v(content: str) -> str:
    return (
        f"<|start_header_id|>user<|end_header_id|>\n\n{content}<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n \n"
    )


_GME_DOC = "You are a helpful assistant."
FAMILIES = {
    # VLM2Vec's MMEB instructions (its retrieval tasks: a caption query for images; documents plain)
    "vlm2vec": Family(
        "vlm2vec",
        query_text="Find me an everyday image that matches the given caption: {text}",
        query_image="{image} Find a caption that describes the given image.",
        query_multimodal="{image} Represent the given image with the following question: {text}",
        doc_text="{text}",
        doc_image="{image} Represent the given image.",
        doc_multimodal="{image} Represent the given image with the following caption: {text}",
    ),
    # GME's gme_inference.py: an instruction as the system turn for queries, the default otherwise
    "gme": Family(
        "gme",
        query_text=_gme("Find an image that matches the given text.", "{text}"),
        query_image=_gme("Find a text that describes the given image.", "{image}"),
        query_multimodal=_gme("Find an image and text that match the given image and text.", "{image}{text}"),
        doc_text=_gme(_GME_DOC, "{text}"),
        doc_image=_gme(_GME_DOC, "{image}"),
        doc_multimodal=_gme(_GME_DOC, "{image}{text}"),
    ),
    # E5-V: the same prompts for queries and documents (its one-word summaries)
    "e5v": Family(
        "e5v",
        query_text=_e5v("{text}\nSummary above sentence in one word: "),
        query_image=_e5v("{image}\nSummary above image in one word: "),
        query_multimodal=_e5v("{image}\n{text}\nSummary above image and sentence in one word: "),
        doc_text=_e5v("{text}\nSummary above sentence in one word: "),
        doc_image=_e5v("{image}\nSummary above image in one word: "),
        doc_multimodal=_e5v("{image}\n{text}\nSummary above image and sentence in one word: "),
    ),
}
FAMILY_ALIASES = {"e5-v": "e5v", "gme-qwen2-vl": "gme"}


def read_config(source: str, folder: Path | None) -> dict:
    """A model's config.json as a dict (without transformers: Phi-3.5-V's needs remote code),
    from its folder or the local hub cache; ``{}`` when there is none here."""
    path: Any = folder / "config.json" if folder is not None else None
    if path is None:
        try:
            from huggingface_hub import try_to_load_from_cache

            path = try_to_load_from_cache(source, "config.json")
        except Exception:  # noqa: BLE001 - not a hub id, or no cache: not ours to claim
            return {}
    if not isinstance(path, (str, Path)) or not Path(path).is_file():
        return {}
    try:
        return dict(json.loads(Path(path).read_text()))
    except (OSError, ValueError):
        return {}


def accepts(source: str, folder: Path | None) -> bool:
    """A Qwen2-VL, LLaVA-NeXT or Phi-3.5-V checkpoint (by its config's ``model_type``)."""
    return read_config(source, folder).get("model_type") in MODEL_TYPES


def family_of(source: str, model_type: str, family: str | None = None) -> Family:
    """The family asked for, else the one the model's name says, else its model type's."""
    if family is None:
        lowered = Path(source).name.lower() if Path(source).exists() else source.lower()
        family = next((f for f in ("vlm2vec", "gme", "e5-v", "e5v") if f in lowered), MODEL_TYPES[model_type])
    name = FAMILY_ALIASES.get(family.lower(), family.lower())
    if name not in FAMILIES:
        raise UsageError(f"unknown VLM family {family!r}; expected one of {', '.join(FAMILIES)}")
    return FAMILIES[name]


class VLMEncoder(Encoder):
    """A generative embedder: prompts per modality and role, last-token pooling, normalised."""

    #: Queries take their own prompts: the engine encodes them with ``encode_query``.
    query_prompts = True
    #: Image+text items this model encodes as one input (``encode_multimodal``).
    joint_modalities = frozenset({"multimodal"})
    processor: Any = None  # the model's processor (Qwen2-VL: None, its image processor apart)
    image_processor: Any = None

    def __init__(
        self,
        source: str,
        device: str | None = None,
        fp16: bool | None = None,
        batch_size: int = 8,
        family: str | None = None,
        dtype: str | None = None,
        trust_remote_code: bool = False,
        max_text_tokens: int = MAX_TEXT_TOKENS,
    ):
        import torch
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
        folder = Path(source) if Path(source).is_dir() else None
        raw = read_config(source, folder)
        model_type = raw.get("model_type")
        if model_type not in MODEL_TYPES:
            raise ModelError(
                f"model {source!r}: model type {model_type!r} is not a VLM embedder mixsearch knows "
                f"({', '.join(MODEL_TYPES)})"
            )
        self.model_type = str(model_type)
        self.family = family_of(source, self.model_type, family)
        self.device = pick_device(device)
        self.dtype_name = _dtype_name(dtype, fp16, self.device)
        torch_dtype = getattr(torch, self.dtype_name)
        self.batch_size = batch_size
        self.name = str(source)
        if self.model_type == "phi3_v":
            self._load_phi3_v(source, folder, torch_dtype, trust_remote_code)
        else:
            config = _loading(source, "configuration", lambda: transformers.AutoConfig.from_pretrained(source))
            cls = getattr(
                transformers,
                "Qwen2VLForConditionalGeneration"
                if self.model_type == "qwen2_vl"
                else "LlavaNextForConditionalGeneration",
            )
            model, info = _loading(
                source, "weights", lambda: cls.from_pretrained(source, dtype=torch_dtype, output_loading_info=True)
            )
            check_loading(source, config, model, info)
            self.model = model.to(self.device).eval()
            self.config = config
            self.tokenizer = _loading(source, "tokenizer", lambda: transformers.AutoTokenizer.from_pretrained(source))
            if self.model_type == "qwen2_vl":
                # Qwen2-VL's processor needs torchvision for video: its tokenizer and image processor
                # suffice, the image placeholder expanded here as the processor does
                self.processor = None
                self.image_processor = _loading(
                    source, "image processor", lambda: transformers.AutoImageProcessor.from_pretrained(source)
                )
                self.image_token = "<|vision_start|><|image_pad|><|vision_end|>"
            else:
                self.processor = _loading(
                    source, "processor", lambda: transformers.AutoProcessor.from_pretrained(source)
                )
                self.tokenizer = self.processor.tokenizer
                self.image_token = str(self.processor.image_token)
        self.tokenizer.padding_side = "right"  # pooled at the last real token: batch-independent
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        text_config = getattr(self.config, "text_config", self.config)
        self.max_length = int(min(max_text_tokens, getattr(text_config, "max_position_embeddings", 1 << 30)))
        self.dim = int(text_config.hidden_size)
        self.modalities = frozenset({"text", "image"})
        self.fingerprint = fingerprint_weights(local_folder(source), f"{self.model_type}:{self.family.name}")

    def _load_phi3_v(self, source: str, folder: Path | None, dtype: Any, trust_remote_code: bool) -> None:
        """VLM2Vec's Phi-3.5-V: transformers has no such class; the checkpoint's own modeling and
        processing files (``modeling_phi3_v.py``, ``processing_phi3_v.py``) are run, if allowed."""
        import transformers

        where = local_folder(source) if folder is None else folder
        needed = ("modeling_phi3_v.py", "processing_phi3_v.py")
        missing = [n for n in needed if not (where / n).is_file()]
        if missing:
            raise ModelError(
                f"model {source!r} is a Phi-3.5-V (VLM2Vec) checkpoint, whose model code ships with it, but "
                f"{', '.join(missing)} is not in {where}: download the whole checkpoint (e.g. "
                "`huggingface-cli download TIGER-Lab/VLM2Vec-Full`, which also fetches "
                "microsoft/Phi-3.5-vision-instruct's code it names) and load it from there"
            )
        if not trust_remote_code:
            raise ModelError(
                f"model {source!r} is a Phi-3.5-V (VLM2Vec) checkpoint: it runs Python code that ships with "
                f"the checkpoint ({', '.join(needed)}); read it, then load it with "
                "VLMEncoder(source, trust_remote_code=True)"
            )
        self.config = _loading(
            source, "configuration", lambda: transformers.AutoConfig.from_pretrained(source, trust_remote_code=True)
        )
        self.model = (
            _loading(
                source,
                "weights",
                lambda: transformers.AutoModelForCausalLM.from_pretrained(source, dtype=dtype, trust_remote_code=True),
            )
            .to(self.device)
            .eval()
        )
        self.processor = _loading(
            source,
            "processor",
            lambda: transformers.AutoProcessor.from_pretrained(source, trust_remote_code=True, num_crops=4),
        )
        self.tokenizer = self.processor.tokenizer
        self.image_token = "<|image_1|>"

    # -- what it is ---------------------------------------------------------------------------

    def info(self) -> dict:
        """The manifest record, with the family (its prompts change the embeddings) and dtype."""
        return {**super().info(), "family": self.family.name, "dtype": self.dtype_name}

    # -- encoding -----------------------------------------------------------------------------

    def encode_multimodal(self, texts: Sequence[str], images: Sequence[Any], *, query: bool = False) -> np.ndarray:
        """Image+text items encoded jointly: one prompt holding the image and its text, one vector
        each (L2-normalised); the same as ``encode(list(zip(texts, images)), "multimodal")``."""
        if len(texts) != len(images):
            raise UsageError(f"{len(texts)} texts for {len(images)} images: give one text per image")
        return self.encode(list(zip(texts, images)), "multimodal", query=query)

    def check_modality(self, modality: str) -> None:
        """Texts, images, and ``multimodal`` items: (text, image) pairs encoded jointly."""
        if modality != "multimodal":
            super().check_modality(modality)

    def load(self, modality: str, item: Any) -> Any:
        """Open one item; a ``multimodal`` item is a (text, image) pair, its image opened."""
        if modality == "multimodal":
            text, image = item
            return str(text), super().load("image", image)
        return super().load(modality, item)

    def _encode_batch(self, batch: list, modality: str, query: bool = False) -> tuple[np.ndarray, list[bool]]:
        if modality == "text":
            texts, truncated = self._cut(batch)
            return self._forward(self._prompts("text", query, texts), None), truncated
        if modality == "image":
            return self._by_size([None] * len(batch), batch, "image", query), [False] * len(batch)
        if modality == "multimodal":
            texts, truncated = self._cut([text for text, _ in batch])
            return self._by_size(texts, [image for _, image in batch], "multimodal", query), truncated
        raise ModelError(f"model {self.name!r} has no {modality} tower")

    def _cut(self, texts: list[str]) -> tuple[list[str], list[bool]]:
        """Texts cut to ``max_length`` tokens of their own (the prompt is not counted)."""
        heads, truncated = cut_texts(self.tokenizer, texts, self.max_length)
        for i, cut in enumerate(truncated):
            if cut:
                ids = self.tokenizer(heads[i], add_special_tokens=False)["input_ids"][: self.max_length]
                heads[i] = self.tokenizer.decode(ids)
        return heads, truncated

    def _prompts(self, modality: str, query: bool, texts: Sequence[str | None]) -> list[str]:
        template = self.family.template(modality, query)
        return [template.format(text=t or "", image=self.image_token) for t in texts]

    def _by_size(self, texts: Sequence[str | None], images: list, modality: str, query: bool) -> np.ndarray:
        """Images sorted by pixel count, run in groups within ``SIZE_RATIO`` of each other."""
        pixels = [int(im.width) * int(im.height) for im in images]
        order = sorted(range(len(images)), key=lambda i: pixels[i])
        out = np.zeros((len(images), self.dim), np.float32)
        group: list[int] = []
        for i in [*order, None]:
            if group and (i is None or pixels[i] > SIZE_RATIO * pixels[group[0]]):
                prompts = self._prompts(modality, query, [texts[j] for j in group])
                out[group] = self._forward(prompts, [images[j].convert("RGB") for j in group])
                group = []
            if i is not None:
                group.append(i)
        return out

    def _inputs(self, prompts: list[str], images: list | None) -> dict:
        """Model inputs of prompts (each with one image placeholder when ``images`` are given)."""
        import torch

        if self.model_type == "qwen2_vl":
            extra: dict = {}
            if images:
                extra = dict(self.image_processor(images=images, return_tensors="pt"))
                merge = int(self.image_processor.merge_size) ** 2
                counts = [int(g.prod()) // merge for g in extra["image_grid_thw"]]
                prompts = [p.replace("<|image_pad|>", "<|image_pad|>" * n, 1) for p, n in zip(prompts, counts)]
            batch = dict(self.tokenizer(prompts, padding=True, return_tensors="pt"))
            if images:
                batch["mm_token_type_ids"] = (batch["input_ids"] == int(self.config.image_token_id)).int()
            batch.update(extra)
        elif images:
            batch = dict(self.processor(text=prompts, images=images, padding=True, return_tensors="pt"))
        else:
            batch = dict(self.processor(text=prompts, padding=True, return_tensors="pt"))
        dtype = next(self.model.parameters()).dtype
        return {
            k: (v.to(self.device, dtype=dtype) if v.is_floating_point() else v.to(self.device))
            for k, v in batch.items()
            if isinstance(v, torch.Tensor)
        }

    def _forward(self, prompts: list[str], images: list | None) -> np.ndarray:
        """The last hidden state at each prompt's last real token."""
        import torch

        inputs = self._inputs(prompts, images)
        with torch.inference_mode():
            if self.model_type == "phi3_v":  # remote code: the causal LM's last hidden layer
                hidden = self.model(**inputs, output_hidden_states=True).hidden_states[-1]
            else:  # the base model, without the vocabulary head
                hidden = self.model.model(**inputs).last_hidden_state
        last = inputs["attention_mask"].sum(dim=1) - 1
        pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
        return pooled.float().cpu().numpy()


def _dtype_name(dtype: str | None, fp16: bool | None, device: str) -> str:
    """``dtype`` as asked; else float16 when ``fp16``; else bfloat16 on a GPU that has it, float32 on CPU."""
    if dtype is not None and dtype != "auto":
        if dtype not in DTYPES:
            raise UsageError(f"unknown dtype {dtype!r}; expected one of {', '.join(DTYPES)}")
        return dtype
    if fp16:
        return "float16"
    if device.startswith("cuda"):
        import torch

        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    return "float32"
