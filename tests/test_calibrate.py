"""The calibration maths against a direct numpy reading of DEVELOPERS.md's formulas."""

import numpy as np
import pytest
from conftest import random_unit

from mixsearch import CalibrationError, Calibrator, UsageError, load_calibration, save_calibration

D = 24


@pytest.fixture
def data():
    rng = np.random.default_rng(7)
    # three clusters: the modality gap in miniature
    return {
        "query": random_unit(rng, 50, D, 0.8),
        "text": random_unit(rng, 60, D, 0.5),
        "image": random_unit(rng, 70, D, -0.7),
    }


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_single_modality_formulas(data):
    cal = Calibrator().fit(data)
    m = {role: x.mean(axis=0) for role, x in data.items()}
    for role, x in data.items():
        np.testing.assert_allclose(cal.means_[role], m[role], atol=1e-6)
        np.testing.assert_allclose(cal.transform(x, role), unit(x - m[role]), atol=1e-5)
    assert cal.counts_ == {"query": 50, "text": 60, "image": 70}


def test_fused_document_formula(data):
    cal = Calibrator(alpha=0.3).fit(data)
    t, i = data["text"][:10], data["image"][:10]
    expected = unit(0.3 * (t - data["text"].mean(0)) + 0.7 * (i - data["image"].mean(0)))
    np.testing.assert_allclose(cal.transform_documents({"text": t, "image": i}), expected, atol=1e-5)
    # alpha given per call overrides; alpha 1 is the text part alone, 0 the image part alone
    np.testing.assert_allclose(
        cal.transform_documents({"text": t, "image": i}, alpha=1.0), cal.transform(t, "text"), atol=1e-5
    )
    np.testing.assert_allclose(
        cal.transform_documents({"text": t, "image": i}, alpha=0.0), cal.transform(i, "image"), atol=1e-5
    )


def test_mixed_rows_use_each_documents_own_parts(data):
    cal = Calibrator().fit(data)
    t, i = data["text"][:3].copy(), data["image"][:3].copy()
    present = {"text": np.array([True, False, True]), "image": np.array([False, True, True])}
    fused = cal.transform_documents({"text": t, "image": i}, present)
    np.testing.assert_allclose(fused[0], cal.transform(t[:1], "text")[0], atol=1e-5)  # text only
    np.testing.assert_allclose(fused[1], cal.transform(i[1:2], "image")[0], atol=1e-5)  # image only
    both = unit(0.5 * (t[2] - cal.means_["text"]) + 0.5 * (i[2] - cal.means_["image"]))
    np.testing.assert_allclose(fused[2], both, atol=1e-5)


def test_none_is_plain_clip(data):
    cal = Calibrator("none").fit(data)
    assert cal.means_ == {}
    q, t, i = data["query"][:5], data["text"][:5], data["image"][:5]
    np.testing.assert_allclose(cal.transform(q, "query"), unit(q), atol=1e-6)
    np.testing.assert_allclose(cal.transform_documents({"text": t, "image": i}), unit(0.5 * t + 0.5 * i), atol=1e-5)


def test_calibration_closes_the_gap(data):
    """After calibration, query-text and query-image similarities are no longer separated."""
    plain, cal = Calibrator("none"), Calibrator().fit(data)

    def gap(c):
        q = c.transform(data["query"], "query")
        return (q @ c.transform(data["text"], "text").T).mean() - (q @ c.transform(data["image"], "image").T).mean()

    assert abs(gap(cal)) < 0.05 < abs(gap(plain))


def test_streaming_equals_batch(data):
    rng = np.random.default_rng(0)
    streamed = Calibrator()
    for role, x in data.items():
        cuts = np.sort(rng.choice(np.arange(1, len(x)), 4, replace=False))
        for part in np.split(x, cuts):
            streamed.partial_fit(part, role)
    batch = Calibrator().fit(data)
    for role in data:
        np.testing.assert_allclose(streamed.means_[role], batch.means_[role], atol=1e-7)
    assert streamed.counts_ == batch.counts_


def test_save_load_round_trip(tmp_path, data):
    cal = Calibrator(
        alpha=0.25,
        fitted_for={"name": "tiny", "fingerprint": "abc123", "dim": str(D)},
        provenance={"fitted_on": "unit test"},
    ).fit(data)
    path = save_calibration(cal, tmp_path / "cal.safetensors")
    back = load_calibration(path)
    assert (back.method, back.alpha, back.counts_, back.fitted_for) == ("mean", 0.25, cal.counts_, cal.fitted_for)
    assert back.provenance == {"fitted_on": "unit test"}
    for role in data:
        np.testing.assert_array_equal(back.means_[role], cal.means_[role])
    none = load_calibration(save_calibration(Calibrator("none"), tmp_path / "none.safetensors"))
    assert none.method == "none" and none.means_ == {}


def test_refuses_other_models_and_dimensions(tmp_path, data):
    cal = Calibrator(fitted_for={"name": "model-a", "fingerprint": "aaaa"}).fit(data)
    cal.check_model("aaaa")
    with pytest.raises(CalibrationError, match="model-a.*cannot be applied.*model-b"):
        cal.check_model("bbbb", "model-b")
    with pytest.raises(CalibrationError, match="dimension 8 does not match"):
        cal.transform(np.ones((2, 8), np.float32), "query")
    with pytest.raises(CalibrationError, match="no 'audio' mean .* 'mixsearch calibrate'"):
        cal.transform(np.ones((2, D), np.float32), "audio")
    # parameters are checked by fit (scikit-learn's contract), not by the constructor
    with pytest.raises(UsageError, match="unknown calibration method"):
        Calibrator("median").fit(data)
    with pytest.raises(UsageError, match=r"alpha must be in \[0, 1\], got 1.5"):
        Calibrator(alpha=1.5).fit(data)
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    with pytest.raises(CalibrationError, match="junk.safetensors: not a calibration file"):
        load_calibration(tmp_path / "junk.safetensors")


def test_zero_rows_stay_zero():
    cal = Calibrator("none")
    out = cal.transform(np.zeros((2, 4), np.float32), "query")
    assert np.all(out == 0) and np.all(np.isfinite(out))
