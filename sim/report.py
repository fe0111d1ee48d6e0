"""Reporting helpers for the CLI: metrics JSON, force plot (PNG), camera video (MP4)."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np


def jsonable(x):
    """Plain JSON types (numpy arrays and scalars converted; NaN/Inf -> null, so the
    output is standard JSON that any tool reads)."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, (np.bool_, bool)):
        return bool(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, (np.floating, float)):
        x = float(x)
        return x if np.isfinite(x) else None
    return x


def write_metrics(path, episodes: List[Dict]) -> Dict:
    """Write ``{"episodes": [...], "summary": {...}}`` to ``path`` (JSON); return the summary."""
    from .metrics import summarize

    episodes = [jsonable(e) for e in episodes]
    summary = jsonable(summarize(episodes))
    d = os.path.dirname(os.fspath(path))
    if d:
        os.makedirs(d, exist_ok=True)
    with open(path, "w") as fh:
        json.dump({"episodes": episodes, "summary": summary}, fh, indent=2)
    return summary


def plot_force(path, t, force, band, perturbation_times: Sequence[float] = (), title: str = "",
               ylabel: str = "normal force [N]") -> None:
    """PNG of force against time with the band shaded and perturbations marked."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 3.2), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    ax.axhspan(band[0], band[1], color="tab:green", alpha=0.15, label=f"band {band[0]:g}-{band[1]:g} N")
    ax.plot(np.asarray(t), np.asarray(force), color="tab:blue", lw=1.0, label=ylabel.split(" [")[0])
    for i, tp in enumerate(perturbation_times):
        ax.axvline(tp, color="tab:red", ls="--", lw=1.0, label="perturbation" if i == 0 else None)
    ax.set_xlabel("time [s]")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend(loc="upper right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    d = os.path.dirname(os.fspath(path))
    if d:
        os.makedirs(d, exist_ok=True)
    fig.savefig(path)


class VideoWriter:
    """MP4 (H.264 via imageio-ffmpeg) of RGB uint8 frames: ``with VideoWriter(p, 30) as vw: vw.add(f)``."""

    def __init__(self, path, fps: float = 30.0, quality: Optional[int] = 7):
        if not np.isfinite(fps) or not 1.0 <= float(fps) <= 240.0:
            raise ValueError(f"VideoWriter.fps: {fps!r} is not in [1, 240]")
        self.path = os.fspath(path)
        self.fps = float(fps)
        self.quality = quality
        self.frames = 0
        self._writer = None

    def __enter__(self) -> "VideoWriter":
        return self

    def add(self, frame: np.ndarray) -> None:
        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"VideoWriter.add: frame must be HxWx3 uint8, got {frame.shape} {frame.dtype}")
        if self._writer is None:
            import imageio.v2 as imageio

            d = os.path.dirname(self.path)
            if d:
                os.makedirs(d, exist_ok=True)
            self._writer = imageio.get_writer(self.path, fps=self.fps, codec="libx264", quality=self.quality,
                                              pixelformat="yuv420p", macro_block_size=2)
        self._writer.append_data(frame)
        self.frames += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __exit__(self, *exc) -> None:
        self.close()


class EpisodeVideo:
    """One MP4 of the first camera per episode: ``camera_NNN.mp4`` in ``out_dir``. Frames are
    placed by their sim time: a frame dropped under CPU load repeats the previous one, so the
    video keeps the episode's duration (in sim time: a slowed-down sim does not lengthen it)."""

    def __init__(self, out_dir, fps: float):
        self.out_dir, self.fps = Path(out_dir), fps
        self.writer, self.episode = None, None
        self.t0, self.written, self.last = 0.0, 0, None

    def add(self, episode: int, t: float, rgb: np.ndarray) -> None:
        if self.writer is None or episode != self.episode:
            self.close()
            self.writer = VideoWriter(self.out_dir / f"camera_{episode:03d}.mp4", fps=self.fps).__enter__()
            self.episode, self.t0, self.written = episode, t, 0
        index = int(round((t - self.t0) * self.fps))
        while self.last is not None and self.written < index:
            self.writer.add(self.last)
            self.written += 1
        self.writer.add(rgb)
        self.written += 1
        self.last = rgb

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        self.last = None
