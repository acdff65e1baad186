"""``mixsearch audit``: how biased by modality an index's rankings are, plain vs calibrated, and a page of plots."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ._app import command, say


@command
def audit(
    index_dir: Path = typer.Argument(..., help="An index folder."),
    probes: Optional[Path] = typer.Option(
        None,
        help="Probe query texts: one per line, or JSON Lines with 'text'. Default: document texts drawn from "
        "the corpus (each probe's own document is dropped from its hits; their stored embeddings are used, so "
        "the model loads only for given probes).",
    ),
    n_probes: int = typer.Option(200, "--n-probes", help="Probes drawn from the corpus (or sampled from --probes)."),
    k: int = typer.Option(10, "-k", help="Top-k whose modality mix is compared with the corpus's."),
    sample: int = typer.Option(5000, help="Document parts per modality for the gap numbers and plots (seeded)."),
    seed: int = typer.Option(0, help="Seed of every sample."),
    calibration: Optional[str] = typer.Option(
        None,
        help="The calibrated side: a calibration file or 'corpus'. Default: the index's own calibration, "
        "or GR means fitted on this corpus when the index is plain.",
    ),
    html: Path = typer.Option(Path("audit.html"), "--html", help="Where to write the page of plots."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write every number as JSON here."),
    device: Optional[str] = typer.Option(None, help="cpu, cuda, ... for encoding the probes."),
) -> None:
    """Audit an index for modality bias: the gap between modalities, and how probe queries' top-k
    mix of text / image / image+text compares with the corpus's, plain vs calibrated; a verdict and
    an HTML page."""
    from ..audit import audit_index
    from ..engine import open_index
    from ..errors import UsageError

    if html.suffix.lower() not in (".html", ".htm"):
        raise UsageError(f"--html {html}: give a file name ending .html")
    index = open_index(index_dir, device=device)
    report = audit_index(
        index, probes=probes, n_probes=n_probes, k=k, sample=sample, seed=seed, calibration=calibration
    )
    typer.echo(report.summary())
    html.parent.mkdir(parents=True, exist_ok=True)
    report.write_html(html)
    say(f"page: {html}")
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        report.write_json(json_out)
        say(f"numbers: {json_out}")
