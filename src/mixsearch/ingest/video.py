"""Video loading: a file -> ``frames`` RGB frames sampled uniformly over the clip's duration.

Decoding is PyAV (FFmpeg's libraries, in the ``[video]`` extra). Frame ``i`` of ``n`` is the first
frame shown at or after ``(i + 0.5) / n`` of the clip's duration, so the frames are evenly spread
and none sits on the first or last instant (often black or a fade); a clip with fewer frames than
asked repeats some. The video is decoded once, front to back, and only the chosen frames are
converted to images.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError, UsageError, require

#: Frames sampled per clip unless a model or the caller says otherwise.
DEFAULT_FRAMES = 8


@dataclass(frozen=True, eq=False)
class Video:
    """A clip's sampled frames (RGB ``PIL.Image``), their times in seconds, and where it came from."""

    frames: list[Any]
    times: list[float] = field(default_factory=list)
    source: str = ""


def load_video(path: str | Path, frames: int = DEFAULT_FRAMES) -> Video:
    """Decode ``frames`` frames, evenly spread over the video, with an error that names the file."""
    if frames < 1:
        raise UsageError(f"frames per video must be at least 1, got {frames}")
    av = require("av", "video", "reading video files")
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: video file not found")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise InputError(f"{path}: no video stream in this file")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            start, duration = _span(container, stream)
            if duration is None:  # no duration in the header: count the frames first
                times = [float(f.time or 0.0) for f in container.decode(stream)]
                container.seek(0)
                start, duration = (times[0], times[-1] - times[0]) if times else (0.0, 0.0)
            targets = [start + (i + 0.5) * duration / frames for i in range(frames)]
            chosen: list[Any] = []
            chosen_times: list[float] = []
            last = None
            for frame in container.decode(stream):
                t = float(frame.time) if frame.time is not None else start
                image = None
                while len(chosen) < frames and targets[len(chosen)] <= t:
                    image = image or frame.to_image().convert("RGB")
                    chosen.append(image)
                    chosen_times.append(t)
                if len(chosen) == frames:
                    break
                last = (frame, t)
            if not chosen and last is None:
                raise InputError(f"{path}: no decodable video frames")
            if len(chosen) < frames and last is not None:  # targets past the last frame: hold it
                image, t = last[0].to_image().convert("RGB"), last[1]
                chosen += [image] * (frames - len(chosen))
                chosen_times += [t] * (frames - len(chosen_times))
            return Video(chosen, chosen_times, str(path))
    except InputError:
        raise
    except (av.error.FFmpegError, OSError, ValueError, IndexError) as err:
        raise InputError(f"{path}: unreadable video ({str(err).strip() or type(err).__name__})") from None


def _span(container: Any, stream: Any) -> tuple[float, float | None]:
    """The stream's start time and duration in seconds (duration None when the file does not say)."""
    start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
    if stream.duration is not None and stream.time_base is not None and stream.duration > 0:
        return start, float(stream.duration * stream.time_base)
    if container.duration:
        return start, container.duration / 1_000_000
    return start, None
