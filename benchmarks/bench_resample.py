"""Resampling for audio encoders (issue 12): soxr (the choice) against scipy's polyphase resampler.

    python benchmarks/bench_resample.py [--clip PATH]

For a real clip (default: the first Clotho clip in ../shared/data/clotho_mini, 44.1 kHz, ~29 s)
and white noise at 16 kHz and 48 kHz: the fastest of 5 runs of each resampler at each rate change
CLAP meets (44.1 -> 48 kHz, 16 -> 48 kHz, 48 -> 16 kHz), and its accuracy: pure tones at 1 kHz and
at 40% of the lower rate, resampled and compared with the same tone computed at the new rate (SNR
in dB over the middle 80%, away from the edges). torchaudio is not a candidate: no release
installs beside torch 2.13 (2.11.1 installs, then fails to load ``_torchaudio.so``).

Results: benchmarks/results/resample.md.
"""

from __future__ import annotations

import argparse
import time
from math import gcd
from pathlib import Path

import numpy as np
import soundfile
import soxr
from scipy.signal import resample_poly

CLOTHO = Path(__file__).resolve().parents[2] / "shared" / "data" / "clotho_mini" / "audio"


def scipy_poly(x: np.ndarray, a: int, b: int) -> np.ndarray:
    g = gcd(a, b)
    return resample_poly(x, b // g, a // g).astype(np.float32)


RESAMPLERS = {
    "soxr HQ (mixsearch)": lambda x, a, b: soxr.resample(x, a, b, quality="HQ"),
    "soxr VHQ": lambda x, a, b: soxr.resample(x, a, b, quality="VHQ"),
    "scipy resample_poly": scipy_poly,
}


def tone_snr(fn, a: int, b: int, freq: float) -> float:
    t = np.arange(2 * a) / a
    out = fn(np.sin(2 * np.pi * freq * t).astype(np.float32), a, b)
    ref = np.sin(2 * np.pi * freq * np.arange(len(out)) / b)
    core = slice(len(out) // 10, len(out) - len(out) // 10)
    return float(10 * np.log10(np.sum(ref[core] ** 2) / np.sum((out[core] - ref[core]) ** 2)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clip", type=Path, default=next(iter(sorted(CLOTHO.glob("*.wav"))), None))
    args = parser.parse_args()
    clip, rate = soundfile.read(args.clip, dtype="float32")
    noise = np.random.default_rng(0).standard_normal(29 * 48000).astype(np.float32)
    print("| resampler | rate change | time (fastest of 5) | audio | tone SNR 1 kHz | tone SNR 0.4 x lower rate |")
    print("|---|---|---|---|---|---|")
    for name, fn in RESAMPLERS.items():
        for a, b, x in ((rate, 48000, clip), (16000, 48000, noise[: 29 * 16000]), (48000, 16000, noise)):
            fn(x[:1000], a, b)
            times = []
            for _ in range(5):
                t0 = time.perf_counter()
                fn(x, a, b)
                times.append(time.perf_counter() - t0)
            low = 0.4 * min(a, b)
            print(
                f"| {name} | {a} -> {b} Hz | {1000 * min(times):.1f} ms | {len(x) / a:.1f} s | "
                f"{tone_snr(fn, a, b, 1000):.0f} dB | {tone_snr(fn, a, b, low):.0f} dB ({low / 1000:.1f} kHz) |"
            )


if __name__ == "__main__":
    main()
