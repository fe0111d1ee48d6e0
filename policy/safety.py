"""The safety filter between any command source and a robot arm.

Used inside the reactive fast loop, and wrapped as a standalone node for other command
sources (teleoperation). It never passes on an unsafe command; every intervention is
counted by reason. Per tick it takes the commanded TCP pose and the freshest measured
state and returns the pose to send:

1. e-stop (latched): hold until explicitly released.
2. NaN/Inf in the command, or no command yet / command older than ``command_timeout``:
   hold the last safe pose. When commands come back after such a silence, the output goes
   on from the held pose, or restarts from the measured pose when the arm was moved
   meanwhile (it is farther than ``max_step`` from the held pose).
3. Stale or invalid contact data (wrench older than ``contact_timeout``, NaN): hold.
4. Force limit: measured force above ``force_limit`` -> back off by ``backoff_distance``
   along the force (away from what pushes) and hold there until the force falls below
   ``force_release`` for ``release_time``. An e-stop or a stale/invalid contact reading
   during the back-off holds it where it is: only a command may be missing while it moves.
5. Workspace box: clamp the position.
6. Speed (norm) and acceleration (per axis) limits, relative to the last output, so the output never jumps
   (also when it resumes after a hold). A hold stops the target at once (the arm's
   impedance controller decelerates the real motion); the back-off is speed-limited only.
7. Tracking bound: the output is never farther than ``max_step`` from the measured TCP, so
   the arm's own controller is never asked to cover more than that at once (with a
   stiffness K, the pull is at most K * max_step).

The filter restarts from the measured pose when the plant was reset under it: when the
measured TCP moves farther than ``max_step`` between two ticks (no arm does that in a
control period; a simulator's episode reset, a re-homed robot or a re-localised frame do),
and whenever :meth:`SafetyFilter.reset` is called (a node calls it at an episode start).

Poses are in the robot's base/world frame; quaternions x, y, z, w; SI units.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from slowfast_data.fields import check_ranges, described

REASONS = ("estop", "nonfinite_command", "no_command", "stale_contact", "invalid_contact",
           "force_limit", "workspace", "speed", "acceleration", "tracking", "plant_reset")


@dataclass
class SafetyConfig:
    """The filter's limits: the one definition of each (default, meaning, range). The nodes
    that command an arm declare them as ``safety.<name>`` parameters; a robot's parameter
    file sets what differs. The defaults suit the MuJoCo tasks (the workspace is the table's)."""

    workspace_lo: tuple = described((-0.35, -0.25, -0.08), "workspace box, lower corner (m, world frame)")
    workspace_hi: tuple = described((0.35, 0.25, 0.40), "workspace box, upper corner (m, world frame)")
    max_speed: float = described(0.25, "TCP linear speed limit (m/s)", 1e-4, 3.0)
    max_angular_speed: float = described(1.5, "TCP angular speed limit (rad/s)", 1e-3, 10.0)
    max_accel: float = described(3.0, "TCP acceleration limit per Cartesian axis (m/s^2)", 1e-3, 50.0)
    force_limit: float = described(60.0, "contact force |F| that triggers the back-off (N)", 0.1, 1000.0)
    force_release: float = described(30.0, "the back-off hold ends once |F| stays below this for "
                                           "release_time (N; below force_limit)", 0.0, 1000.0)
    release_time: float = described(0.2, "how long the force must stay below force_release (s)", 0.0, 10.0)
    backoff_distance: float = described(0.01, "back-off distance along the force (m)", 0.0, 0.1)
    command_timeout: float = described(0.2, "no fresh command for this long -> hold (s)", 1e-3, 10.0)
    contact_timeout: float = described(0.05, "contact reading older than this -> hold (s)", 1e-3, 10.0)
    max_step: float = described(0.05, "the output is never farther than this from the measured TCP (m); a "
                                      "measured jump larger than this between ticks is a reset of the plant",
                                1e-3, 0.5)
    require_contact: bool = described(True, "hold when no contact data arrives (false for an arm without "
                                            "force/torque sensing)")

    def __post_init__(self):
        lo, hi = np.asarray(self.workspace_lo, float), np.asarray(self.workspace_hi, float)
        if lo.shape != (3,) or hi.shape != (3,) or not (lo < hi).all():
            raise ValueError(f"workspace_lo/hi: need 3 values each with lo < hi, got {lo}, {hi}")
        check_ranges(self)
        if not (0.0 < self.force_release < self.force_limit):
            raise ValueError(f"force_release: {self.force_release} must be in (0, force_limit)")


def _norm(v: np.ndarray) -> float:
    """Euclidean norm of a short vector, as ``np.linalg.norm`` computes it for a flat array
    (``sqrt(v @ v)``), without its Python overhead (~4 us a call; this filter runs at up to
    1 kHz in the control thread)."""
    return math.sqrt(float(v @ v))


def _clip(v: np.ndarray, lo, hi) -> np.ndarray:
    """``np.clip`` (NaN stays NaN) through the ufuncs directly: a fifth of its cost."""
    return np.minimum(np.maximum(v, lo), hi)


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    """``np.array_equal`` for two arrays of one shape (NaN differs from itself, as there)."""
    return bool((a == b).all())


def _normalize(q: np.ndarray) -> np.ndarray:
    return q / _norm(q)


def _slerp_limited(q0: np.ndarray, q1: np.ndarray, max_angle: float) -> tuple[np.ndarray, bool]:
    """Rotate from q0 toward q1 by at most max_angle (rad); (result, was_limited)."""
    d = float(np.dot(q0, q1))
    if d < 0.0:
        q1, d = -q1, -d
    angle = 2.0 * np.arccos(min(1.0, d))
    if angle <= max_angle or angle < 1e-9:
        return q1, False
    s = max_angle / angle
    theta = np.arccos(min(1.0, d))
    out = (np.sin((1 - s) * theta) * q0 + np.sin(s * theta) * q1) / np.sin(theta)
    return _normalize(out), True


@dataclass
class SafetyFilter:
    config: SafetyConfig
    counts: dict = field(default_factory=lambda: dict.fromkeys(REASONS, 0))

    def __post_init__(self):
        self._out_pos: np.ndarray | None = None
        self._out_quat: np.ndarray | None = None
        self._out_vel = np.zeros(3)
        self._t: float | None = None
        self._estop = False
        self._idle = False   # holding for want of commands (see filter)
        self._force_hold_until_ok: float | None = None   # time the force first fell below release
        self._force_hold = False
        self._hold_pos: np.ndarray | None = None
        self._last_tcp: np.ndarray | None = None
        self.last_reasons: tuple[str, ...] = ()

    # ---------------------------------------------------------------- state

    @property
    def initialized(self) -> bool:
        return self._out_pos is not None

    @property
    def holding(self) -> bool:
        return bool(set(self.last_reasons) & {"estop", "nonfinite_command", "no_command", "stale_contact",
                                              "invalid_contact", "force_limit"})

    def reset(self, tcp_pos, tcp_quat) -> None:
        """Start from the measured pose (at start-up, an episode start, after an e-stop
        release or a reset of the plant)."""
        self._out_pos = np.asarray(tcp_pos, float).copy()
        self._last_tcp = self._out_pos.copy()
        self._out_quat = _normalize(np.asarray(tcp_quat, float))
        self._out_vel = np.zeros(3)
        self._t = None
        self._force_hold = False
        self._force_hold_until_ok = None

    def set_estop(self, engaged: bool, tcp_pos=None, tcp_quat=None) -> None:
        """Engage (latched) or release the e-stop. Release restarts from the measured pose."""
        if engaged:
            self._estop = True
        elif self._estop:
            self._estop = False
            if tcp_pos is not None and tcp_quat is not None:
                self.reset(tcp_pos, tcp_quat)

    @property
    def estopped(self) -> bool:
        return self._estop

    def report(self) -> dict:
        return {**{f"interventions/{k}": v for k, v in self.counts.items()},
                "estop": self._estop, "force_hold": self._force_hold}

    # ---------------------------------------------------------------- the filter

    def _count(self, reasons: list[str], reason: str) -> None:
        reasons.append(reason)
        self.counts[reason] += 1

    def filter(self, t: float, cmd_pos, cmd_quat, cmd_stamp: float | None,
               tcp_pos, tcp_quat, force_world=None, contact_stamp: float | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """One tick at time ``t`` (seconds, same clock as the stamps). ``cmd_stamp`` None
        means no command has arrived. ``force_world`` is the measured contact force on the
        tool (3,), in the command frame. Returns the safe (position, quaternion xyzw)."""
        cfg = self.config
        reasons: list[str] = []
        tcp_pos = np.asarray(tcp_pos, float)
        if not self.initialized:
            self.reset(tcp_pos, tcp_quat)
        elif np.isfinite(tcp_pos).all() and self._last_tcp is not None \
                and _norm(tcp_pos - self._last_tcp) > cfg.max_step:
            # The plant was reset under us (a sim episode, a re-homed arm): whatever we were
            # doing refers to a world that is gone. Start again from where the arm is.
            self._count(reasons, "plant_reset")
            self.reset(tcp_pos, tcp_quat)
        if np.isfinite(tcp_pos).all():
            self._last_tcp = tcp_pos.copy()
        dt = 0.0 if self._t is None else max(0.0, t - self._t)
        self._t = t
        hold = False
        hard_hold = False   # holds even a force back-off: e-stop, no trustworthy contact reading

        if self._estop:
            self._count(reasons, "estop")
            hold = hard_hold = True
        cmd_pos = np.asarray(cmd_pos, float) if cmd_pos is not None else None
        cmd_quat = np.asarray(cmd_quat, float) if cmd_quat is not None else None
        if cmd_stamp is None or cmd_pos is None or t - cmd_stamp > cfg.command_timeout:
            self._count(reasons, "no_command")
            hold = True
            self._idle = True
        elif self._idle and not self._estop:
            # Commands resume after a silence. If something moved the arm meanwhile (a homing
            # script, a hand-guided move: it is now farther than max_step from the held
            # output), start again from the measured pose instead of dragging it back. If not,
            # go on from the held output: snapping to the measured pose would release a tool
            # pressed into a surface, a jump in the command for a mere gap in the commands.
            self._idle = False
            if _norm(self._out_pos - tcp_pos) > cfg.max_step:
                self.reset(tcp_pos, tcp_quat)
                dt, self._t = 0.0, t   # reset() forgot the tick time; this tick is the new start
        elif not (np.isfinite(cmd_pos).all() and np.isfinite(cmd_quat).all()) or _norm(cmd_quat) < 1e-6:
            self._count(reasons, "nonfinite_command")
            hold = True

        force = None if force_world is None else np.asarray(force_world, float)
        if cfg.require_contact or force is not None:
            if force is None or contact_stamp is None or t - contact_stamp > cfg.contact_timeout:
                self._count(reasons, "stale_contact")
                hold = hard_hold = True
                force = None
            elif not np.isfinite(force).all():
                self._count(reasons, "invalid_contact")
                hold = hard_hold = True
                force = None

        # Force limit: back off along the force, then hold until it has stayed low.
        if force is not None:
            fmag = _norm(force)
            if fmag > cfg.force_limit:
                if not self._force_hold:
                    self._hold_pos = np.asarray(tcp_pos, float) + cfg.backoff_distance * force / fmag
                self._force_hold = True
                self._force_hold_until_ok = None
            elif self._force_hold and fmag < cfg.force_release:
                if self._force_hold_until_ok is None:
                    self._force_hold_until_ok = t
                if t - self._force_hold_until_ok >= cfg.release_time:
                    self._force_hold = False
            elif self._force_hold:
                self._force_hold_until_ok = None
        if self._force_hold:
            self._count(reasons, "force_limit")

        lo, hi = np.asarray(cfg.workspace_lo), np.asarray(cfg.workspace_hi)
        if hard_hold or (hold and not self._force_hold):
            # Hold the last safe pose, at once: the target stops, the arm's own impedance
            # controller decelerates the real motion. Resuming ramps up from zero velocity.
            # (Without a command, a force back-off goes on: it only moves away from contact.)
            self._out_vel = np.zeros(3)
            self._out_pos = self._bounded(self._out_pos, tcp_pos, reasons)
            self.last_reasons = tuple(reasons)
            return self._out_pos.copy(), self._out_quat.copy()
        if self._force_hold:
            goal_pos, goal_quat = self._hold_pos, self._out_quat
        else:
            goal_pos, goal_quat = cmd_pos, _normalize(cmd_quat)

        clamped = _clip(goal_pos, lo, hi)
        if not _same(clamped, goal_pos):
            self._count(reasons, "workspace")
        goal_pos = clamped

        # Speed and acceleration limits relative to the last output: no jumps, ever. The
        # acceleration limit holds per Cartesian axis, so a fast motion along one axis (a lift)
        # cannot use up the budget of another (the squeeze) and make it overshoot.
        if dt > 0:
            step = goal_pos - self._out_pos
            vel = step / dt
            # Never faster, on any axis, than what can still stop at the goal under the accel limit.
            v_stop = np.sqrt(2.0 * cfg.max_accel * np.abs(step))
            if not self._force_hold:
                vel = _clip(vel, -v_stop, v_stop)
            speed = _norm(vel)
            if speed > cfg.max_speed:
                vel *= cfg.max_speed / speed
                self._count(reasons, "speed")
            if not self._force_hold:
                # Braking (down to zero) is never slowed; speeding up, or reversing after a
                # stop, changes each axis's velocity by at most max_accel * dt per tick.
                dv_max = cfg.max_accel * dt
                v_lo = np.minimum(self._out_vel, 0.0) - dv_max
                v_hi = np.maximum(self._out_vel, 0.0) + dv_max
                limited = _clip(vel, v_lo, v_hi)
                if not _same(limited, vel):
                    self._count(reasons, "acceleration")
                vel = limited
            new_pos = self._out_pos + vel * dt
            self._out_vel = vel
            new_quat, limited = _slerp_limited(self._out_quat, goal_quat, cfg.max_angular_speed * dt)
            if limited:
                self._count(reasons, "speed")
        else:
            new_pos, new_quat = self._out_pos.copy(), self._out_quat.copy()
        new_pos = self._bounded(_clip(new_pos, lo, hi), tcp_pos, reasons)
        if dt > 0:
            self._out_vel = (new_pos - self._out_pos) / dt
        self._out_pos, self._out_quat = new_pos, new_quat
        self.last_reasons = tuple(reasons)
        return self._out_pos.copy(), self._out_quat.copy()

    def _bounded(self, pos: np.ndarray, tcp_pos: np.ndarray, reasons: list[str]) -> np.ndarray:
        """``pos`` moved to within ``max_step`` of the measured TCP (unchanged when it is)."""
        if not np.isfinite(tcp_pos).all():
            return pos
        gap = pos - tcp_pos
        dist = _norm(gap)
        if dist <= self.config.max_step:
            return pos
        self._count(reasons, "tracking")
        return tcp_pos + gap * (self.config.max_step / dist)


def safety_report(filters: dict) -> tuple[dict, bool]:
    """Diagnostics values of every arm's filter, and whether any arm is holding."""
    values, holding = {}, False
    for arm, sf in filters.items():
        values.update({f"{arm}/{k}": v for k, v in sf.report().items()})
        holding = holding or sf.holding
    return values, holding
