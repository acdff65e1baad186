"""Paired comparison of calibration methods in setting 3 of a bench run: per-query NDCG@10
differences from ``plain`` (none), with a seeded bootstrap 95% interval and the counts of queries
that got better or worse. Reads results.json; prints a Markdown table.

    python benchmarks/methods_paired.py benchmarks/results/methods_flickr8k_mixclip/results.json
"""

from __future__ import annotations

import json
import sys

import numpy as np


def paired_table(result: dict, metric: str = "ndcg@10", draws: int = 2000, seed: int = 0) -> str:
    """The Markdown table of every setting-3 method against ``plain``, per dataset and model."""
    lines = [f"| dataset | model | method | mean Δ{metric} vs plain | 95% bootstrap CI | better | worse |"]
    lines.append("|---|---|---|---|---|---|---|")
    for run in result["runs"]:
        rows = [r for r in run["rows"] if r["setting"] == 3]
        for model in dict.fromkeys(r["model"] for r in rows):
            mine = [r for r in rows if r["model"] == model]
            base = next(r for r in mine if r["variant"] == "plain")["per_query"]
            for r in mine:
                if r["variant"] == "plain":
                    continue
                if r.get("per_query") is None:
                    lines.append(f"| {r['dataset']} | {model} | {r['variant']} | n/a | | | |")
                    continue
                d = np.array([r["per_query"][q][metric] - base[q][metric] for q in base])
                rng = np.random.default_rng(seed)
                boots = d[rng.integers(0, len(d), (draws, len(d)))].mean(axis=1)
                lo, hi = np.percentile(boots, [2.5, 97.5])
                lines.append(
                    f"| {r['dataset']} | {model} | {r['variant']} | {d.mean():+.4f} | [{lo:+.4f}, {hi:+.4f}] "
                    f"| {(d > 0).sum()} | {(d < 0).sum()} |"
                )
    return "\n".join(lines)


if __name__ == "__main__":
    for path in sys.argv[1:]:
        print(paired_table(json.load(open(path, encoding="utf-8"))))
