"""Route instructions from templates over the landmarks and doors along the reference path.

"Go past the red sofa, turn left at the door, and stop by the blue lamp." Events are found on
the reference path in order: a landmark (other than the goal) passed within ``pass_dist``, a
door crossed (with the turn taken after it: left, right or straight on). Phrases are drawn from
small template lists with the episode's RNG.
"""
from __future__ import annotations

import math

import numpy as np

OPENERS = ("", "Walk ahead, ", "Go forward, ", "Move on, ")
PASS = ("go past the {name}", "walk past the {name}", "pass the {name}")
DOOR = {"left": ("turn left at the door", "go through the door and turn left"),
        "right": ("turn right at the door", "go through the door and turn right"),
        "straight": ("go straight through the door", "walk through the door")}
FINAL = ("stop by the {name}", "stop next to the {name}", "wait at the {name}")


def _heading(path: np.ndarray, i: int, span: int) -> float:
    a, b = path[max(i - span, 0)], path[min(i + span, len(path) - 1)]
    return math.atan2(b[1] - a[1], b[0] - a[0])


def route_events(layout, path: np.ndarray, goal_landmark, pass_dist: float = 1.5) -> list[tuple[int, str, str]]:
    """(path index, kind, detail) in path order: ("landmark", name) and ("door", left|right|straight)."""
    events = []
    for lm in layout.landmarks:
        if lm is goal_landmark:
            continue
        d = np.linalg.norm(path - np.asarray(lm.center), axis=1) - max(lm.half)
        k = int(np.argmin(d))
        if d[k] < pass_dist and 0 < k < len(path) - 5:
            events.append((k, "landmark", lm.name))
    rooms = [layout.room_of(p) for p in path]
    span = max(int(1.0 / layout.cfg.resolution), 1)
    for k in range(1, len(path)):
        if rooms[k] != rooms[k - 1]:
            before = _heading(path, max(k - span, 0), span)
            after = _heading(path, min(k + span, len(path) - 1), span)
            turn = (after - before + math.pi) % (2 * math.pi) - math.pi
            side = "left" if turn > math.radians(35) else "right" if turn < -math.radians(35) else "straight"
            events.append((k, "door", side))
    return sorted(events)


def describe_route(layout, path: np.ndarray, goal_landmark, rng: np.random.Generator) -> str:
    phrases = []
    for _, kind, detail in route_events(layout, path, goal_landmark):
        opts = PASS if kind == "landmark" else DOOR[detail]
        phrases.append(opts[int(rng.integers(len(opts)))].format(name=detail))
    phrases = phrases[:4]
    final = FINAL[int(rng.integers(len(FINAL)))].format(name=goal_landmark.name)
    body = ", ".join(phrases + [("and " if phrases else "") + final])
    opener = OPENERS[int(rng.integers(len(OPENERS)))]
    text = opener + body + "."
    return text[0].upper() + text[1:]
