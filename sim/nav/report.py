"""Top-down PNG of an episode: the layout, the reference path, the executed path."""
from __future__ import annotations

import numpy as np


def plot_episode(path_png, layout, episode, executed, metrics: dict | None = None, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure
    from matplotlib.patches import Circle, Rectangle

    w, h = layout.size
    fig = Figure(figsize=(8, 8 * h / w + 0.6), dpi=90)
    ax = fig.add_subplot(1, 1, 1)
    free = layout.free.T
    ax.imshow(np.where(free, 1.0, 0.85), cmap="gray", vmin=0, vmax=1, origin="lower", extent=(0, w, 0, h))
    for b in layout.walls:
        ax.add_patch(Rectangle((b.center[0] - b.half[0], b.center[1] - b.half[1]), 2 * b.half[0], 2 * b.half[1],
                               color="0.3"))
    for b in layout.furniture:
        ax.add_patch(Rectangle((b.center[0] - b.half[0], b.center[1] - b.half[1]), 2 * b.half[0], 2 * b.half[1],
                               color=b.rgb, alpha=0.6))
    for b in layout.landmarks:
        ax.add_patch(Rectangle((b.center[0] - b.half[0], b.center[1] - b.half[1]), 2 * b.half[0], 2 * b.half[1],
                               color=b.rgb))
        ax.annotate(b.name, b.center, fontsize=7, ha="center", va="bottom", xytext=(0, 8), textcoords="offset points")
    ref = np.asarray(episode.reference_path)
    ax.plot(ref[:, 0], ref[:, 1], "--", color="tab:green", lw=2, label="reference")
    ex = np.asarray(executed, float)
    ax.plot(ex[:, 0], ex[:, 1], "-", color="tab:blue", lw=1.5, label="executed")
    ax.plot(*episode.start[:2], "o", color="tab:blue")
    ax.plot(*episode.goal, "*", color="tab:red", ms=14, label="goal")
    ax.add_patch(Circle(episode.goal, 3.0, fill=False, ls=":", color="tab:red"))
    ax.set_xlim(0, w)
    ax.set_ylim(0, h)
    ax.set_aspect("equal")
    ax.legend(loc="upper right", fontsize=7)
    m = metrics or {}
    ax.set_title((title + "\n" if title else "") + episode.instruction[:110] + "\n" +
                 "  ".join(f"{k} {m[k]:.2f}" for k in ("NE", "SR", "SPL", "nDTW") if k in m), fontsize=8)
    fig.tight_layout()
    fig.savefig(path_png)
