"""training.gap: fresh heads trained on cached trunk features, the rest of the base untouched."""

import pytest

torch = pytest.importorskip("torch")


def blob(n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "train_text": torch.randn(5 * n, 384, generator=g).half(),
        "train_owner": torch.arange(n).repeat_interleave(5),
        "train_image": torch.rand(n, 320, 7, 7, generator=g).half(),
        "dev_text": torch.randn(n, 384, generator=g).half(),
        "dev_image": torch.rand(n, 320, 7, 7, generator=g).half(),
    }


@pytest.mark.slow
def test_fit_trains_only_the_heads_at_the_temperature_asked():
    from mixsearch.training.gap import HEAD_PREFIXES, fit, heads_state, load_base

    model, _ = load_base()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    history = fit(model, blob(), epochs=1, temperature=0.01, batch_size=4)
    assert [h["epoch"] for h in history] == [0, 1] and history[0]["loss"] is None
    assert all(h["temperature"] == 0.01 for h in history)
    assert {"centroid_distance", "t2i_R@10", "cos_text_text"} <= set(history[-1]["dev"])
    after = model.state_dict()
    changed = {k for k in after if not torch.equal(after[k], before[k])}
    assert changed and all(k.startswith(HEAD_PREFIXES) for k in changed)
    heads = heads_state(model)
    assert set(heads) == {k for k in after if k.startswith(HEAD_PREFIXES)}
    assert all(v.dtype in (torch.float16, torch.int64) for v in heads.values())

    history = fit(model, blob(), epochs=1, temperature=None, batch_size=4)  # learned, from 0.07
    assert history[0]["temperature"] == 0.07 and history[-1]["temperature"] != 0.07


def top_blob(n=8, seed=0, width=7):
    """A ``--train-top`` cache: hidden states of every position entering the last BERT layer (with
    captions of different lengths), features entering the last EfficientNet block, mirrored too."""
    g = torch.Generator().manual_seed(seed)

    def mask(rows):
        lengths = torch.randint(2, width + 1, (rows,), generator=g)
        return (torch.arange(width) < lengths.unsqueeze(1)).long()

    return {
        "text_layers": 1,
        "image_blocks": 1,
        "train_text": torch.randn(5 * n, width, 384, generator=g).half(),
        "train_text_mask": mask(5 * n),
        "train_owner": torch.arange(n).repeat_interleave(5),
        "train_image": torch.rand(n, 192, 7, 7, generator=g).half(),
        "train_image_mirrored": torch.rand(n, 192, 7, 7, generator=g).half(),
        "dev_text": torch.randn(n, width, 384, generator=g).half(),
        "dev_text_mask": mask(n),
        "dev_image": torch.rand(n, 192, 7, 7, generator=g).half(),
    }


@pytest.mark.slow
def test_fit_on_a_train_top_cache_trains_the_last_bert_layer_and_efficientnet_block_too():
    from mixsearch.training.gap import HEAD_PREFIXES, fit, heads_state, load_base, top_prefixes

    model, _ = load_base()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    history = fit(model, top_blob(), epochs=1, temperature=0.01, batch_size=4)
    assert [h["epoch"] for h in history] == [0, 1] and history[-1]["loss"] is not None
    tops = top_prefixes(model, 1, 1)
    assert tops == ("text_model.encoder.layer.5.", "vision_model.encoder.blocks.15.")
    after = model.state_dict()
    changed = {k for k in after if not torch.equal(after[k], before[k])}
    assert all(k.startswith(HEAD_PREFIXES + tops) for k in changed)
    assert any(k.startswith(tops[0]) for k in changed) and any(k.startswith(tops[1]) for k in changed)
    # train.py's rule: the trained block's BatchNorms keep the base's statistics
    assert torch.equal(
        after[f"{tops[1]}projection.project_bn.running_mean"], before[f"{tops[1]}projection.project_bn.running_mean"]
    )
    assert not any(k.startswith("vision_model.encoder.blocks.14.") for k in heads_state(model, tops))
    assert any(k.startswith(tops[1]) for k in heads_state(model, tops))


@pytest.mark.slow
def test_cache_train_top_random_image_and_text_from(tmp_path):
    import json

    import numpy as np
    from conftest import sentence, write_image

    from mixsearch.errors import UsageError
    from mixsearch.training.gap import cache

    rng = np.random.default_rng(0)
    (tmp_path / "images").mkdir()
    for split, n in (("train", 3), ("dev", 2)):
        rows = [
            {
                "image": write_image(tmp_path / "images" / f"{split}{i}.png", i + 10 * (split == "dev"), 64).name,
                "captions": [sentence(rng, 3 + j) for j in range(5)],
            }
            for i in range(n)
        ]
        for row in rows:
            row["image"] = f"images/{row['image']}"
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    random = torch.load(cache(tmp_path, tmp_path / "r.pt", train_top=True, random_image=0), weights_only=True)
    assert random["text_layers"] == 1 and random["random_image"] == 0
    assert random["train_text"].shape[:2] == random["train_text_mask"].shape and len(random["train_text"]) == 15
    assert random["train_text_mask"].sum(1).min() < random["train_text_mask"].shape[1]  # padded, lengths differ
    assert random["train_image"].shape == random["train_image_mirrored"].shape == (3, 192, 7, 7)
    assert not torch.equal(random["train_image"], random["train_image_mirrored"])

    pretrained = torch.load(
        cache(tmp_path, tmp_path / "p.pt", train_top=True, text_from=tmp_path / "r.pt"), weights_only=True
    )
    assert torch.equal(pretrained["train_text"], random["train_text"])
    assert pretrained["random_image"] is None and not torch.equal(pretrained["dev_image"], random["dev_image"])
    with pytest.raises(UsageError, match="layout"):
        cache(tmp_path, tmp_path / "x.pt", text_from=tmp_path / "r.pt")  # CLS-only cache from a full one


def test_photo_pixels_resizes_the_short_edge_and_crops_the_centre(tmp_path):
    from PIL import Image

    from mixsearch.training.gap import normalise_pixels, photo_pixels

    # 300 x 150: left third red, middle green, right third blue; at 50 px the crop keeps the middle.
    image = Image.new("RGB", (300, 150), (255, 0, 0))
    image.paste((0, 255, 0), (100, 0, 200, 150))
    image.paste((0, 0, 255), (200, 0, 300, 150))
    image.save(tmp_path / "a.jpg", quality=95)
    Image.new("RGB", (40, 80), (0, 0, 0)).save(tmp_path / "b.png")  # smaller than asked: upscaled
    pixels = photo_pixels([tmp_path / "a.jpg", tmp_path / "b.png"], 50)
    assert pixels.shape == (2, 3, 50, 50) and pixels.dtype == torch.uint8
    r, g, b = pixels[0, :, 25, 25].tolist()
    assert g > 200 and r < 60 and b < 60
    assert pixels[0, 0, 25, 0] > 150  # the crop's left edge reaches into the red third (column 25 of 100)
    assert int(pixels[1].max()) < 10
    values = normalise_pixels(pixels)
    assert values.min() >= -1 and values.max() <= 1 and values[1].max() < -0.9
