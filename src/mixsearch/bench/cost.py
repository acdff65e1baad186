"""What a model costs per item: parameters per tower, FLOPs per text / image / image+text item
(counted by torch's ``FlopCounterMode`` on one representative item each), and items per second
measured on this machine. The GR-CLIP paper's "75x less compute than VLM2Vec" is then a number a
user can check for their own models.

FLOPs are counted as torch counts them: matrix products and convolutions (2 per multiply-add),
not element-wise work (norms, activations, softmax), which is a few percent of a transformer's.
An image+text item is one forward pass for a joint encoder (a VLM), a text plus an image pass for
a dual encoder (CLIP, whose document fuses the two vectors).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
from PIL import Image

from ..encoders.base import Encoder

log = logging.getLogger(__name__)

#: The representative items (``inputs`` in the report says what each was, in tokens and pixels).
TEXT = "a brown dog runs across the green grass to catch a red ball thrown by a child in the park"
IMAGE_SIZE = (224, 224)
#: Items encoded per timing (after one warm-up item), and the fewest seconds timed per modality.
TIMED_ITEMS = 8
MIN_SECONDS = 0.2
#: Words in a parameter's name that say which tower it belongs to (first match wins).
TOWER_WORDS = (
    ("unused", ("lm_head",)),  # a VLM's vocabulary head: the embedding is the hidden state before it
    ("image", ("visual", "vision", "image", "multi_modal_projector", "patch_embed")),
    ("audio", ("audio",)),
    ("video", ("video", "mit.", "prompts_generator")),
    ("decoder", ("language_model",)),  # a VLM's decoder: it reads text and image tokens alike
    ("text", ("text", "language_model", "embed_tokens", "token_embedding", "word_embeddings")),
)


def image_item() -> Image.Image:
    """A fixed 224x224 RGB image of noise (preprocessing resizes it the model's way)."""
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (IMAGE_SIZE[1], IMAGE_SIZE[0], 3), dtype=np.uint8))


def torch_module(encoder: Encoder) -> Any:
    """The encoder's torch module (its ``model``), or None for a backend without one."""
    import torch

    model = getattr(encoder, "model", None)
    return model if isinstance(model, torch.nn.Module) else None


def parameters(encoder: Encoder) -> dict[str, int] | None:
    """Parameter counts: ``total``, and per tower by the parameters' names (``text``, ``image``,
    ``audio``, ``video``; ``decoder`` for a VLM's language model, which reads text and image
    tokens alike; ``unused`` for a VLM's vocabulary head, never run; ``shared`` for the rest)."""
    model = torch_module(encoder)
    if model is None:
        return None
    out: dict[str, int] = {}
    for name, p in model.named_parameters():
        lowered = name.lower()
        tower = next((t for t, words in TOWER_WORDS if any(w in lowered for w in words)), "shared")
        out[tower] = out.get(tower, 0) + int(p.numel())
    return {"total": sum(out.values()), **dict(sorted(out.items()))}


def count_flops(run: Any) -> int:
    """FLOPs torch counts while ``run()`` runs."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        run()
    return int(counter.get_total_flops())


def _joint(encoder: Encoder) -> bool:
    return "multimodal" in getattr(encoder, "joint_modalities", ())


def _runs(encoder: Encoder, n: int) -> dict[str, Any]:
    """A function encoding ``n`` representative items, per item kind the model takes."""
    image = image_item()
    runs: dict[str, Any] = {}
    if "text" in encoder.modalities:
        runs["text"] = lambda: encoder.encode([TEXT] * n, "text", progress=False)
    if "image" in encoder.modalities:
        runs["image"] = lambda: encoder.encode([image] * n, "image", progress=False)
    if {"text", "image"} <= encoder.modalities:
        if _joint(encoder):
            runs["multimodal"] = lambda: encoder.encode_multimodal([TEXT] * n, [image] * n)  # type: ignore[attr-defined]
        else:
            runs["multimodal"] = lambda: (runs["text"](), runs["image"]())
    return runs


def _text_tokens(encoder: Encoder) -> int | None:
    tokenizer = getattr(encoder, "tokenizer", None)
    try:
        return len(tokenizer(TEXT)["input_ids"]) if tokenizer is not None else None
    except Exception:  # noqa: BLE001 - a tokenizer of another shape: the count is only a description
        return None


def model_cost(encoder: Encoder, timed_items: int = TIMED_ITEMS, min_seconds: float = MIN_SECONDS) -> dict:
    """Parameters, FLOPs per item and measured items/s of ``encoder`` (see the module docstring)."""
    tokens = _text_tokens(encoder)
    text = f"a {len(TEXT.split())}-word caption"
    text += f" ({tokens} tokens with the tokenizer's specials)" if tokens else ""
    image = f"a {IMAGE_SIZE[0]}x{IMAGE_SIZE[1]} RGB image, preprocessed as the model does"
    inputs = {"text": text, "image": image}
    inputs["multimodal"] = (
        "the caption and the image in one prompt (one forward pass)"
        if _joint(encoder)
        else "the caption and the image, each through its tower (two passes, fused)"
    )
    flops: dict[str, int | None] = {}
    speed: dict[str, float] = {}
    for kind, run in _runs(encoder, 1).items():
        try:
            counted = count_flops(run) if torch_module(encoder) is not None else 0
        except Exception as err:  # noqa: BLE001 - a model torch cannot trace counts as unknown
            log.warning("cost: FLOPs of a %s item not counted: %s", kind, err)
            counted = 0
        flops[kind] = counted or None  # 0: the work ran outside torch (ONNX Runtime)
    for kind, run in _runs(encoder, timed_items).items():
        items, started = 0, time.perf_counter()
        while True:
            run()
            items += timed_items
            seconds = time.perf_counter() - started
            if seconds >= min_seconds:
                break
        speed[kind] = round(items / seconds, 2)
    return {
        "parameters": parameters(encoder),
        "flops": flops,
        "inputs": {k: inputs[k] for k in flops},
        "items_per_s": speed,
        "device": getattr(encoder, "device", "cpu"),
        "runtime": getattr(encoder, "runtime", "torch"),
        "note": "FLOPs: torch.utils.flop_counter (matrix products; 2 per multiply-add); items/s: batches of "
        f"{timed_items} copies of the item, encoded without the embedding cache",
    }


def cost_table(models: dict[str, dict]) -> list[str]:
    """``report.md`` lines: one row per model with its cost (models measured without a cost omitted)."""
    rows = [(name, info["cost"]) for name, info in models.items() if info.get("cost")]
    if not rows:
        return []

    def giga(x: int | float | None) -> str:
        return "n/a" if not x else f"{x / 1e9:.3g}"

    lines = [
        "| model | parameters (M) | per tower (M) | GFLOPs text | GFLOPs image | GFLOPs image+text | "
        "items/s text | items/s image | items/s image+text |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, c in rows:
        params = c.get("parameters") or {}
        towers = ", ".join(f"{t} {n / 1e6:.3g}" for t, n in params.items() if t != "total") or "n/a"
        f, s = c.get("flops", {}), c.get("items_per_s", {})
        lines.append(
            f"| `{name}` | {params.get('total', 0) / 1e6:.3g} | {towers} | "
            + " | ".join(giga(f.get(k)) for k in ("text", "image", "multimodal"))
            + " | "
            + " | ".join(str(s.get(k, "n/a")) for k in ("text", "image", "multimodal"))
            + " |"
        )
    first = rows[0][1]
    lines += ["", f"Inputs: {'; '.join(f'{k}: {v}' for k, v in first.get('inputs', {}).items())}. {first['note']}."]
    return lines
