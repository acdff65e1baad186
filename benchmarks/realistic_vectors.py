"""One million vectors that look like real embeddings, derived from real ones.

The real embeddings: the bundled model ``mixclip-flickr8k`` encodes the 7,000 Flickr8k photos,
one caption of each (a second caption of 1,000 of them is kept apart as queries), and the 5,183
SciFact abstracts (title + abstract); image+text documents are fused like the engine fuses them
(mean of the normalised parts, renormalised). They are cached under the mixsearch cache folder
(``$MIXSEARCH_CACHE_DIR/bench-scale/``), never in git.

Deriving N documents: each is a random convex mixture of a real embedding and one or two of its
nearest real neighbours *of the same modality* (Dirichlet weights favouring the first), plus a
little isotropic noise, renormalised. Mixing neighbours (not random pairs) keeps the modality
clusters, the local neighbourhood structure and the spectrum, where random mixtures would
collapse towards the modality means. ``compare`` reports the nearest-neighbour score
distribution of the real set against a same-sized sample of the derived set.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

FLICKR = Path(__file__).resolve().parents[2] / "shared" / "data" / "flickr8k"
SCIFACT = Path(__file__).resolve().parents[2] / "shared" / "data" / "scifact"
MODEL = "mixclip-flickr8k"


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def real_embeddings(cache: Path, flickr: Path = FLICKR, scifact: Path = SCIFACT) -> dict[str, np.ndarray]:
    """``{"image", "text", "multimodal", "queries"}`` raw normalised embeddings (cached)."""
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"{MODEL}-real.npz"
    if path.is_file():
        return dict(np.load(path))
    for folder in (flickr, scifact):
        if not folder.is_dir():
            raise SystemExit(f"{folder} is absent: the scale benchmark derives its vectors from the shared data")
    from mixsearch import load_encoder

    encoder = load_encoder(MODEL)
    rows = [json.loads(line) for name in ("train.jsonl", "dev.jsonl") for line in (flickr / name).open()]
    images = encoder.encode([str(flickr / r["image"]) for r in rows], "image", progress=True)
    captions = encoder.encode([r["captions"][0] for r in rows], "text", progress=True)
    query_rows = np.random.default_rng(0).choice(len(rows), 1000, replace=False)
    queries = encoder.encode([rows[i]["captions"][1] for i in query_rows], "text", progress=True)
    abstracts = [json.loads(line) for line in (scifact / "corpus.jsonl").open()]
    science = encoder.encode([f"{a['title']}. {a['text']}" for a in abstracts], "text", progress=True)
    out = {
        "image": unit(images),
        "text": unit(np.vstack([captions[: len(rows) // 2], science])),  # half the captions stand alone
        "multimodal": unit(unit(images[len(rows) // 2 :]) + unit(captions[len(rows) // 2 :])),
        "queries": unit(queries),
    }
    np.savez(path, **out)
    return out


def derive(
    real: dict[str, np.ndarray], n: int, out: Path, seed: int = 0, noise: float = 0.02, chunk: int = 100_000
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``n`` derived documents (a float32 memory map at ``out``) and their fields: ``modality``
    (in the real set's proportions) and ``bucket`` (0-99, uniform: a 1% metadata filter)."""
    rng = np.random.default_rng(seed)
    modalities = [m for m in ("text", "image", "multimodal")]
    sizes = np.array([len(real[m]) for m in modalities], dtype=float)
    which = rng.choice(len(modalities), n, p=sizes / sizes.sum())
    dim = real["text"].shape[1]
    vectors = np.lib.format.open_memmap(out, "w+", np.float32, (n, dim))
    neighbours = {m: _neighbours(real[m], 8) for m in modalities}
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        for j, m in enumerate(modalities):
            rows = np.flatnonzero(which[start:stop] == j)
            base = real[m]
            seeds = rng.integers(0, len(base), len(rows))
            partners = neighbours[m][seeds[:, None], rng.integers(0, neighbours[m].shape[1], (len(rows), 2))]
            weights = rng.dirichlet([4.0, 1.0, 1.0], len(rows)).astype(np.float32)
            weights[rng.random(len(rows)) < 0.5, 2] = 0.0  # half mix two embeddings, half three
            mixed = (
                weights[:, :1] * base[seeds]
                + weights[:, 1:2] * base[partners[:, 0]]
                + weights[:, 2:] * base[partners[:, 1]]
            )
            mixed += noise * rng.normal(size=mixed.shape).astype(np.float32) / np.sqrt(dim)
            vectors[start + rows] = unit(mixed)
    vectors.flush()
    fields = {"modality": np.array(modalities)[which], "bucket": rng.integers(0, 100, n).astype(np.int64)}
    return vectors, fields


def _neighbours(x: np.ndarray, k: int) -> np.ndarray:
    """Each row's ``k`` nearest other rows (inner product)."""
    out = np.empty((len(x), k), dtype=np.int64)
    for start in range(0, len(x), 4096):
        scores = x[start : start + 4096] @ x.T
        scores[np.arange(len(scores)), np.arange(start, start + len(scores))] = -np.inf
        out[start : start + 4096] = np.argpartition(-scores, k, axis=1)[:, :k]
    return out


def nn_profile(x: np.ndarray, sample: int = 1000, seed: int = 1) -> dict:
    """Quantiles of the top-1 and 10th nearest-neighbour scores of ``sample`` rows of ``x``
    within ``x``, the mean score of random pairs, and the spectrum's top-10 variance share."""
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(x), min(sample, len(x)), replace=False)
    scores = x[rows] @ np.asarray(x).T
    scores[np.arange(len(rows)), rows] = -np.inf
    top = -np.sort(-np.partition(scores, -10, axis=1)[:, -10:], axis=1)
    pairs = rng.integers(0, len(x), (5000, 2))
    random_pair = np.einsum("ij,ij->i", x[pairs[:, 0]], x[pairs[:, 1]])
    centred = np.asarray(x[rng.choice(len(x), min(20000, len(x)), replace=False)])
    centred = centred - centred.mean(axis=0)
    eig = np.linalg.svd(centred, compute_uv=False) ** 2
    q = [0.1, 0.5, 0.9]
    return {
        "top1_quantiles_10_50_90": [round(float(v), 3) for v in np.quantile(top[:, 0], q)],
        "top10_quantiles_10_50_90": [round(float(v), 3) for v in np.quantile(top[:, 9], q)],
        "random_pair_mean": round(float(random_pair.mean()), 3),
        "spectrum_top10_share": round(float(eig[:10].sum() / eig.sum()), 3),
    }


def compare(real: dict[str, np.ndarray], derived: np.ndarray, seed: int = 2) -> dict:
    """The real documents' profile against a same-sized random sample of the derived ones."""
    docs = np.vstack([real[m] for m in ("text", "image", "multimodal")])
    sample = np.sort(np.random.default_rng(seed).choice(len(derived), len(docs), replace=False))
    return {
        "real_documents": len(docs),
        "real": nn_profile(docs),
        "derived_sample": nn_profile(np.asarray(derived[sample])),
    }
