"""The benchmark's configuration: grids, seed, sizes, metrics, devices."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..config import cache_root
from ..eval import DEFAULT_METRICS
from .render import RenderSettings

DEFAULT_GRID = tuple(round(i / 10, 1) for i in range(11))


@dataclass
class BenchConfig:
    """What a benchmark run does: settings and their grids, seed, sample sizes, metrics, devices."""

    settings: tuple[int, ...] = (3,)
    methods: tuple[str, ...] = ("none", "mean")  # calibration methods compared (calibration.METHODS)
    p_grid: tuple[float, ...] = DEFAULT_GRID
    alpha_grid: tuple[float, ...] = DEFAULT_GRID
    replace: str = "image"  # setting 1: "image", "audio", "video" or "screenshot"
    alpha: float = 0.5  # image+text weight in settings 1 and 3
    depth: int = 100  # hits retrieved per query
    metrics: tuple[str, ...] = DEFAULT_METRICS
    seed: int = 0
    max_queries: int | None = None
    max_calibration: int | None = 5000
    case_queries: tuple[str, ...] = ()
    n_cases: int = 5
    render: RenderSettings = field(default_factory=RenderSettings)
    device: str | None = None
    batch_size: int | None = None
    runtime: str = "auto"  # transformers models: auto, torch or onnx (see load_encoder)
    cache_dir: Path | None = None
    progress: bool = True
    # relevance thresholds (bench/thresholds.py): measured on setting 3's corpus when given
    thresholds: tuple[float, ...] = ()
    relevance_kind: str = "isotonic"  # or "platt"
    cost: bool = True  # parameters, FLOPs per item and items/s per model (bench/cost.py)

    def record(self) -> dict:
        """The configuration as JSON-ready data, for results.json."""
        out = asdict(self)
        out["render"] = self.render.describe()
        out["cache_dir"] = str(self.cache_dir or cache_root())
        return out
