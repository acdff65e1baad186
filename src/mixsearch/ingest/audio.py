"""Audio loading: a file -> mono float32 samples at the file's own rate; resampling to a model's rate.

Decoding is ``soundfile`` (libsndfile: wav, flac, mp3, ogg/vorbis/opus, ...), resampling ``soxr``
(the SoX resampler, "high quality" setting), both in the ``[audio]`` extra (about 6 MB together).
torchaudio is not used: no release installs beside the pinned CPU torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError, require


@dataclass(frozen=True, eq=False)
class Audio:
    """Decoded audio: mono float32 samples in [-1, 1] at ``rate`` Hz, and where it came from."""

    samples: np.ndarray
    rate: int
    source: str = ""

    @property
    def seconds(self) -> float:
        """The clip's length in seconds."""
        return len(self.samples) / self.rate if self.rate else 0.0

    def at_rate(self, rate: int) -> np.ndarray:
        """The samples resampled to ``rate`` Hz (unchanged when already there)."""
        return resample(self.samples, self.rate, rate)


def load_audio(path: str | Path) -> Audio:
    """Decode an audio file to mono float32 (channels averaged), with an error that names the file."""
    soundfile = require("soundfile", "audio", "reading audio files")
    try:
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except FileNotFoundError:
        raise InputError(f"{path}: audio file not found") from None
    except (soundfile.LibsndfileError, RuntimeError, OSError, ValueError) as err:
        if not Path(path).is_file():
            raise InputError(f"{path}: audio file not found") from None
        raise InputError(f"{path}: unreadable audio ({str(err).strip() or type(err).__name__})") from None
    if data.shape[0] == 0:
        raise InputError(f"{path}: empty audio (no samples)")
    samples = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if not np.isfinite(samples).all():
        raise InputError(f"{path}: audio with NaN or infinite samples")
    return Audio(np.ascontiguousarray(samples, dtype=np.float32), int(rate), str(path))


def resample(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    """``samples`` (1-D) from ``rate`` to ``target`` Hz with soxr's high-quality filter."""
    if rate == target:
        return np.asarray(samples, dtype=np.float32)
    soxr = require("soxr", "audio", "resampling audio")
    return np.asarray(soxr.resample(np.asarray(samples, dtype=np.float32), rate, target, quality="HQ"), np.float32)
