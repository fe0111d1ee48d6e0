"""VLN metrics, as R2R-CE defines them (anchors.md), from an executed path and a reference path.

* NE  navigation error: geodesic distance from the final position to the goal;
* SR  success: NE < ``success_radius`` (3 m);
* OS  oracle success: the geodesic distance to the goal was < ``success_radius`` at some point;
* SPL success x shortest / max(path length, shortest), path length = sum of the executed steps;
* nDTW exp(-DTW(P, R) / (|R| x success_radius)), DTW with Euclidean point distances between the
  executed positions P (consecutive duplicates removed: turning in place adds no point) and the
  reference path R resampled every ``ref_spacing`` m (0.25 m, one forward step).

Geodesic distances come from the caller (``dist_to_goal``, one per executed position), so the
functions are pure and can be checked by hand.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def resample(path, spacing: float) -> np.ndarray:
    """Points every ``spacing`` m along a polyline, both ends included."""
    p = np.asarray(path, float)[:, :2]
    if len(p) < 2:
        return p.copy()
    seg = np.linalg.norm(np.diff(p, axis=0), axis=1)
    arc = np.concatenate([[0.0], np.cumsum(seg)])
    if arc[-1] <= 0:
        return p[:1].copy()
    n = max(int(math.ceil(arc[-1] / spacing - 1e-9)), 1)
    s = np.linspace(0.0, arc[-1], n + 1)
    return np.stack([np.interp(s, arc, p[:, 0]), np.interp(s, arc, p[:, 1])], axis=1)


def dedupe(path, eps: float = 1e-6) -> np.ndarray:
    p = np.asarray(path, float)[:, :2]
    if len(p) == 0:
        return p
    keep = np.concatenate([[True], np.linalg.norm(np.diff(p, axis=0), axis=1) > eps])
    return p[keep]


def dtw(a, b) -> float:
    """Dynamic time warping distance with Euclidean point cost."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    n, m = len(a), len(b)
    cost = np.linalg.norm(a[:, None, :] - b[None, :, :], axis=2)
    D = np.full((n + 1, m + 1), np.inf)
    D[0, 0] = 0.0
    for i in range(1, n + 1):
        row_prev, row = D[i - 1], D[i]
        for j in range(1, m + 1):
            row[j] = cost[i - 1, j - 1] + min(row_prev[j], row[j - 1], row_prev[j - 1])
    return float(D[n, m])


def episode_metrics(path, reference, dist_to_goal: Sequence[float], shortest: float,
                    success_radius: float = 3.0, ref_spacing: float = 0.25) -> dict:
    """``path``: executed positions [n, 2+] (start first); ``reference``: [m, 2];
    ``dist_to_goal``: geodesic distance of each executed position to the goal; ``shortest``:
    geodesic start -> goal."""
    p = np.asarray(path, float)[:, :2]
    d = np.asarray(dist_to_goal, float)
    if len(p) == 0 or len(d) != len(p):
        raise ValueError(f"path ({len(p)} points) and dist_to_goal ({len(d)}) must be non-empty and equal length")
    length = float(np.linalg.norm(np.diff(p, axis=0), axis=1).sum()) if len(p) > 1 else 0.0
    ne = float(d[-1])
    success = ne < success_radius
    ref = resample(reference, ref_spacing)
    ndtw = math.exp(-dtw(dedupe(p), ref) / (len(ref) * success_radius))
    spl = float(success) * shortest / max(length, shortest) if shortest > 0 else float(success)
    return {"NE": ne, "SR": float(success), "OS": float(bool(np.min(d) < success_radius)), "SPL": spl,
            "nDTW": ndtw, "path_length": length, "shortest": float(shortest), "steps": len(p) - 1}


KEYS = ("NE", "SR", "OS", "SPL", "nDTW", "path_length", "steps")


def summarize(episodes: list[dict]) -> dict:
    """Means over episodes of the metric keys (SR, OS, SPL, nDTW as fractions)."""
    out: dict = {"episodes": len(episodes)}
    for k in KEYS:
        vals = [e[k] for e in episodes if e.get(k) is not None]
        out[k] = float(np.mean(vals)) if vals else None
    return out


def metrics_on_layout(layout, path, episode, success_radius: float = 3.0) -> dict:
    """:func:`episode_metrics` with geodesic distances from the layout's free-space graph."""
    g = layout.graph
    dist = [g.distance(q[:2], episode.goal) for q in np.asarray(path, float)]
    return episode_metrics(path, episode.reference_path, dist, episode.shortest, success_radius)
