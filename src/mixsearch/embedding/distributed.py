"""Encoding on a Ray cluster: the items missing from the embedding cache are encoded by a Ray Data
actor pool (one model per actor, a GPU per actor when the cluster has GPUs), and the driver writes
what comes back into the *same* content-keyed ``EmbeddingCache`` as the single-process pipeline,
batch by batch as it streams in. The single-machine steps that follow (``embed``, calibration,
fusion, the index) then find every item in the cache and run unchanged.

Texts travel in the dataset; media travel as paths, which every worker must be able to open (a
shared file system, mounted at the same path on every node). A worker reads the file, checks that
its content hashes to the key the driver computed (so a different file at the same path on another
node is caught, not cached), loads it with the model's loader and encodes it. An item a worker
cannot read comes back with its error; it is not cached, so the single-process pass that follows
tries it again here and reports it as a ``Problem`` exactly as a run without Ray does (a corrupt
image skips its document; the build goes on). The cache remembers such items, so a rebuild leaves
them to the local pass instead of starting a cluster job for them again.

The driver hashes each item twice (here, to find what is missing, and again in the local pass),
reading media files twice: cheap beside encoding, and it keeps ``embed`` unchanged. Ray is optional
(``pip install 'mixsearch[ray]'``) and imported only when used.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..encoders.base import Encoder
from ..errors import InputError, ModelError, UsageError, require
from ..progress import progress_bar
from .cache import NOT_FINITE, EmbeddingCache, content_key

log = logging.getLogger(__name__)

#: ``RayOptions.address`` values with a meaning of their own (anything else is a cluster address).
SPECIAL_ADDRESSES = ("auto", "local")
#: Dataset blocks per worker: enough that a slow block does not leave the other workers idle.
BLOCKS_PER_WORKER = 8


@dataclass(frozen=True)
class RayOptions:
    """Where and how widely to encode on Ray.

    ``address``: None joins the Ray that ``ray.init()`` finds (``RAY_ADDRESS``, or a cluster
    started on this machine with ``ray start``) and otherwise starts one on this machine; ``"auto"``
    joins a running cluster and fails if there is none; ``"local"`` starts a new Ray on this
    machine; ``"ray://host:10001"`` (Ray Client) or ``"host:6379"`` names a cluster. When Ray is
    already initialised in this process (by the caller, or a test), it is used as it is.
    ``workers``: encoder actors, each loading the model once (default: one per GPU of the
    cluster, or one per CPU when it has none).
    """

    address: str | None = None
    workers: int | None = None

    def __post_init__(self) -> None:
        if self.workers is not None and (isinstance(self.workers, bool) or int(self.workers) < 1):
            raise UsageError(f"Ray workers must be a positive whole number, got {self.workers!r}")


def ray_options(spec: RayOptions | str | bool | None) -> RayOptions | None:
    """``build_index``'s ``ray=`` argument as ``RayOptions`` (None: no Ray). A string is an
    address (``auto``, ``local``, ``ray://host:10001``); True is the default ``RayOptions()``."""
    if spec is None or spec is False:
        return None
    if spec is True:
        return RayOptions()
    if isinstance(spec, RayOptions):
        return spec
    if isinstance(spec, str) and spec.strip():
        return RayOptions(address=spec.strip())
    raise UsageError(
        f"ray: expected None, True, an address ('auto', 'local', 'ray://host:10001') or RayOptions, got {spec!r}"
    )


@dataclass
class RayRun:
    """What an encoding run on Ray did.

    ``encoded``: distinct items encoded and cached; ``rows``: the items (with repeats) they fill;
    ``failed``: distinct items the workers could not encode (left for the local pass to report);
    ``errors``: the first few of their messages.
    """

    encoded: int = 0
    rows: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    workers: int = 0
    seconds: float = 0.0

    def note(self) -> str:
        """One line for a build report."""
        if not (self.encoded or self.failed):
            return "Ray: nothing to encode on the cluster (every item was cached, or failed there before)"
        line = f"Ray: {self.encoded} items encoded by {self.workers} workers in {self.seconds:.1f} s"
        if self.failed:
            line += (
                f"; {self.failed} could not be encoded there and were tried again in this process "
                f"(first: {self.errors[0]})"
            )
        return line


def loading_options(encoder: Encoder) -> dict[str, Any]:
    """The ``load_encoder`` options that rebuild ``encoder`` elsewhere (the device is the worker's own)."""
    options: dict[str, Any] = {"batch_size": encoder.batch_size}
    runtime = getattr(encoder, "requested_runtime", "auto")
    if runtime != "auto":
        options["runtime"] = runtime
    if "video" in encoder.modalities and getattr(encoder, "video_frames", None):
        options["video_frames"] = encoder.video_frames  # type: ignore[attr-defined]
    return options


def fill_cache_on_ray(
    encoder: Encoder,
    items: Mapping[str, Sequence[str | Path]],
    cache: EmbeddingCache,
    *,
    options: RayOptions | None = None,
    progress: bool | None = None,
) -> RayRun:
    """Encode on Ray every item of ``items`` (per modality: texts, or media paths) that is not in
    ``cache`` yet, writing each batch into ``cache`` as it arrives.

    Items whose content key cannot be computed here (a missing file), and items a worker could not
    encode in an earlier run (the cache remembers them), are left out: the local pass tries them
    and reports them. Nothing starts Ray when everything is cached already. The workers load
    ``encoder.name`` with ``loading_options(encoder)`` and must compute the same fingerprint, or
    the run stops with a ``ModelError`` before anything is cached.
    """
    options = options or RayOptions()
    started = time.perf_counter()
    rows, counts = _missing(encoder, items, cache)
    run = RayRun()
    if not rows:
        return run
    ray = require("ray", "ray", "encoding on a Ray cluster")
    data = require("ray.data", "ray", "encoding on a Ray cluster")
    started_here = not ray.is_initialized()
    if started_here:
        _init(ray, options.address)
    try:
        workers, per_actor = _pool(ray, options.workers)
        run.workers = workers
        totals = {m: sum(1 for r in rows if r["modality"] == m) for m in items}
        log.info("encoding %d items on Ray with %d workers (%s each)", len(rows), workers, per_actor)
        # at least a block per worker (a small job still uses them all), else about one per batch
        batches = math.ceil(len(rows) / encoder.batch_size)
        blocks = min(len(rows), max(workers, min(batches, workers * BLOCKS_PER_WORKER)))
        dataset = data.from_items(rows, override_num_blocks=blocks).map_batches(
            _EncodeBatches,
            fn_constructor_kwargs={
                "name": encoder.name,
                "options": loading_options(encoder),
                "fingerprint": encoder.fingerprint,
                "dim": encoder.dim,
                "totals": totals,
            },
            batch_size=encoder.batch_size,
            batch_format="numpy",
            compute=data.ActorPoolStrategy(size=workers),
            **per_actor,
        )
        del rows
        context = data.DataContext.get_current()
        shown = context.enable_progress_bars, context.print_on_execution_start
        context.enable_progress_bars = context.print_on_execution_start = False  # the driver shows its own bar
        try:
            with progress_bar(sum(totals.values()), "encoding on Ray", progress) as bar:
                for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
                    _take(batch, cache, counts, run)
                    bar.update(len(batch["key"]))
        finally:
            context.enable_progress_bars, context.print_on_execution_start = shown
    finally:
        if started_here:
            ray.shutdown()
    run.seconds = time.perf_counter() - started
    return run


def _missing(
    encoder: Encoder, items: Mapping[str, Sequence[str | Path]], cache: EmbeddingCache
) -> tuple[list[dict[str, str]], dict[str, int]]:
    """The dataset rows (key, modality, item) of the distinct items not in the cache, texts
    shortest first (batches pad to similar lengths), and how many items each key stands for."""
    rows: list[dict[str, str]] = []
    counts: dict[str, int] = {}
    for modality, group in items.items():
        encoder.check_modality(modality)
        tag = encoder.cache_tag(modality)
        first: dict[str, str] = {}
        known: dict[str | Path, str | None] = {}
        for item in group:
            if item not in known:
                try:
                    known[item] = content_key(tag, item)
                except InputError:
                    known[item] = None  # the local pass reports it
            key = known[item]
            if key is not None:
                counts[key] = counts.get(key, 0) + 1
                # workers run in folders of their own: a media path travels absolute
                first.setdefault(key, str(item) if modality == "text" else os.path.abspath(item))
        hits = cache.get_many(list(first))
        failed = cache.failed_remotely([key for key in first if key not in hits])
        todo = [(key, item) for key, item in first.items() if key not in hits and key not in failed]
        for key in [*hits, *failed]:
            del counts[key]
        if modality == "text":
            todo.sort(key=lambda pair: len(pair[1]))
        rows += [{"key": key, "modality": modality, "item": item} for key, item in todo]
    return rows, counts


def _init(ray: Any, address: str | None) -> None:
    """Start or join Ray as ``RayOptions.address`` says, quietly (no dashboard, worker logs kept
    on the workers: each item's error comes back in the data)."""
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError) as err:
        raise ModelError(f"cannot start or join Ray at {address or 'its default address'!r}: {err}") from None


def _pool(ray: Any, workers: int | None) -> tuple[int, dict[str, float]]:
    """How many actors, and the resources of each: a GPU each when the cluster has GPUs, else
    one CPU each (a share of one when more workers are asked for than there are CPUs)."""
    resources = ray.cluster_resources()
    gpus, cpus = int(resources.get("GPU", 0)), float(resources.get("CPU", 1))
    if gpus:
        return workers or gpus, {"num_gpus": 1}
    count = workers or max(1, int(cpus))
    return count, {"num_cpus": min(1.0, cpus / count)}


def _take(batch: Mapping[str, np.ndarray], cache: EmbeddingCache, counts: dict[str, int], run: RayRun) -> None:
    """Write one batch of results into the cache; stop on a worker that could not load the model."""
    fatal = [str(f) for f in batch["fatal"] if f]
    if fatal:
        raise ModelError(fatal[0])
    keys = [str(k) for k in batch["key"]]
    errors = [str(e) for e in batch["error"]]
    finite = [bool(np.isfinite(np.asarray(v, dtype=np.float32)).all()) for v in batch["vector"]]
    errors = [e or ("" if finite[i] else NOT_FINITE) for i, e in enumerate(errors)]  # never cached
    good = [i for i, e in enumerate(errors) if not e]
    if good:
        cache.put_many([keys[i] for i in good], batch["vector"][good], batch["truncated"][good])
        run.encoded += len(good)
        run.rows += sum(counts[keys[i]] for i in good)
    bad = [i for i, e in enumerate(errors) if e]
    if bad:
        cache.mark_failed_remotely([keys[i] for i in bad], [errors[i] for i in bad])
        run.failed += len(bad)
        run.errors += [errors[i] for i in bad[: 5 - len(run.errors)]]


class _EncodeBatches:
    """A Ray Data actor: loads the model once, then encodes the batches it is given.

    A model that cannot be loaded, or loads with another fingerprint than the driver's, is not
    raised here (Ray would retry the actor and print its traceback on every node): each batch
    comes back marked ``fatal`` with the reason, and the driver stops with it.
    """

    def __init__(self, name: str, options: dict, fingerprint: str, dim: int, totals: dict[str, int]):
        from ..encoders import load_encoder

        self.dim, self.totals, self.fatal = dim, dict(totals), ""
        self.encoder: Encoder | None = None
        try:
            import torch

            # Ray gives a GPU actor its GPU as the only visible one
            device = "cuda" if torch.cuda.is_available() else "cpu"
            self.encoder = load_encoder(name, device=device, **options)
        except Exception as err:  # noqa: BLE001 - any loading failure is reported to the driver
            self.fatal = f"a Ray worker cannot load model {name!r}: {type(err).__name__}: {err}"
            return
        if self.encoder.fingerprint != fingerprint:
            self.fatal = (
                f"a Ray worker loaded model {name!r} with fingerprint {self.encoder.fingerprint}, but this "
                f"process has {fingerprint}: the workers see other weight or preprocessing files under that "
                "name; give every node the same model (a shared folder, or the same hub snapshot)"
            )

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Encode one batch: rows of (key, modality, item) -> (key, vector, truncated, error, fatal)."""
        keys, modalities, items = batch["key"], batch["modality"], batch["item"]
        n = len(keys)
        vectors = np.zeros((n, self.dim), dtype=np.float32)
        truncated = np.zeros(n, dtype=bool)
        errors = np.full(n, "", dtype=object)
        fatal = np.full(n, self.fatal, dtype=object)
        if self.encoder is not None and not self.fatal:
            for modality in dict.fromkeys(str(m) for m in modalities):
                rows = [i for i in range(n) if modalities[i] == modality]
                self._encode(modality, rows, keys, items, vectors, truncated, errors)
        return {"key": keys, "vector": vectors, "truncated": truncated, "error": errors, "fatal": fatal}

    def _encode(
        self,
        modality: str,
        rows: list[int],
        keys: np.ndarray,
        items: np.ndarray,
        vectors: np.ndarray,
        truncated: np.ndarray,
        errors: np.ndarray,
    ) -> None:
        encoder = self.encoder
        assert encoder is not None
        if modality in self.totals:  # the runtime a single-process run of these items would choose
            encoder.expect(self.totals.pop(modality), modality)
        loaded, batch = [], []
        for i in rows:
            item = str(items[i])
            if modality == "text":
                loaded.append(i)
                batch.append(item)
                continue
            try:
                # the file a worker opens must be the one the driver hashed (same path, same bytes)
                if content_key(encoder.cache_tag(modality), item) != keys[i]:
                    raise InputError(f"{item}: this file differs on the Ray worker from the driver's copy")
                batch.append(encoder.load(modality, item))
                loaded.append(i)
            except InputError as err:
                errors[i] = str(err)
        if batch:
            out, flags = encoder.encode_with_flags(batch, modality, batch_size=len(batch), progress=False)
            vectors[loaded], truncated[loaded] = out, flags
