"""Dev-split figures for a model card, measured with mixsearch's own engine and evaluation code.

    python benchmarks/model_card_metrics.py [--model mixclip-flickr8k] [--flickr8k ../shared/data/flickr8k]

On the 1,000 Flickr8k dev photos, each paired with its first caption:
- text→image Recall@1/5/10: the photos indexed as image documents, each first caption a query;
- image→text Recall@1/5/10: the first captions indexed as text documents, each photo a query;
  both plain (no calibration: pure cross-modal retrieval), scored by ``evaluate`` (pytrec_eval);
- the modality gap on the raw embeddings: distance between the image and text centroids, and
  mean cosine of matched and unmatched pairs within and across modalities, before and after the
  model's shipped GR calibration (queries take the query mean, photos the image mean).

Writes benchmarks/results/<model>_model_card.json and .md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from mixsearch import Document, Query, build_index, load_calibration, load_encoder
from mixsearch.calibration import shipped_calibration
from mixsearch.eval import evaluate, run_from_ranking

HERE = Path(__file__).resolve().parent
RECALLS = ["recall@1", "recall@5", "recall@10"]


def retrieval(encoder, docs, queries, query_part, work: Path) -> dict:
    """Recall@K of queries (``{id: text or image path}``) against ``docs``; relevant = same id."""
    idx, _ = build_index(docs, work, encoder, calibration="none", progress=False)
    ids = list(queries)
    items = [queries[i] for i in ids]
    hits = idx.search(items if query_part == "text" else [Query(image=x) for x in items], k=10)
    run = run_from_ranking({f"q-{i}": [h.id for h in hs] for i, hs in zip(ids, hits)})
    qrels = {f"q-{i}": {i: 1} for i in ids}
    return {m: round(v, 4) for m, v in evaluate(qrels, run, RECALLS).items()}, idx


def gap(images: np.ndarray, texts: np.ndarray) -> dict:
    """Centroid distance and mean cosines; row k of each is the same photo."""
    n = len(images)
    off = ~np.eye(n, dtype=bool)
    cross = images @ texts.T
    return {
        "centroid_distance": round(float(np.linalg.norm(images.mean(0) - texts.mean(0))), 4),
        "cos_image_text_matched": round(float(np.diag(cross).mean()), 4),
        "cos_image_text_unmatched": round(float(cross[off].mean()), 4),
        "cos_text_text_unmatched": round(float((texts @ texts.T)[off].mean()), 4),
        "cos_image_image_unmatched": round(float((images @ images.T)[off].mean()), 4),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mixclip-flickr8k")
    parser.add_argument("--calibration", type=Path, default=None, help="default: the file shipped with the model")
    parser.add_argument("--flickr8k", type=Path, default=HERE.parent.parent / "shared" / "data" / "flickr8k")
    parser.add_argument("--work", type=Path, default=Path("/tmp/mixsearch-model-card"))
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    rows = [json.loads(line) for line in (args.flickr8k / "dev.jsonl").read_text().splitlines() if line.strip()]
    ids = [Path(r["image"]).stem for r in rows]
    image_of = {i: args.flickr8k / r["image"] for i, r in zip(ids, rows)}
    caption_of = {i: r["captions"][0] for i, r in zip(ids, rows)}
    encoder = load_encoder(args.model)

    t2i, image_idx = retrieval(
        encoder, [Document(id=i, image=image_of[i]) for i in ids], caption_of, "text", args.work / "images"
    )
    i2t, text_idx = retrieval(
        encoder,
        [Document(id=i, text=caption_of[i]) for i in ids],
        {i: str(p) for i, p in image_of.items()},
        "image",
        args.work / "texts",
    )
    # raw embeddings as the indexes stored them, aligned by photo id
    images = np.asarray(image_idx.raw()["image"])[[image_idx.ids.index(i) for i in ids]]
    texts = np.asarray(text_idx.raw()["text"])[[text_idx.ids.index(i) for i in ids]]
    cal_path = args.calibration or shipped_calibration(args.model)
    result = {
        "model": args.model,
        "fingerprint": encoder.fingerprint,
        "photos": len(ids),
        "pairs": "each dev photo with its first caption",
        "text_to_image": t2i,
        "image_to_text": i2t,
        "gap_plain": gap(images, texts),
    }
    if cal_path:
        cal = load_calibration(cal_path)
        cal.check_model(encoder.fingerprint, encoder.name)
        result["gap_calibrated"] = gap(cal.transform(images, "image"), cal.transform(texts, "query"))
        result["calibration"] = {"file": str(cal_path), "counts": cal.counts_, "provenance": cal.provenance}
    result["seconds"] = round(time.perf_counter() - started, 1)

    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"{Path(args.model).name}_model_card"
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=2))
    (args.out / f"{stem}.md").write_text(markdown(result))
    print(markdown(result))


def markdown(r: dict) -> str:
    lines = [
        f"## {r['model']} on Flickr8k dev ({r['photos']} photos, {r['pairs']})",
        "",
        "| direction | R@1 | R@5 | R@10 |",
        "|---|---:|---:|---:|",
    ]
    for name, key in (("text → image", "text_to_image"), ("image → text", "image_to_text")):
        v = r[key]
        lines.append(f"| {name} | {v['recall@1']:.3f} | {v['recall@5']:.3f} | {v['recall@10']:.3f} |")
    lines += ["", "| modality gap (raw embeddings) | plain | GR-calibrated |", "|---|---:|---:|"]
    for key in r["gap_plain"]:
        after = r.get("gap_calibrated", {}).get(key)
        lines.append(
            f"| {key.replace('_', ' ')} | {r['gap_plain'][key]:.4f} | {'' if after is None else f'{after:.4f}'} |"
        )
    lines += [
        "",
        f"Measured by `benchmarks/model_card_metrics.py` in {r['seconds']} s "
        "(retrieval scored by pytrec_eval through mixsearch.eval; plain = no calibration).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
