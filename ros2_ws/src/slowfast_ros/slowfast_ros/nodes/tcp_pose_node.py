"""tcp_pose_node: the TCP pose broadcaster for an arm whose ros2_control stack has none.

robot_bridge_node reads the measured TCP pose as a PoseStamped in the robot's base frame
(``/tcp_pose_broadcaster/pose`` by default, UR's broadcaster). franka_ros2 and the Gazebo arm
publish ``/joint_states`` only; this node computes that pose from each JointState message and
the robot description (``hardware.kinematics.UrdfChain``, ``base_link`` -> ``tcp_link``) and
publishes it with the joint state's stamp, so the pose is as old as the joints it came from.

The description comes from the ``robot_description`` parameter, or, when that is empty, from
the latched ``/robot_description`` topic that robot_state_publisher serves. Until it has
arrived, and for a JointState lacking a chain joint or carrying a non-finite position, nothing
is published (the bridge then holds the arm on its stale-state rule) and the reason is logged
and counted in /diagnostics.
"""
from __future__ import annotations

import dataclasses
import math
import threading

from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState
from std_msgs.msg import String

from hardware.kinematics import UrdfChain
from slowfast_ros import msgs, qos
from slowfast_ros.arm_io import ROS2_CONTROL
from slowfast_ros.node_util import RateMeter, declare_params, node_now, param, run_node


@dataclasses.dataclass
class TcpPoseNodeParams:
    robot_description: str = param("", "URDF of the robot ('' = from the latched /robot_description topic)")
    base_link: str = param(ROS2_CONTROL["base_frame"], "frame of the published pose (the controller's robot_base_link)")
    tcp_link: str = param("arm_tool", "the TCP link of the robot description")
    joint_states_topic: str = param(ROS2_CONTROL["joint_states"], "JointState of the arm's joints")
    pose_topic: str = param(ROS2_CONTROL["pose_topic"], "the TCP pose published (PoseStamped in base_link)")


class TcpPoseNode(Node):
    def __init__(self):
        super().__init__("tcp_pose_node")
        self.p: TcpPoseNodeParams = declare_params(self, TcpPoseNodeParams())
        self._lock = threading.Lock()
        self.chain: UrdfChain | None = None
        self.skipped = {"no_description": 0, "joints_missing": 0, "non_finite": 0}
        self.meter = RateMeter()
        self.pub = self.create_publisher(PoseStamped, self.p.pose_topic, qos.SENSOR_PUB)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        if self.p.robot_description:
            try:
                self._load(self.p.robot_description)
            except ValueError as exc:                  # a bad description refuses to start
                raise ValueError(f"robot_description: {exc}") from None
        else:
            latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                                 reliability=ReliabilityPolicy.RELIABLE)
            self.create_subscription(String, "/robot_description", self._on_description, latched)
        self.create_subscription(JointState, self.p.joint_states_topic, self._on_joints, qos.SENSOR_SUB)
        self.create_timer(1.0, self._publish_diagnostics)
        self.get_logger().info(f"TCP pose of {self.p.tcp_link} in {self.p.base_link} from {self.p.joint_states_topic} "
                               f"on {self.p.pose_topic}")

    def _load(self, urdf: str) -> None:
        chain = UrdfChain.from_urdf(urdf, self.p.base_link, self.p.tcp_link)
        with self._lock:
            self.chain = chain
        self.get_logger().info(f"chain {self.p.base_link} -> {self.p.tcp_link}: joints {', '.join(chain.joint_names)}")

    def _on_description(self, msg: String) -> None:
        try:
            self._load(msg.data)
        except ValueError as exc:
            self.get_logger().error(f"/robot_description: {exc}")

    def _on_joints(self, msg: JointState) -> None:
        with self._lock:
            chain = self.chain
        if chain is None:
            self._skip("no_description", "no robot description yet")
            return
        try:
            stamp, q = msgs.joint_positions_from_msg(msg, chain.joint_names)
        except ValueError as exc:
            self._skip("joints_missing", str(exc))
            return
        if not all(math.isfinite(v) for v in q):
            self._skip("non_finite", "a joint position is not finite")
            return
        pos, quat = chain.pose(q)
        self.pub.publish(msgs.pose_msg(stamp, self.p.base_link, pos, quat))
        self.meter.tick()

    def _skip(self, key: str, why: str) -> None:
        self.skipped[key] += 1
        self.get_logger().warning(f"no TCP pose: {why}", throttle_duration_sec=5.0)

    def _publish_diagnostics(self) -> None:
        values = {"rate/pose": self.meter.rate(), **{f"skipped/{k}": v for k, v in self.skipped.items()}}
        level = "ok" if self.chain is not None and self.meter.rate() > 0 else "warn"
        why = "" if level == "ok" else ("waiting for the robot description" if self.chain is None else "no joint states")
        self.diag_pub.publish(msgs.diagnostics_msg(node_now(self),
                                                   [msgs.diagnostic_status("tcp_pose_node", values, level, why)]))


PARAMS = TcpPoseNodeParams


def main(args=None) -> int:
    return run_node(TcpPoseNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
