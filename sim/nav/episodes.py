"""Episodes: a layout, a start pose, a goal near a landmark, an instruction, a reference path.

An episode is plain data (JSON-able through :meth:`Episode.to_dict`), reproducible from its
seed: ``make_episode(seed)`` builds layout ``seed`` and draws start and goal from ``seed``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .instructions import describe_route
from .layout import LayoutConfig, generate_layout


@dataclass
class Episode:
    seed: int
    layout_seed: int
    start: tuple[float, float, float]  # x, y, yaw (world)
    goal: tuple[float, float]
    goal_name: str
    instruction: str
    reference_path: np.ndarray  # [n, 2] shortest path start -> goal on the free-space graph
    shortest: float  # geodesic start -> goal, m

    def to_dict(self) -> dict:
        return {"seed": self.seed, "layout_seed": self.layout_seed, "start": list(self.start),
                "goal": list(self.goal), "goal_name": self.goal_name, "instruction": self.instruction,
                "reference_path": np.round(self.reference_path, 3).tolist(), "shortest": self.shortest}


def goal_near(layout, landmark, reach: float = 0.5) -> tuple[float, float]:
    """The free point nearest to the landmark's footprint (within ``reach`` of it if possible)."""
    cells = np.argwhere(layout.free)
    centers = (cells + 0.5) * layout.cfg.resolution
    d = np.maximum(np.abs(centers - np.asarray(landmark.center)) - np.asarray(landmark.half), 0.0)
    gap = np.hypot(d[:, 0], d[:, 1])
    k = int(np.argmin(gap))
    return float(centers[k, 0]), float(centers[k, 1])


def make_episode(seed: int, layout_cfg: LayoutConfig | None = None, min_dist: float = 5.0,
                 max_dist: float = 14.0, layout_seed: int | None = None) -> Episode:
    """A random episode. ``layout_seed`` defaults to ``seed`` (one layout per episode)."""
    layout_seed = seed if layout_seed is None else layout_seed
    layout = generate_layout(layout_seed, layout_cfg)
    rng = np.random.default_rng([seed, 7])
    graph = layout.graph
    for _ in range(50):
        lm = layout.landmarks[int(rng.integers(len(layout.landmarks)))]
        goal = goal_near(layout, lm)
        field = graph.field(goal)
        ok = np.isfinite(field) & (field >= min_dist) & (field <= max_dist) & layout.free
        cells = np.argwhere(ok)
        if len(cells) == 0:
            continue
        c = cells[int(rng.integers(len(cells)))]
        start_xy = layout.cell_center(c)
        yaw = float(rng.uniform(-math.pi, math.pi))
        ref = graph.shortest_path(start_xy, goal)
        instruction = describe_route(layout, ref, lm, rng)
        return Episode(seed, layout_seed, (float(start_xy[0]), float(start_xy[1]), yaw), goal, lm.name,
                       instruction, ref, float(graph.distance(start_xy, goal)))
    raise RuntimeError(f"no start {min_dist}-{max_dist} m from a landmark in layout {layout_seed}")
