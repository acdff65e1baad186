"""``mixsearch index``: encode, calibrate and index a corpus."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ._app import (
    DEFAULT_MODEL,
    BatchSize,
    CacheDir,
    Device,
    Runtime,
    Threads,
    VideoFrames,
    command,
    parse_index_options,
    say,
)


@command
def index(
    corpus: Path = typer.Argument(..., help="JSON Lines (id, text, image, ...) or a folder of files."),
    out: Path = typer.Option(..., "--out", "-o", help="Index folder to write."),
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help="Hugging Face id, local folder or bundled name."),
    calibration: Optional[str] = typer.Option(
        None,
        help="Calibration file; 'shipped' for the means bundled with the model; 'none' for plain CLIP. "
        "Default: fit document means on this corpus.",
    ),
    alpha: float = typer.Option(0.5, help="Weight of the text part of image+text documents."),
    method: Optional[str] = typer.Option(
        None,
        help="Calibration method: none, mean, standardize, shift, zscore, rrf (README 'Calibration methods'). "
        "Default: mean when fitting on this corpus, else the calibration file's own.",
    ),
    index_kind: str = typer.Option("exact", "--index", help="Vector index kind: exact (default) or hnsw."),
    index_option: list[str] = typer.Option(
        [], "--index-option", help="A setting of the index kind, NAME=VALUE (repeatable), e.g. M=32."
    ),
    dtype: Optional[str] = typer.Option(
        None,
        "--dtype",
        help="How vectors are stored: float32 (default) or float16 (half the memory; index option dtype).",
    ),
    backend: str = typer.Option("local", "--backend", help="Where vectors live: local (the index folder) or milvus."),
    uri: Optional[str] = typer.Option(
        None, "--uri", help="--backend milvus: a Milvus Lite file (*.db) or server address (http://host:19530)."
    ),
    device: Device = None,
    batch_size: BatchSize = None,
    cache_dir: CacheDir = None,
    threads: Threads = None,
    runtime: Runtime = "auto",
    video_frames: VideoFrames = None,
    ray: bool = typer.Option(
        False, "--ray", help="Encode on a Ray cluster: the one Ray finds (RAY_ADDRESS), else a local Ray."
    ),
    ray_address: Optional[str] = typer.Option(
        None, "--ray-address", help="Ray cluster to encode on (implies --ray): auto, local, ray://HOST:10001 ..."
    ),
    ray_workers: Optional[int] = typer.Option(
        None, "--ray-workers", help="Encoder actors on Ray (implies --ray; default: one per GPU, else per CPU)."
    ),
) -> None:
    """Encode, calibrate and index a corpus. Rerun after an interruption: it resumes."""
    from .. import Calibrator, build_index, load_calibration, load_encoder
    from ..calibration import shipped_calibration
    from ..encoders.base import set_threads
    from ..engine.store import check_out_folder
    from ..errors import InputError
    from ..index.base import check_index_options
    from ..ingest import check_corpus

    # everything that can be wrong with the arguments fails here, in a second, before torch and the
    # model load (seconds to minutes): the corpus, the folder, the calibration, the index settings
    Calibrator(method or "mean", alpha=alpha).check_params()  # an impossible alpha or method is a usage error
    check_corpus(corpus)
    check_out_folder(out, corpus)
    if calibration == "shipped":
        shipped = shipped_calibration(model)
        if shipped is None:
            raise InputError(f"model {model!r} ships no calibration file; fit one with 'mixsearch calibrate'")
        calibration = str(shipped)
    if calibration not in (None, "none", "corpus"):
        load_calibration(calibration)  # a missing or foreign file; its fit to the model is checked once loaded
    options = parse_index_options(index_option)
    if dtype is not None:
        options["dtype"] = dtype
    index_kind, options = _backend(backend, uri, index_kind, options)
    check_index_options(index_kind, options)
    on_ray = None
    if ray or ray_address is not None or ray_workers is not None:
        from ..embedding.distributed import RayOptions
        from ..errors import require

        on_ray = RayOptions(address=ray_address, workers=ray_workers)
        require("ray.data", "ray", "--ray (encoding on a Ray cluster)")
    set_threads(threads)
    encoder = load_encoder(
        model, device=device, batch_size=batch_size, runtime=runtime, video_frames=video_frames, cache_dir=cache_dir
    )
    _, report = build_index(
        corpus,
        out,
        encoder,
        calibration=calibration,
        alpha=alpha,
        method=method,
        kind=index_kind,
        index_options=options,
        cache_dir=cache_dir,
        ray=on_ray,
    )
    say(report.summary())
    say(f'index written to {out}; search it with: mixsearch search {out} "your query"')


def _backend(backend: str, uri: Optional[str], kind: str, options: dict[str, object]) -> tuple[str, dict[str, object]]:
    """``--backend milvus --uri URI`` is ``--index milvus --index-option uri=URI``."""
    from ..errors import UsageError

    if backend not in ("local", "milvus"):
        raise UsageError(f"--backend {backend!r}: expected local or milvus")
    if backend == "local":
        if uri is not None:
            raise UsageError("--uri names a Milvus database: give it with --backend milvus")
        return kind, options
    if kind not in ("exact", "milvus"):
        raise UsageError(
            f"--backend milvus keeps vectors in Milvus: choose its index with --index-option index_type=..., "
            f"not --index {kind}"
        )
    if uri is None and "uri" not in options:
        raise UsageError("--backend milvus needs --uri: a Milvus Lite file (*.db) or a server address")
    return "milvus", {**options, **({"uri": uri} if uri is not None else {})}
