"""The robot bridge's per-tick logic, without ROS (robot_bridge_node subscribes and publishes
for it).

:class:`RobotBridge` holds a :class:`~hardware.robot.RobotAdapter`, the
:class:`~hardware.robot.CommandGate` and the world <-> base transform. Each tick the node asks
it for the robot's state in the world frame (and whether its pose or wrench is new, to publish
each reading once), then hands it the newest target: the gate decides, and the bridge sends the
target in the base frame or holds the robot, counting both. It also computes the node's
diagnostics values, level and message.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hardware.robot import CommandGate, Decision, GateConfig, RigidTransform, RobotAdapter, RobotState
from slowfast_data.fields import described


@dataclass
class BridgeConfig:
    """The bridge's own settings (robot_bridge_node's parameters of the same names)."""

    base_in_world: list = described([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0],
                                    "pose of base_frame in world_frame: x, y, z, qx, qy, qz, qw")
    rate_hz: float = described(250.0, "bridge loop rate (Hz): targets and state are forwarded at most this often")
    gate: GateConfig = described(GateConfig(), "the command gate's limits (hardware.robot.GateConfig)")
    gantry_joints: list = described(["tool_x", "tool_y", "tool_z"],
                                    "gz_gantry: joints whose positions are the TCP x, y, z (base frame)")
    tool_quat: list = described([1.0, 0.0, 0.0, 0.0],
                                "gz_gantry: the fixed tool orientation in the base frame (x, y, z, w)")

    def __post_init__(self):
        if len(self.base_in_world) != 7:
            raise ValueError(f"base_in_world: {len(self.base_in_world)} values, need x, y, z, qx, qy, qz, qw")
        if len(self.gantry_joints) != 3:
            raise ValueError(f"gantry_joints: {len(self.gantry_joints)} names, need the x, y, z joints")
        if len(self.tool_quat) != 4 or abs(float(np.linalg.norm(self.tool_quat)) - 1.0) > 1e-3:
            raise ValueError(f"tool_quat: {self.tool_quat} is not a unit quaternion x, y, z, w")
        if not (1.0 <= self.rate_hz <= 1000.0):
            raise ValueError(f"rate_hz: {self.rate_hz} outside 1..1000")


def base_transform(base_in_world) -> RigidTransform:
    """The pose of the robot's base in the world (x, y, z, qx, qy, qz, qw); a ValueError names
    the parameter."""
    b = [float(v) for v in base_in_world]
    try:
        return RigidTransform(tuple(b[:3]), tuple(b[3:]))
    except ValueError as exc:
        raise ValueError(f"base_in_world: {exc}") from None


class RobotBridge:
    """``robot`` (set once connected) commanded through ``gate``; poses in the world frame
    outside, in the robot's base frame towards the adapter."""

    def __init__(self, gate: GateConfig, base_in_world):
        self.base_in_world = base_transform(base_in_world)
        self.world_in_base = self.base_in_world.inverse()
        self.gate = CommandGate(gate)
        self.robot: RobotAdapter | None = None
        self.sent = self.holds = 0
        self._published = {"pose": float("nan"), "wrench": float("nan")}

    def state(self) -> tuple[RobotState, np.ndarray | None, np.ndarray | None]:
        """The robot's newest state and its TCP pose in the world frame (None, None before the
        robot reported a pose)."""
        s = self.robot.state()
        if s.pos is None:
            return s, None, None
        tcp_pos, tcp_quat = self.base_in_world.apply(s.pos, s.quat)
        return s, tcp_pos, tcp_quat

    def is_new(self, kind: str, stamp: float) -> bool:
        """Whether the ``kind`` ("pose" or "wrench") reading stamped ``stamp`` was not
        published yet; it counts as published from now on."""
        if stamp == self._published[kind]:
            return False
        self._published[kind] = stamp
        return True

    def restart(self) -> None:
        """Commanding again (an activation): held until a new target comes."""
        self.gate.holding, self.gate.reason = True, "no target yet"

    def forward(self, now: float, target, arrival: float, s: RobotState, tcp_pos, tcp_quat) -> Decision:
        """The gate's decision on ``target`` ((stamp, pos, quat) in the world frame, or None),
        carried out: the target sent in the base frame, or the robot held."""
        decision = self.gate.decide(now, target, arrival, s.pose_stamp, tcp_pos, tcp_quat)
        if decision.action == "send":
            pos_b, quat_b = self.world_in_base.apply(target[1], target[2])
            self.robot.send_target(target[0], pos_b, quat_b)
            self.sent += 1
        elif decision.action == "hold":
            self.hold(now)
        return decision

    def hold(self, now: float) -> None:
        """Keep the robot where it is measured (counted when the adapter could)."""
        if self.robot.hold(now):
            self.holds += 1

    def diagnostics(self, now: float, active: bool, rates: dict, foreign_targets: int) -> tuple[dict, str, str]:
        """(values, level, message): holding is a warning, holding for want of robot state an
        error; while inactive, what matters is whether the robot's state still comes."""
        gate = self.gate
        mode = "holding" if gate.holding else "commanding"
        values = {"mode": mode if active else "inactive", "reason": gate.reason,
                  "targets_sent": self.sent, "holds": self.holds, "rejected": gate.rejected_total,
                  "target_frame_mismatch": foreign_targets,
                  "state_frame_mismatch": self.robot.foreign_frame,
                  **{f"rejected/{k}": v for k, v in gate.rejected.items()},
                  **{f"rate/{k}": r for k, r in rates.items()}}
        level = "ok" if not gate.holding else "warn"
        if gate.reason.startswith(("no robot state", "robot state")):
            level = "error"
        message = "" if level == "ok" else f"holding: {gate.reason}"
        if not active:
            # The gate decides nothing while inactive: its reason is the last one before the
            # deactivation. What matters now is whether the robot's state is still coming.
            age = now - self.robot.state().pose_stamp
            if not age <= gate.cfg.max_state_age:
                level, message = "error", ("inactive: holding, no robot state" if not np.isfinite(age)
                                           else f"inactive: holding, robot state {age:.3f} s old")
            else:
                level, message = "warn", "inactive: holding"
        return values, level, message
