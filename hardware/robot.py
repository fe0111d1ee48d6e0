"""The robot side of the command bridge, without ROS.

:class:`RobotAdapter` is the boundary: the bridge node hands it validated targets in the
robot's base frame and asks it to hold; an adapter for another arm (a vendor Python SDK,
another controller) implements these four methods and nothing else changes.
:class:`CommandGate` decides, every bridge tick, whether the newest ``target_tcp`` may go to
the robot or the robot must hold, and why. :class:`RigidTransform` maps poses between the
stack's ``world`` frame and the robot's base frame.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass

import numpy as np

from slowfast_data.fields import described
from slowfast_data.geometry import matrix_to_quat_one, quat_angle, quat_to_matrix_one


@dataclass(frozen=True)
class RigidTransform:
    """Pose of frame B in frame A: p_A = R p_B + t. ``apply`` maps a pose given in B into A."""
    translation: tuple = (0.0, 0.0, 0.0)
    rotation: tuple = (0.0, 0.0, 0.0, 1.0)   # x, y, z, w

    def __post_init__(self):
        q = np.asarray(self.rotation, float)
        if len(self.translation) != 3 or len(q) != 4 or not np.isfinite(q).all() or abs(np.linalg.norm(q) - 1) > 1e-3:
            raise ValueError(f"transform needs 3 finite translations and a unit quaternion x, y, z, w; "
                             f"got {self.translation}, {self.rotation}")

    def apply(self, pos, quat) -> tuple[np.ndarray, np.ndarray]:
        """(pos, quat x, y, z, w) in B -> in A; the quaternion comes back with w >= 0."""
        r = quat_to_matrix_one(self.rotation)
        return (r @ np.asarray(pos, float) + np.asarray(self.translation, float),
                matrix_to_quat_one(r @ quat_to_matrix_one(quat)))

    def inverse(self) -> "RigidTransform":
        r = quat_to_matrix_one(self.rotation).T
        return RigidTransform(tuple(-(r @ np.asarray(self.translation, float))), tuple(matrix_to_quat_one(r)))


# ---------------------------------------------------------------- adapter boundary

@dataclass
class RobotState:
    """The newest measured state, in the robot's base frame; stamps are ROS seconds."""
    pose_stamp: float = float("nan")
    pos: np.ndarray | None = None
    quat: np.ndarray | None = None
    wrench_stamp: float = float("nan")
    wrench: np.ndarray | None = None      # fx, fy, fz, tx, ty, tz in wrench_frame
    wrench_frame: str = ""


class RobotAdapter(abc.ABC):
    """What the bridge needs of a robot. Poses are in ``base_frame``."""

    base_frame: str = "base_link"

    @abc.abstractmethod
    def send_target(self, stamp: float, pos: np.ndarray, quat: np.ndarray) -> None:
        """Command the TCP towards this pose (the controller interpolates)."""

    @abc.abstractmethod
    def hold(self, stamp: float) -> bool:
        """Stop new motion: keep the robot where it is now. False when it cannot (no state)."""

    @abc.abstractmethod
    def state(self) -> RobotState:
        """The newest measured state (fields NaN/None until the robot has reported)."""

    def close(self) -> None:  # noqa: B027 - optional
        """Release the robot connection."""


# ---------------------------------------------------------------- command gate

@dataclass(frozen=True)
class GateConfig:
    """The command gate's limits: the one definition of each (default, meaning, range).
    robot_bridge_node declares them as ``gate.<name>`` parameters; a robot's parameter file
    sets what differs. A bound shown as 0 is exclusive where the check below says so."""

    deadline: float = described(0.1, "hold the robot when <arm>/target_tcp is silent this long (s)", 0.005, 5.0)
    max_age: float = described(0.5, "reject a target stamped longer ago than this (s; > 0)", 0.0, 10.0)
    max_step: float = described(0.05, "reject a target farther than this from the measured TCP (m; > 0)", 0.0, 1.0)
    max_step_rad: float = described(0.5, "reject a target rotated more than this from the measured TCP "
                                         "(rad; > 0)", 0.0, float(np.pi))
    workspace_min: tuple = described((-1.0, -1.0, -0.2), "world-frame box a target must lie in: min x, y, z (m)")
    workspace_max: tuple = described((1.0, 1.0, 1.5), "world-frame box a target must lie in: max x, y, z (m)")
    max_state_age: float = described(0.1, "hold when the measured pose is older than this (s; > 0)", 0.0, 5.0)

    def __post_init__(self):
        if not (0.005 <= self.deadline <= 5.0):
            raise ValueError(f"deadline: {self.deadline} outside 0.005..5 s")
        if not (0.0 < self.max_age <= 10.0):
            raise ValueError(f"max_age: {self.max_age} outside (0, 10] s")
        if not (0.0 < self.max_step <= 1.0):
            raise ValueError(f"max_step: {self.max_step} outside (0, 1] m")
        if not (0.0 < self.max_step_rad <= np.pi):
            raise ValueError(f"max_step_rad: {self.max_step_rad} outside (0, pi]")
        lo, hi = np.asarray(self.workspace_min, float), np.asarray(self.workspace_max, float)
        if lo.shape != (3,) or hi.shape != (3,) or not (lo < hi).all():
            raise ValueError(f"workspace_min, workspace_max: need 3 values each with min < max, "
                             f"got {self.workspace_min}, {self.workspace_max}")
        if not (0.0 < self.max_state_age <= 5.0):
            raise ValueError(f"max_state_age: {self.max_state_age} outside (0, 5] s")


@dataclass
class Decision:
    action: str            # 'send' | 'hold' | 'idle' (nothing new, keep the last command)
    reason: str = ""


class CommandGate:
    """Decides per tick: ``send`` a new target, ``hold`` the robot, or stay ``idle``.

    - a target with NaN/inf, a non-unit quaternion, outside the workspace, too far from the
      measured TCP, or stamped too long ago is rejected (counted, with its reason) and the
      robot holds;
    - no new target within ``deadline`` of the last one (the command topic went silent)
      -> hold, once, until targets flow again;
    - a measured pose older than ``max_state_age`` -> hold: no motion without feedback.
    All poses here are in the world frame.
    """

    def __init__(self, config: GateConfig = GateConfig()):
        self.cfg = config
        self.holding = True            # start held: nothing moves before the first target
        self.reason = "no target yet"
        self.rejected: dict[str, int] = {}
        self.last_target_arrival = float("nan")

    def check_target(self, stamp: float, pos, quat, now: float, tcp_pos, tcp_quat) -> tuple[str, str]:
        """('', '') when the target may be sent, else (kind, why): kind is one of
        non_finite, quaternion, workspace, stale, step, rotation."""
        pos, quat = np.asarray(pos, float), np.asarray(quat, float)
        if not (np.isfinite(pos).all() and np.isfinite(quat).all() and np.isfinite(stamp)):
            return "non_finite", "NaN or inf in the target"
        if abs(np.linalg.norm(quat) - 1.0) > 1e-3:
            return "quaternion", f"quaternion norm {np.linalg.norm(quat):.4f} is not 1"
        if (pos < np.asarray(self.cfg.workspace_min)).any() or (pos > np.asarray(self.cfg.workspace_max)).any():
            return "workspace", f"target {np.round(pos, 3).tolist()} outside the workspace"
        if now - stamp > self.cfg.max_age:
            return "stale", f"target stamped {now - stamp:.3f} s ago (max_age {self.cfg.max_age})"
        step = float(np.linalg.norm(pos - np.asarray(tcp_pos, float)))
        if step > self.cfg.max_step:
            return "step", f"target {step:.3f} m from the measured TCP (max_step {self.cfg.max_step})"
        ang = quat_angle(quat, np.asarray(tcp_quat, float))
        if ang > self.cfg.max_step_rad:
            return "rotation", f"target {ang:.3f} rad from the measured TCP (max_step_rad {self.cfg.max_step_rad})"
        return "", ""

    def decide(self, now: float, target, target_arrival: float, state_stamp: float,
               tcp_pos, tcp_quat) -> Decision:
        """``target``: (stamp, pos, quat) of a target not yet decided on, or None.
        ``target_arrival``: ROS time the newest target arrived (NaN if none ever)."""
        if not np.isfinite(state_stamp) or now - state_stamp > self.cfg.max_state_age:
            return self._hold("no robot state" if not np.isfinite(state_stamp)
                              else f"robot state {now - state_stamp:.3f} s old")
        if target is not None:
            kind, why = self.check_target(*target, now, tcp_pos, tcp_quat)
            if kind:
                self.rejected[kind] = self.rejected.get(kind, 0) + 1
                return self._hold(f"rejected: {why}")
            self.holding, self.reason = False, ""
            return Decision("send")
        if np.isfinite(target_arrival) and now - target_arrival > self.cfg.deadline:
            return self._hold(f"target_tcp silent for more than {self.cfg.deadline} s")
        return Decision("idle", self.reason)

    def _hold(self, reason: str) -> Decision:
        first = not self.holding
        self.holding, self.reason = True, reason
        return Decision("hold" if first else "idle", reason)

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())
