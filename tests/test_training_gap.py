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
