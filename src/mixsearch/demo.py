"""The offline demo: a mixed corpus from the bundled Flickr8k sample, indexed plain and calibrated.

Each of the 150 sample photos gives one query (a seeded held-out caption) and one document (the
photo and its other captions); the documents are split 1:1:1 into text-only, image-only and
image+text (the benchmark harness's own rules, ``bench.load_captions`` and ``bench.mixed_corpus``).
The corpus is indexed twice with the bundled model — plain CLIP, and GR-calibrated with the means
shipped beside the model (fitted on the Flickr8k *train* split) — and every query is searched in both.
"""

from __future__ import annotations

import json
import logging
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

from .bench import load_captions, mixed_corpus
from .calibration import shipped_calibration
from .encoders import load_encoder
from .engine import build_index
from .eval import evaluate, run_from_ranking
from .types import MODALITY_TAGS as MARK

SAMPLE = Path(__file__).parent / "data" / "flickr8k_sample" / "captions.jsonl"
DEFAULT_MODEL = "mixclip-flickr8k"

log = logging.getLogger(__name__)


@dataclass
class DemoResult:
    """The demo's numbers (``summary``: NDCG@10 and top-10 modality shares per index) and its text."""

    model: str
    corpus_rule: str
    queries: int
    summary: dict
    seconds: float
    lines: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        """The side-by-side comparison, as the command prints it."""
        return "\n".join(self.lines)


def run_demo(
    model: str = DEFAULT_MODEL, out: str | Path = "mixsearch-demo", *, show: int = 3, k: int = 10, seed: int = 0
) -> DemoResult:
    """Build both indexes under ``out``, search every query in both, and return the comparison."""
    started = time.perf_counter()
    lines: list[str] = []
    say = lines.append
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    bench = load_captions(SAMPLE, seed=seed)
    docs, rule = mixed_corpus(bench, seed)
    corpus = out / "corpus.jsonl"
    with corpus.open("w", encoding="utf-8") as f:  # the file a user can re-index or edit
        for d in docs:
            record = {"id": d.id, "text": d.text, "image": str(d.image) if d.image else None}
            f.write(json.dumps({key: v for key, v in record.items() if v is not None}) + "\n")

    encoder = load_encoder(model)
    calibration = shipped_calibration(model)
    if calibration is None:
        say(f"note: {model} ships no calibration file; the calibrated index fits document means on this corpus")
    log.info("indexing %d documents twice (plain, calibrated) with %s", len(docs), model)
    indexes = {
        "plain": build_index(corpus, out / "plain", encoder, calibration="none", progress=False)[0],
        "calibrated": build_index(corpus, out / "calibrated", encoder, calibration=calibration, progress=False)[0],
    }
    texts = [q.text or "" for q in bench.queries]  # every captions query has a text
    hits = {name: dict(zip((q.id for q in bench.queries), idx.search(texts, k=k))) for name, idx in indexes.items()}
    modality_of = {d.id: d.modality for d in docs}
    summary = {}
    for name, per_query in hits.items():
        run = run_from_ranking({q: [h.id for h in hs] for q, hs in per_query.items()})
        ndcg = evaluate(bench.qrels, run, ["ndcg@10"])["ndcg@10"]
        top = [h.modality for hs in per_query.values() for h in hs]
        share = {m: top.count(m) / len(top) for m in ("text", "image", "multimodal")}
        summary[name] = {"ndcg@10": ndcg, "top10_share": share}

    say(f"mixsearch demo — {len(docs)} Flickr8k dev photos as a mixed corpus ({rule}),")
    say(
        f"model {model}, {len(bench.queries)} queries (a held-out caption of each photo; "
        "its one relevant document is that photo's).\n"
    )
    for q in _showcase(bench.queries, bench.qrels, modality_of, show):
        _print_side_by_side(q, bench.qrels[q.id], hits["plain"][q.id][:5], hits["calibrated"][q.id][:5], say)
    say("                         NDCG@10   share of top-10:  text   image  multimodal")
    for name, s in summary.items():
        share = s["top10_share"]
        say(
            f"  {name:<22} {s['ndcg@10']:.3f}                    "
            f"{share['text']:>5.0%}  {share['image']:>5.0%}  {share['multimodal']:>6.0%}"
        )
    counts = {m: sum(1 for d in docs if d.modality == m) for m in ("text", "image", "multimodal")}
    say(f"  (the corpus itself: {counts['text']} text, {counts['image']} image, {counts['multimodal']} multimodal)")
    seconds = time.perf_counter() - started
    say(f"\nDone in {seconds:.0f} s. Indexes: {out / 'plain'} and {out / 'calibrated'}; corpus: {corpus}")
    say(f"Next: mixsearch serve {out / 'calibrated'}        (a search page at http://127.0.0.1:8000/)")
    say(f'      mixsearch search {out / "calibrated"} "a dog jumping into the water"')
    say(f"      mixsearch search {out / 'calibrated'} {docs[-1].image} --modality text     (an image as the query)")
    say(f"      mixsearch index your-corpus.jsonl --model {model} --out your-index")
    return DemoResult(model, rule, len(bench.queries), summary, seconds, lines)


def _showcase(queries, qrels, modality_of, n):
    """One query whose relevant document is text-only, one image-only, one image+text (seeded order)."""
    chosen, seen = [], set()
    for q in queries:
        m = modality_of[next(iter(qrels[q.id]))]
        if m not in seen:
            chosen.append(q)
            seen.add(m)
    return chosen[:n]


def _print_side_by_side(query, relevant, plain, calibrated, log, width=44) -> None:
    log(f'Query: "{query.text}"')
    log(f"  {'plain CLIP':<{width}}   {'GR-calibrated':<{width}}")
    for a, b in zip(plain, calibrated):
        log(f"  {_cell(a, relevant, width)}   {_cell(b, relevant, width)}")
    log("  (T text, I image, M multimodal: image+text; * the relevant document)\n")


def _cell(hit, relevant, width) -> str:
    star = "*" if hit.id in relevant else " "
    head = f"{hit.rank}.{star}{MARK[hit.modality]:<2} {hit.score:+.2f} "
    room = width - len(head)
    # a file name has no spaces to shorten at: cut it instead
    what = textwrap.shorten(hit.text, room, placeholder="…") if hit.text else f"[photo {Path(hit.image).stem}]"[:room]
    return head + what.ljust(room)
