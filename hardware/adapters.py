"""The robot adapters of the command bridge, without ROS (:class:`hardware.robot.RobotAdapter`).

Each keeps the robot's newest measured state and turns a target into the robot's commands;
the bridge node subscribes and publishes for it: it feeds the measurements in
(``on_pose``, ``on_joint_positions``, ``on_wrench``) and gives the adapter a function that
sends a command.

* :class:`CartesianTargetAdapter`: ros2_control's Cartesian controllers (the FZI
  ``cartesian_controllers`` package): a target is a pose in the controller's
  ``robot_base_link`` frame on ``<controller>/target_frame``; the measured pose comes from a
  pose broadcaster in that frame (a pose in another frame is counted and ignored), the
  wrench from the force/torque sensor broadcaster.
* :class:`GantryAdapter`: a Cartesian gantry (gazebo/wipe.sdf): the TCP position is the
  positions of three prismatic joints (base frame), the orientation is fixed; a target is
  three joint position commands (its orientation is checked by the gate, not applied).

Measurements with NaN/inf are ignored. All methods are thread-safe: measurements arrive on
the executor's thread, targets and holds go out from the bridge's thread.
"""
from __future__ import annotations

import threading
from typing import Callable

import numpy as np

from hardware.robot import RobotAdapter, RobotState


class _MeasuredState:
    """The newest measured state, shared between the executor's and the bridge's threads."""

    def __init__(self):
        self._lock = threading.Lock()
        self._state = RobotState()

    def set_pose(self, stamp: float, pos, quat) -> None:
        with self._lock:
            self._state.pose_stamp, self._state.pos, self._state.quat = stamp, pos, quat

    def on_wrench(self, frame_id: str, stamp: float, wrench) -> None:
        """A wrench reading (fx, fy, fz, tx, ty, tz in ``frame_id``)."""
        if np.isfinite(wrench).all():
            with self._lock:
                self._state.wrench_stamp, self._state.wrench = stamp, wrench
                self._state.wrench_frame = frame_id

    def state(self) -> RobotState:
        with self._lock:
            return RobotState(**vars(self._state))


class CartesianTargetAdapter(_MeasuredState, RobotAdapter):
    def __init__(self, base_frame: str, send_pose: Callable[[float, str, np.ndarray, np.ndarray], None]):
        """``send_pose(stamp, frame_id, pos, quat)`` publishes the controller's target."""
        super().__init__()
        self.base_frame = base_frame
        self._send_pose = send_pose
        self.foreign_frame = 0      # measured poses in another frame, ignored

    def on_pose(self, frame_id: str, stamp: float, pos, quat) -> None:
        """A measured TCP pose (in ``frame_id``; '' = the base frame)."""
        if frame_id not in ("", self.base_frame):
            self.foreign_frame += 1
            return
        if np.isfinite(pos).all() and np.isfinite(quat).all():
            self.set_pose(stamp, pos, quat)

    def send_target(self, stamp: float, pos, quat) -> None:
        self._send_pose(stamp, self.base_frame, pos, quat)

    def hold(self, stamp: float) -> bool:
        s = self.state()
        if s.pos is None:
            return False
        self._send_pose(stamp, self.base_frame, s.pos, s.quat)
        return True


class GantryAdapter(_MeasuredState, RobotAdapter):
    def __init__(self, base_frame: str, joints, tool_quat, send_joints: Callable[[list], None]):
        """``joints``: the x, y, z joints; ``tool_quat``: the fixed tool orientation (x, y, z, w,
        base frame); ``send_joints(positions)`` commands the joints, in ``joints`` order."""
        super().__init__()
        self.base_frame = base_frame
        self.joints = list(joints)
        self.tool_quat = np.array(tool_quat, float)
        self._send_joints = send_joints
        self.foreign_frame = 0      # (a joint state has no frame)

    def on_joint_positions(self, stamp: float, pos) -> None:
        """The positions of ``joints`` (m), measured at ``stamp``."""
        if np.isfinite(pos).all():
            self.set_pose(stamp, pos, self.tool_quat)

    def send_target(self, stamp: float, pos, quat) -> None:
        self._send_joints([float(v) for v in pos])

    def hold(self, stamp: float) -> bool:
        s = self.state()
        if s.pos is None:
            return False
        self.send_target(stamp, s.pos, s.quat)
        return True
