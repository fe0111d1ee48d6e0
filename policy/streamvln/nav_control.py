"""From discrete actions to velocity commands: pose goals tracked without stopping. No ROS.

Each action of a turn becomes a pose goal in the odometry frame, chained from the previous
goal (FORWARD = 0.25 m along the goal heading, TURN = +-15 deg in place, STOP = hold here and
end). :class:`GoalTracker` turns the head of the queue into (v, w) at the control rate:

* a run of consecutive FORWARD goals is driven as one segment: the speed is limited by the
  distance left to the end of the *queued* run (``v <= sqrt(2 a d)``), so when the next turn's
  goals arrive before the run ends, the base keeps its speed instead of stopping at every
  25 cm (the published deployment's stop-and-go);
* a forward goal counts as reached when the base has passed it along the goal heading; the
  heading is steered toward the goal point (lateral error) and limited by ``max_angular``;
* a TURN goal is tracked in place, reached within ``yaw_tol``; a STOP goal is reached at once
  and ends the episode (``done``);
* a goal not reached within ``goal_timeout`` (the base is blocked) is dropped and counted, so
  the next turn replans from where the base is.

Stop-and-go is measured where it matters: at every *join*, where a turn ends with FORWARD and
the next turn starts with FORWARD, the tracker keeps the lowest speed commanded (and, when the
caller passes it, measured) from the moment the last FORWARD of the first turn is the head of
the queue until the first FORWARD of the next turn is (``joins``; a join whose lowest
commanded speed is below ``JOIN_STOP_SPEED`` is a stop, ``join_stops``).
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, fields

from slowfast_data.fields import described

from .actions import Action

STEP_M = 0.25
STEP_RAD = math.radians(15.0)
JOIN_STOP_SPEED = 0.01  # m/s: a join slower than this is a stop between two FORWARD turns


def wrap(a: float) -> float:
    return (a + math.pi) % (2 * math.pi) - math.pi


def next_pose(x: float, y: float, yaw: float, action) -> tuple[float, float, float]:
    """The goal pose one action leads to from (x, y, yaw): how goals chain."""
    a = Action(action)
    if a is Action.MOVE_FORWARD:
        return x + STEP_M * math.cos(yaw), y + STEP_M * math.sin(yaw), yaw
    if a is Action.TURN_LEFT:
        return x, y, wrap(yaw + STEP_RAD)
    if a is Action.TURN_RIGHT:
        return x, y, wrap(yaw - STEP_RAD)
    return x, y, yaw


@dataclass
class Goal:
    x: float
    y: float
    yaw: float
    action: Action
    turn: int = 0  # which extend() call queued it


@dataclass
class Join:
    """Lowest speeds through one FORWARD-to-FORWARD join of two consecutive turns."""

    turn: int  # the first of the two turns
    min_cmd: float
    min_measured: float | None = None

    @property
    def stopped(self) -> bool:
        return self.min_cmd < JOIN_STOP_SPEED


@dataclass(frozen=True)
class TrackerConfig:
    """How the base follows the queued pose goals: the one definition of each value (default,
    meaning, range; every lower bound is exclusive). streamvln_nav declares them as
    ``tracker.<name>`` parameters."""

    max_linear: float = described(0.3, "forward speed limit (m/s)", 0.0, 2.0)
    max_angular: float = described(0.8, "yaw rate limit (rad/s)", 0.0, 6.0)
    linear_accel: float = described(0.5, "deceleration toward the end of the queued goals (m/s^2)", 0.0, 10.0)
    angular_accel: float = described(2.0, "yaw acceleration limit (rad/s^2)", 0.0, 50.0)
    yaw_gain: float = described(2.5, "heading error to yaw rate (1/s)", 0.0, 50.0)
    pos_tol: float = described(0.03, "a goal is reached within this distance (m)", 0.0, 0.2)
    yaw_tol: float = described(math.radians(3.0), "a goal is reached within this heading error (rad)", 0.0, 0.5)
    goal_timeout: float = described(3.0, "time on one goal before it is dropped (s; blocked by an obstacle, say)",
                                    0.0, 600.0)

    def __post_init__(self) -> None:
        for f in fields(self):
            name, (lo, hi) = f.name, f.metadata["range"]
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and lo < v <= hi):
                raise ValueError(f"{name} must be in ({lo}, {hi}], got {v!r}")


class GoalTracker:
    def __init__(self, cfg: TrackerConfig | None = None):
        self.cfg = cfg or TrackerConfig()
        self.goals: deque[Goal] = deque()
        self.done = False
        self.last_cmd = (0.0, 0.0)
        self.head_time = 0.0  # s spent on the current head goal
        self.timeouts = 0
        self.turn = 0  # extend() calls so far
        self.joins: list[Join] = []  # this episode's (new_episode() clears them)
        self._join: Join | None = None  # the join being watched
        self._timeouts_at_start = 0

    def clear(self) -> None:
        self.goals.clear()
        self.done = False
        self.last_cmd = (0.0, 0.0)
        self.head_time = 0.0
        self._join = None

    def new_episode(self) -> None:
        """Clear the queue and start the per-episode statistics (joins, ``episode_timeouts``)."""
        self.clear()
        self.joins.clear()
        self._timeouts_at_start = self.timeouts

    @property
    def episode_timeouts(self) -> int:
        return self.timeouts - self._timeouts_at_start

    @property
    def join_stops(self) -> int:
        return sum(j.stopped for j in self.joins)

    def hold(self) -> None:
        """The caller commands zero this tick (stale inputs, say): a join being watched sees it."""
        self.last_cmd = (0.0, 0.0)
        self._watch_join(0.0, None)

    def __len__(self) -> int:
        return len(self.goals)

    def extend(self, actions, pose) -> None:
        """Queue ``actions`` as goals chained from the last queued goal (or ``pose`` = x, y, yaw
        when the queue is empty)."""
        if self.goals:
            g = self.goals[-1]
            x, y, yaw = g.x, g.y, g.yaw
        else:
            x, y, yaw = (float(v) for v in pose)
            self.head_time = 0.0  # the clock of the new head starts now, not when the queue emptied
        self.turn += 1
        for a in actions:
            a = Action(a)
            x, y, yaw = next_pose(x, y, yaw, a)
            self.goals.append(Goal(x, y, yaw, a, self.turn))
            if a is Action.STOP:
                break

    def _run_length(self, pose) -> float:
        """Distance left along the run of FORWARD goals at the head of the queue."""
        x, y, _ = pose
        d, px, py = 0.0, x, y
        for k, g in enumerate(self.goals):
            if g.action is not Action.MOVE_FORWARD:
                break
            seg = (g.x - px) * math.cos(g.yaw) + (g.y - py) * math.sin(g.yaw) if k == 0 else STEP_M
            d += max(seg, 0.0)
            px, py = g.x, g.y
        return d

    def _watch_join(self, v: float, speed: float | None) -> None:
        """Start, update or close the join watch for this tick's head goal and speeds."""
        head = self.goals[0] if self.goals else None
        j = self._join
        if j is not None:
            j.min_cmd = min(j.min_cmd, v)
            if speed is not None:
                j.min_measured = abs(speed) if j.min_measured is None else min(j.min_measured, abs(speed))
            if head is not None and head.turn != j.turn:
                if head.action is Action.MOVE_FORWARD and head.turn == j.turn + 1:
                    self.joins.append(j)
                self._join = j = None  # else the next turn began with a TURN or STOP: no join
        if j is None and head is not None and head.action is Action.MOVE_FORWARD and self._head_ends_turn():
            self._join = Join(head.turn, v, None if speed is None else abs(speed))

    def _head_ends_turn(self) -> bool:
        """Turns are queued whole, so the head is its turn's last goal when nothing after it shares its turn."""
        return len(self.goals) == 1 or self.goals[1].turn != self.goals[0].turn

    def command(self, pose, dt: float, speed: float | None = None) -> tuple[float, float]:
        """(v, w) for the current pose (x, y, yaw in the goals' frame); ``speed`` is the base's
        measured forward speed, if known (only recorded, for the join statistics)."""
        c = self.cfg
        x, y, yaw = (float(v) for v in pose)
        self.head_time += dt
        while self.goals:
            g = self.goals[0]
            if self.head_time > c.goal_timeout and g.action is not Action.STOP:
                self.goals.popleft()  # not reachable (blocked): drop it, the next turn replans
                self.timeouts += 1
                self.head_time = 0.0
                self._join = None  # a blocked base stops: not a join of two driven turns
                continue
            if g.action is Action.STOP:
                self.goals.popleft()
                self.done = True
                continue
            if g.action is Action.MOVE_FORWARD:
                along = (g.x - x) * math.cos(g.yaw) + (g.y - y) * math.sin(g.yaw)
                if along <= c.pos_tol:
                    self.goals.popleft()
                    self.head_time = 0.0
                    continue
            elif abs(wrap(g.yaw - yaw)) <= c.yaw_tol:
                self.goals.popleft()
                self.head_time = 0.0
                continue
            break
        v_prev, w_prev = self.last_cmd
        if not self.goals:
            v, w = 0.0, 0.0
        else:
            g = self.goals[0]
            if g.action is Action.MOVE_FORWARD:
                d = self._run_length((x, y, yaw))
                v = min(c.max_linear, math.sqrt(2 * c.linear_accel * d), v_prev + c.linear_accel * dt * 2)
                bearing = math.atan2(g.y - y, g.x - x) if math.hypot(g.x - x, g.y - y) > 0.08 else g.yaw
                err = wrap(bearing - yaw)
                w = max(-c.max_angular, min(c.max_angular, c.yaw_gain * err))
                v *= max(0.0, math.cos(err))  # slow down while the heading is off
            else:
                err = wrap(g.yaw - yaw)
                w_target = math.copysign(min(c.max_angular, math.sqrt(2 * c.angular_accel * abs(err)),
                                              c.yaw_gain * abs(err) + 0.15), err)
                dw = c.angular_accel * dt * 2
                w = max(w_prev - dw, min(w_prev + dw, w_target)) if w_prev * w_target > 0 else w_target
                v = max(0.0, v_prev - c.linear_accel * dt * 2) if v_prev > 0 else 0.0
                v = 0.0 if v < 0.02 else v
        self.last_cmd = (v, w)
        self._watch_join(v, speed)
        return v, w
