"""sim_node: the MuJoCo simulator served over ROS 2 in real time; :mod:`sim.realtime` runs it.

Per arm (``arm``; ``left``/``right`` for lift): <arm>/tcp_pose (world), <arm>/tcp_wrench,
<arm>/tactile/markers, <arm>/joint_states (``embodiment: arm``) out, <arm>/target_tcp in (a NaN,
non-unit or out-of-workspace target is rejected and counted); the cameras' RealSense-wrapper
topics, /clock, /diagnostics, ``sim/episode`` (latched JSON events with metrics). ``interface:
ros2_control`` offers a real arm's ros2_control topics instead, for ``robot_bridge_node``.
Topic table: docs/architecture.md.
"""
from __future__ import annotations

import dataclasses
import struct
import threading

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped, WrenchStamped
from rclpy.node import Node
from rclpy.serialization import deserialize_message
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import JointState, PointCloud2
from std_msgs.msg import String

from hardware.robot import RigidTransform
from sim.realtime import RealTimeConfig, RealTimeSim
from slowfast_ros import msgs, qos
from slowfast_ros.arm_io import (INTERFACES, ROS2_CONTROL, CdrLayoutError, cdr_pose_in_frame, controller_target_topic,
                                 take_raw, topic)
from slowfast_ros.camera_sink import make_renderer
from slowfast_ros.node_util import (RateMeter, declare_params, flush_events, helper_node, node_now, param, run_node,
                                    wait_for_publishers)


@dataclasses.dataclass
class SimNodeParams(RealTimeConfig):
    """The real-time sim's values, and how they meet ROS."""
    world_frame: str = param("world", "frame of all poses")
    interface: str = param("stack", "stack: <arm>/target_tcp in, <arm>/tcp_pose and <arm>/tcp_wrench out (world) | "
                                    "ros2_control: a real arm's ros2_control topics (embodiment arm, one arm), for "
                                    "robot_bridge_node")
    controller: str = param(ROS2_CONTROL["controller"], "interface ros2_control: targets on <controller>/target_frame")
    base_frame: str = param(ROS2_CONTROL["base_frame"], "interface ros2_control: frame of the targets and the pose")
    state_pose_topic: str = param(ROS2_CONTROL["pose_topic"], "interface ros2_control: TCP pose (base frame)")
    state_wrench_topic: str = param(ROS2_CONTROL["wrench_topic"], "interface ros2_control: wrist wrench")
    wait_for: list = param([""], "topics that must have a publisher before the first episode starts "
                                 "(a controller that loads a model), waited for up to 120 s")
    chunk_topic: str = param("", "a policy's chunk topic (trajectory_msgs/JointTrajectory): its messages are "
                                 "counted per episode, metric policy_chunks ('' = not counted)")

    def __post_init__(self):
        super().__post_init__()
        if self.interface not in INTERFACES:
            raise ValueError(f"interface: {self.interface!r} not one of {', '.join(INTERFACES)}")
        if self.interface == "ros2_control" and self.embodiment != "arm":
            raise ValueError("interface: ros2_control needs embodiment: arm (joints under a Cartesian controller)")


class SimNode(Node):
    def __init__(self):
        super().__init__("sim_node")
        self.p: SimNodeParams = declare_params(self, SimNodeParams())
        self.hw = self.p.interface == "ros2_control"   # the arm's base is the controller's frame
        self.exit_code, self.rejected, self.meters = 0, {}, {}
        self.sim = RealTimeSim(self.p, self, count_chunks=bool(self.p.chunk_topic),
                               renderer=lambda env: make_renderer(self, env, self.p, self._render_failed))
        env, self.arms = self.sim.env, self.sim.arms
        if self.hw:
            if len(self.arms) != 1:
                raise ValueError(f"interface: ros2_control drives one arm; task {self.p.task} has {len(self.arms)}")
            self.base_in_world = RigidTransform(*map(tuple, env.arm_base(self.arms[0])))
            self.world_in_base = self.base_in_world.inverse()
        self._tactile_grid = tuple(env.task_spec()["tactile_shape"])
        self.pubs = {}
        # The targets are taken by the physics thread before each step (poll), serialized, from
        # a helper node no executor spins: rclpy spends ~200 us of Python per callback, and at
        # 1 kHz of targets an executor thread would hold the GIL the physics thread needs to
        # publish its readings on time.
        self._io_node = helper_node(self, "targets")
        self._targets = []
        self._target_frames = (self.p.base_frame,) if self.hw else ("", self.p.world_frame)
        for arm in self.arms:
            names = {k: topic(arm, t) for k, t in (("pose", "tcp_pose"), ("wrench", "tcp_wrench"),
                                                    ("tactile", "tactile/markers"), ("joints", "joint_states"))}
            if self.hw:
                names.update(pose=self.p.state_pose_topic, wrench=self.p.state_wrench_topic,
                             joints=ROS2_CONTROL["joint_states"])
            for kind, typ in (("pose", PoseStamped), ("wrench", WrenchStamped), ("tactile", PointCloud2),
                              ("joints", JointState))[:4 if self.p.embodiment == "arm" else 3]:
                self.pubs[(arm, kind)] = self.create_publisher(typ, names[kind], qos.SENSOR_PUB)
            self._targets.append((arm, self._io_node.create_subscription(
                PoseStamped, self._target_topic(arm), lambda _m: None, qos.COMMAND, raw=True)))
            self.meters.update({topic(arm, k): RateMeter() for k in ("pose", "wrench", "tactile")})
        if self.p.chunk_topic:
            from trajectory_msgs.msg import JointTrajectory  # noqa: PLC0415
            self.create_subscription(JointTrajectory, self.p.chunk_topic, lambda _m: self.sim.count_chunk(),
                                     qos.COMMAND)
        self.clock_pub = self.create_publisher(Clock, "/clock", 10)
        self.episode_pub = self.create_publisher(String, "sim/episode", qos.EVENTS)
        if self.p.episode_end == "operator":
            self.create_subscription(String, "sim/episode_command", self._on_episode_command, qos.COMMAND)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_timer(1.0, self._publish_diagnostics)
        self._physics = threading.Thread(target=self._physics_main, name="sim-physics", daemon=True)
        self._physics.start()
        self.get_logger().info(f"sim {self.p.task}: arms {list(self.arms)}, cameras {list(self.sim.cameras)}, "
                               f"episodes {self.p.episodes or 'unbounded'}")

    def poll(self) -> None:
        """Take every target that arrived (sim.realtime.Outputs; the physics thread)."""
        for arm, sub in self._targets:
            while (taken := take_raw(sub)) is not None:
                try:
                    stamp, frame, pose = cdr_pose_in_frame(taken[0])
                    pos, quat = pose[:3], pose[3:]
                except (CdrLayoutError, struct.error):
                    msg = deserialize_message(taken[0], PoseStamped)
                    (stamp, pos, quat), frame = msgs.pose_from_msg(msg), msg.header.frame_id
                self._on_target(arm, stamp, frame, pos, quat)

    def _on_target(self, arm: str, stamp: float, frame: str, pos, quat) -> None:
        """A world-frame target, or (ros2_control) a Cartesian controller's in the base frame."""
        if frame not in self._target_frames:
            self.reject(arm, f"frame '{frame}' is not '{self._target_frames[-1]}'")
            return
        if self.hw:
            pos, quat = self.base_in_world.apply(pos, quat)
        self.sim.set_target(arm, stamp, pos, quat)

    def _on_episode_command(self, msg: String) -> None:
        try:
            if said := self.sim.ending.command(msgs.json_from_msg(msg)):
                self.get_logger().info(said)
        except ValueError as exc:
            self.get_logger().warning(f"sim/episode_command: {exc}")

    def _target_topic(self, arm: str) -> str:
        return controller_target_topic(self.p.controller) if self.hw else topic(arm, "target_tcp")

    # sim.realtime.Outputs
    now = node_now

    def state(self, stamp: float, arm: str, s, joints, which) -> None:
        if "pose" in which:
            pos, quat, frame = ((*self.world_in_base.apply(s.tcp_pos, s.tcp_quat), self.p.base_frame) if self.hw
                                else (s.tcp_pos, s.tcp_quat, self.p.world_frame))
            self.pubs[(arm, "pose")].publish(msgs.pose_msg(stamp, frame, pos, quat))
            if joints is not None:
                self.pubs[(arm, "joints")].publish(msgs.joint_state_msg(stamp, joints))
        if "wrench" in which:
            self.pubs[(arm, "wrench")].publish(msgs.wrench_msg(stamp, f"{arm}_tool", s.wrench))
        if "tactile" in which:
            self.pubs[(arm, "tactile")].publish(msgs.markers_msg(stamp, f"{arm}_tactile_pad", s.tactile,
                                                                 self._tactile_grid))
        for k in which:
            self.meters[topic(arm, k)].tick()

    def clock(self, stamp: float) -> None:
        self.clock_pub.publish(Clock(clock=msgs.to_time(stamp)))

    def event(self, payload: dict) -> None:
        self.episode_pub.publish(msgs.json_msg(payload))

    def reject(self, arm: str, why: str) -> None:
        self.rejected[arm] = self.rejected.get(arm, 0) + 1
        self.get_logger().warning(f"{self._target_topic(arm)} rejected: {why}", throttle_duration_sec=1.0)

    def log(self, level: str, text: str) -> None:
        getattr(self.get_logger(), level)(text)

    def wait_ready(self, stop) -> None:
        wait_for_publishers(self, self.p.wait_for, stop)

    def _physics_main(self) -> None:
        try:
            self.sim.run()
        except Exception as exc:  # noqa: BLE001 - report and stop, never die silently
            self.sim.stop()
            if self.context.ok():  # not a shutdown (Ctrl-C) under our feet: a real failure
                self.get_logger().error(f"physics thread stopped: {exc!r}")
                self.exit_code = 1
        self.sim.close_cameras(timeout=10.0)   # the last video frames are written before exit
        if rclpy.ok():
            flush_events(self.episode_pub)     # the last episode's end reaches its readers
            rclpy.try_shutdown()

    def _render_failed(self, why) -> None:
        """The render thread or process stopped on its own (a process's traceback is on stderr)."""
        if self.context.ok() and not self.sim.stopped:
            self.get_logger().error(f"camera rendering stopped ({why!r}): no camera frames from now on")

    def _publish_diagnostics(self) -> None:
        values, why = self.sim.status()
        values.update({f"rate/{k}": m.rate() for k, m in self.meters.items()})
        values.update({f"rejected/{self._target_topic(a)}": n for a, n in self.rejected.items()})
        level = "error" if self.sim.renderer is not None and self.sim.renderer.failed else "warn" if why else "ok"
        self.diag_pub.publish(msgs.diagnostics_msg(self.now(), [msgs.diagnostic_status("sim_node", values, level,
                                                                                       "; ".join(why))]))

    def close(self) -> None:
        self.sim.stop()
        self._physics.join(timeout=5.0)
        self.sim.close_cameras(timeout=5.0)
        self._io_node.destroy_node()


#: the parameters this node declares (checked by `slowfast` before anything starts)
PARAMS = SimNodeParams


def main(args=None) -> int:
    return run_node(SimNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
