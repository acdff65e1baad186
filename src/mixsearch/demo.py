"""The offline demo: a mixed corpus from the bundled Flickr8k sample, indexed plain and calibrated.

Each of the 150 sample photos gives one query (a seeded held-out caption) and one document (the
photo and its other captions); the documents are split 1:1:1 into text-only, image-only and
image+text (the benchmark harness's own rules, ``bench.load_captions`` and ``bench.mixed_corpus``).
The corpus is indexed twice with the bundled ``mixclip-gap`` model, which has CLIP's modality gap —
plain CLIP, and GR-calibrated with the means shipped beside the model (fitted on the Flickr8k *train*
split) — and every query is searched in both. Then the same is done with the gap-free
``mixclip-flickr8k`` (``compare``), to show that calibration matters where there is a gap.
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
DEFAULT_MODEL = "mixclip-gap"
#: The gap-free model the demo compares with.
COMPARE_MODEL = "mixclip-flickr8k"

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
    #: the same numbers for the compared model(s), by name
    compared: dict = field(default_factory=dict)

    @property
    def text(self) -> str:
        """The side-by-side comparison, as the command prints it."""
        return "\n".join(self.lines)


def run_demo(
    model: str = DEFAULT_MODEL,
    out: str | Path = "mixsearch-demo",
    *,
    compare: str | None = COMPARE_MODEL,
    show: int = 3,
    k: int = 10,
    seed: int = 0,
) -> DemoResult:
    """Build both indexes under ``out``, search every query in both, and return the comparison.

    ``compare``: a second model indexed the same way under ``out/<compare>`` (None or ``model``
    itself: none), whose plain and calibrated numbers are printed after the main model's."""
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

    hits, summary = _rank(model, corpus, out, bench, docs, k, say)
    modality_of = {d.id: d.modality for d in docs}

    say(f"mixsearch demo — {len(docs)} Flickr8k dev photos as a mixed corpus ({rule}),")
    say(
        f"model {model}, {len(bench.queries)} queries (a held-out caption of each photo; "
        "its one relevant document is that photo's).\n"
    )
    for q in _showcase(bench.queries, bench.qrels, modality_of, show):
        _print_side_by_side(q, bench.qrels[q.id], hits["plain"][q.id][:5], hits["calibrated"][q.id][:5], say)
    _print_summary(summary, say)
    counts = {m: sum(1 for d in docs if d.modality == m) for m in ("text", "image", "multimodal")}
    say(f"  (the corpus itself: {counts['text']} text, {counts['image']} image, {counts['multimodal']} multimodal)")
    compared = {}
    if compare and compare != model:
        log.info("the same with the gap-free %s, for comparison", compare)
        _, compared[compare] = _rank(compare, corpus, out / compare, bench, docs, k, say)
        say(f"\nThe same corpus and queries with {compare}, a model without the gap:")
        _print_summary(compared[compare], say)
        say(
            f"Calibration changes NDCG@10 by {_lift(summary):+.3f} with {model} and by "
            f"{_lift(compared[compare]):+.3f} with {compare}."
        )
    seconds = time.perf_counter() - started
    say(f"\nDone in {seconds:.0f} s. Indexes: {out / 'plain'} and {out / 'calibrated'}; corpus: {corpus}")
    say(f"Next: mixsearch serve {out / 'calibrated'}        (a search page at http://127.0.0.1:8000/)")
    say(f'      mixsearch search {out / "calibrated"} "a dog jumping into the water"')
    say(f"      mixsearch search {out / 'calibrated'} {docs[-1].image} --modality text     (an image as the query)")
    say(f"      mixsearch index your-corpus.jsonl --model {model} --out your-index")
    return DemoResult(model, rule, len(bench.queries), summary, seconds, lines=lines, compared=compared)


def _rank(model, corpus, out, bench, docs, k, say):
    """Index ``corpus`` plain and calibrated with ``model`` under ``out``; every query's hits and the
    NDCG@10 / top-k modality shares of both."""
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
    summary = {}
    for name, per_query in hits.items():
        run = run_from_ranking({q: [h.id for h in hs] for q, hs in per_query.items()})
        ndcg = evaluate(bench.qrels, run, ["ndcg@10"])["ndcg@10"]
        top = [h.modality for hs in per_query.values() for h in hs]
        share = {m: top.count(m) / len(top) for m in ("text", "image", "multimodal")}
        summary[name] = {"ndcg@10": ndcg, "top10_share": share}
    return hits, summary


def _print_summary(summary, say) -> None:
    say("                         NDCG@10   share of top-10:  text   image  multimodal")
    for name, s in summary.items():
        share = s["top10_share"]
        say(
            f"  {name:<22} {s['ndcg@10']:.3f}                    "
            f"{share['text']:>5.0%}  {share['image']:>5.0%}  {share['multimodal']:>6.0%}"
        )


def _lift(summary) -> float:
    return round(summary["calibrated"]["ndcg@10"], 3) - round(summary["plain"]["ndcg@10"], 3)


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
