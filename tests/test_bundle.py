"""mixclip-gap ships only its heads: assembled over mixclip-flickr8k's towers, loaded by its short name."""

import json

import numpy as np
import pytest
from safetensors.numpy import load_file

from mixsearch.config import MODELS_DIR
from mixsearch.encoders.bundle import assemble
from mixsearch.errors import ModelError
from mixsearch.training.gap import HEAD_PREFIXES

GAP = MODELS_DIR / "mixclip-gap"


def test_the_assembled_model_is_the_base_with_the_heads_laid_over(tmp_path):
    built = assemble(GAP, tmp_path)
    assert built.name == "mixclip-gap" and (built / "config.json").is_file()
    assert assemble(GAP, tmp_path) == built  # built once, then reused
    full = load_file(str(built / "model.safetensors"))
    base = load_file(str(MODELS_DIR / "mixclip-flickr8k" / "model.safetensors"))
    heads = load_file(str(GAP / "heads.safetensors"))
    assert set(full) == set(base) and heads and all(k.startswith(HEAD_PREFIXES) for k in heads)
    for key, value in full.items():
        expected = heads.get(key, base[key])
        assert value.dtype == base[key].dtype and np.array_equal(value, expected.astype(value.dtype)), key


def test_a_bundle_with_tensors_its_base_lacks_is_refused(tmp_path):
    from safetensors.numpy import save_file

    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "bundle.json").write_text(json.dumps({"base": "mixclip-flickr8k"}))
    save_file({"no_such.weight": np.zeros(2, dtype=np.float16)}, str(folder / "heads.safetensors"))
    with pytest.raises(ModelError, match="does not have"):
        assemble(folder, tmp_path / "built")
    (folder / "bundle.json").write_text("{}")
    with pytest.raises(ModelError, match="not a model bundle"):
        assemble(folder, tmp_path / "built")


@pytest.mark.slow
def test_load_encoder_loads_it_by_its_bundled_name(tmp_path, monkeypatch):
    from mixsearch import load_encoder

    monkeypatch.setenv("MIXSEARCH_CACHE_DIR", str(tmp_path))
    gap, base = load_encoder("mixclip-gap"), load_encoder("mixclip-flickr8k")
    assert gap.name == "mixclip-gap" and gap.fingerprint != base.fingerprint and gap.dim == base.dim == 512
    texts = ["a dog runs on the beach", "two children play football in a park"]
    t_gap, t_base = gap.encode(texts), base.encode(texts)
    assert t_gap.shape == t_base.shape == (2, 512) and not np.allclose(t_gap, t_base, atol=1e-2)
