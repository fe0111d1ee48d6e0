"""The expert: follows the shortest path on the free-space graph with the discrete actions.

At each step it looks ``lookahead`` metres ahead along the current shortest path to the goal and
turns (15 deg) toward that point until it is within ``heading_tol`` of it, then moves forward
(0.25 m); it answers STOP within ``stop_radius`` of the goal (geodesic). A blocked forward move
turns it instead. Its executed path stays within a few cells of the reference path.
"""
from __future__ import annotations

import math

import numpy as np

from .env import FORWARD_STEP_M, wrap

STOP, FORWARD, LEFT, RIGHT = 0, 1, 2, 3


class NavExpert:
    def __init__(self, layout, goal, stop_radius: float = 0.4, lookahead: float = 0.6,
                 heading_tol_deg: float = 10.0):
        self.layout = layout
        self.goal = np.asarray(goal, float)
        self.stop_radius = stop_radius
        self.lookahead = lookahead
        self.heading_tol = math.radians(heading_tol_deg)

    def act(self, pose) -> int:
        x, y, yaw = pose
        graph = self.layout.graph
        if graph.distance((x, y), self.goal) < self.stop_radius:
            return STOP
        path = graph.shortest_path((x, y), self.goal)
        seg = np.linalg.norm(np.diff(path, axis=0), axis=1)
        arc = np.concatenate([[0.0], np.cumsum(seg)])
        k = int(np.searchsorted(arc, self.lookahead))
        target = path[min(k, len(path) - 1)]
        err = wrap(math.atan2(target[1] - y, target[0] - x) - yaw)
        if abs(err) > self.heading_tol:
            return LEFT if err > 0 else RIGHT
        ahead = (x + FORWARD_STEP_M * math.cos(yaw), y + FORWARD_STEP_M * math.sin(yaw))
        if not self.layout.segment_free((x, y), ahead):
            return LEFT if err >= 0 else RIGHT
        return FORWARD

    def actions(self, pose, n: int = 4) -> list[int]:
        """The next ``n`` actions from ``pose`` (simulated forward; STOP ends the list)."""
        from .env import TURN_STEP_RAD

        out = []
        x, y, yaw = pose
        for _ in range(n):
            a = self.act((x, y, yaw))
            out.append(a)
            if a == STOP:
                break
            if a == FORWARD:
                x, y = x + FORWARD_STEP_M * math.cos(yaw), y + FORWARD_STEP_M * math.sin(yaw)
            else:
                yaw = wrap(yaw + (TURN_STEP_RAD if a == LEFT else -TURN_STEP_RAD))
        return out
