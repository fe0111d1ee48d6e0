"""robot_bridge_node: <arm>/target_tcp to a real arm's command interface, the arm's state back.

Subscribes <arm>/target_tcp (PoseStamped in ``world_frame``) and hands each new target,
once hardware.robot.CommandGate accepts it, to the robot adapter in the robot's base frame
(``base_in_world`` maps world <-> base). Publishes the robot's state on the topics of the
stack: <arm>/tcp_pose (PoseStamped, world; capture stamps kept) and <arm>/tcp_wrench
(WrenchStamped, the sensor's frame); /diagnostics at 1 Hz.

The adapters (``cartesian_controllers``: ros2_control's Cartesian controllers, target on
``<controller>/target_frame`` in the base frame, state from the pose and F/T broadcasters;
``gz_gantry``: the Gazebo gantry's joints) are ``hardware.adapters``'; the per-tick logic and
the safety gate (``gate.*``: NaN, workspace, step, age, silence, stale state -> hold the robot
at its measured pose) are ``hardware.bridge.RobotBridge`` and ``hardware.robot.CommandGate``
(no ROS). Callbacks only store; one paced thread decides and sends. docs/on-a-robot.md.

Lifecycle (``slowfast_ros.lifecycle.ArmCommander``): configure connects the adapter and starts
the thread; deactivate holds the robot (measured pose sent before the transition returns) and
drops targets until activate; the state is published while inactive; cleanup closes.
"""
from __future__ import annotations

import dataclasses
import threading

from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped, WrenchStamped
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64

from hardware.adapters import CartesianTargetAdapter, GantryAdapter
from hardware.bridge import BridgeConfig, RobotBridge
from hardware.robot import RobotAdapter
from slowfast_ros import msgs, qos
from slowfast_ros.arm_io import ROS2_CONTROL, controller_target_topic, topic
from slowfast_ros.lifecycle import ArmCommander, ManagedParams
from slowfast_ros.node_util import PacedLoop, RateMeter, declare_params, node_now, param, run_node

ADAPTERS = ("cartesian_controllers", "gz_gantry")


@dataclasses.dataclass
class RobotBridgeNodeParams(ManagedParams, BridgeConfig):
    """The topics and the adapter's wiring; the bridge's own settings are hardware.bridge.BridgeConfig."""

    arm: str = param("arm", "arm namespace of the stack topics: <arm>/target_tcp, <arm>/tcp_pose")
    adapter: str = param("cartesian_controllers", f"robot command interface: {' | '.join(ADAPTERS)}")
    controller: str = param(ROS2_CONTROL["controller"], "ros2_control controller taking <controller>/target_frame")
    target_topic: str = param("", "command topic of the controller ('' = /<controller>/target_frame)")
    state_pose_topic: str = param(ROS2_CONTROL["pose_topic"], "measured TCP pose (PoseStamped, base frame)")
    state_wrench_topic: str = param(ROS2_CONTROL["wrench_topic"], "measured wrench (WrenchStamped)")
    base_frame: str = param(ROS2_CONTROL["base_frame"], "the controller's robot_base_link: frame of its targets and of the state pose")
    world_frame: str = param("world", "frame of <arm>/target_tcp and <arm>/tcp_pose")
    joint_state_topic: str = param("/wipe/gantry/joint_states", "gz_gantry: JointState of the gantry joints")
    joint_command_prefix: str = param("/wipe/gantry", "gz_gantry: position commands go to <prefix>/<joint>/cmd_pos")

    def __post_init__(self):
        if self.adapter not in ADAPTERS:
            raise ValueError(f"adapter: '{self.adapter}' unknown (choose from {', '.join(ADAPTERS)})")
        if not self.controller and not self.target_topic:
            raise ValueError("controller: empty; name the controller or set target_topic")
        BridgeConfig.__post_init__(self)


class RobotBridgeNode(ArmCommander):
    active_note = "forwarding targets to the robot"
    inactive_note = "robot held where measured; no target forwarded until activated"

    def __init__(self):
        super().__init__("robot_bridge_node")
        self.p: RobotBridgeNodeParams = declare_params(self, RobotBridgeNodeParams())
        self.control_period = 1.0 / self.p.rate_hz
        self.bridge = RobotBridge(self.p.gate, self.p.base_in_world)   # gate, transform, adapter once connected
        self.loop: PacedLoop | None = None
        self._lock = threading.Lock()
        self._target = None                  # newest target not yet decided on: (stamp, pos, quat)
        self._target_arrival = float("nan")
        self.foreign_targets = 0
        self.meters = {"target_tcp": RateMeter(), "tcp_pose": RateMeter()}
        self.pose_pub = self.create_publisher(PoseStamped, topic(self.p.arm, "tcp_pose"), qos.SENSOR_PUB)
        self.wrench_pub = self.create_publisher(WrenchStamped, topic(self.p.arm, "tcp_wrench"), qos.SENSOR_PUB)
        self.create_subscription(PoseStamped, topic(self.p.arm, "target_tcp"), self._on_target, qos.COMMAND)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_timer(1.0, self._publish_diagnostics)
        self.autostart(self.p.autostart)

    def _configure(self) -> None:
        if self.bridge.robot is None:   # its subscriptions and publishers stay for a configure after a cleanup
            self.bridge.robot = self._connect()
        self.loop = PacedLoop(self.p.rate_hz, self._tick, name="robot-bridge").start()

    def _connect(self) -> RobotAdapter:
        """The adapter (``hardware.adapters``) with its publishers and subscriptions."""
        p = self.p
        if p.adapter == "cartesian_controllers":
            pub = self.create_publisher(PoseStamped, p.target_topic or controller_target_topic(p.controller), qos.COMMAND)
            robot = CartesianTargetAdapter(p.base_frame, lambda stamp, frame, pos, quat:
                                           pub.publish(msgs.pose_msg(stamp, frame, pos, quat)))
            self.create_subscription(PoseStamped, p.state_pose_topic,
                                     lambda m: robot.on_pose(m.header.frame_id, *msgs.pose_from_msg(m)),
                                     qos.SENSOR_SUB)
        else:
            prefix = p.joint_command_prefix.rstrip("/")
            pubs = [self.create_publisher(Float64, f"{prefix}/{j}/cmd_pos", qos.COMMAND) for j in p.gantry_joints]

            def send_joints(values):
                for pub, v in zip(pubs, values):
                    pub.publish(Float64(data=v))

            robot = GantryAdapter(p.base_frame, p.gantry_joints, p.tool_quat, send_joints)

            def on_joints(msg: JointState) -> None:
                try:
                    robot.on_joint_positions(*msgs.joint_positions_from_msg(msg, robot.joints))
                except ValueError:
                    pass   # not the gantry's joints

            self.create_subscription(JointState, p.joint_state_topic, on_joints, qos.SENSOR_SUB)
        self.create_subscription(WrenchStamped, p.state_wrench_topic,
                                 lambda m: robot.on_wrench(m.header.frame_id, *msgs.wrench_from_msg(m)),
                                 qos.SENSOR_SUB)
        return robot

    def _cleanup(self) -> None:
        if self.loop is not None:
            self.loop.stop()
            self.loop = None
        self.bridge.robot.close()

    def _hold(self) -> None:
        try:
            self.bridge.hold(self._now())
        except Exception as exc:  # noqa: BLE001 - on the way out, the context may be down
            self.get_logger().error(f"could not command a hold: {exc}")

    _now = node_now

    # ------------------------------------------------------------ callbacks (store only)

    def _on_target(self, msg: PoseStamped) -> None:
        if msg.header.frame_id not in ("", self.p.world_frame):
            self.foreign_targets += 1
            self.get_logger().warning(f"target_tcp in frame '{msg.header.frame_id}', expected "
                                      f"'{self.p.world_frame}'; ignored", throttle_duration_sec=1.0)
            return
        stamp, pos, quat = msgs.pose_from_msg(msg)
        with self._lock:
            self._target, self._target_arrival = (stamp, pos, quat), self._now()

    # ------------------------------------------------------------ bridge thread

    def _tick(self) -> None:
        now = self._now()
        with self._lock:
            target, self._target = self._target, None
            arrival = self._target_arrival
        b, world = self.bridge, self.p.world_frame
        s, tcp_pos, tcp_quat = b.state()
        if tcp_pos is not None and b.is_new("pose", s.pose_stamp):
            self.pose_pub.publish(msgs.pose_msg(s.pose_stamp, world, tcp_pos, tcp_quat))
            self.meters["tcp_pose"].tick()
        if s.wrench is not None and b.is_new("wrench", s.wrench_stamp):
            self.wrench_pub.publish(msgs.wrench_msg(s.wrench_stamp, s.wrench_frame, s.wrench))
        if target is not None:
            self.meters["target_tcp"].tick()
        state = self.command_state()   # publishes the hold itself on the tick after a deactivation
        if state == "idle":
            return   # inactive: targets are dropped
        if state == "restart":
            # from activation on: held until a new target, the silence deadline counted from now
            b.restart()
            with self._lock:
                self._target_arrival = arrival = float("nan")
            target = None   # it may have arrived while inactive: wait for the next one
        decision = b.forward(now, target, arrival, s, tcp_pos, tcp_quat)
        if decision.action == "hold":
            self.get_logger().warning(f"holding the robot: {decision.reason}", throttle_duration_sec=1.0)

    # ------------------------------------------------------------ diagnostics

    def _publish_diagnostics(self) -> None:
        if self.bridge.robot is None:
            return
        values, level, message = self.bridge.diagnostics(self._now(), self.active,
                                                          {k: m.rate() for k, m in self.meters.items()},
                                                          self.foreign_targets)
        status = msgs.diagnostic_status(f"robot_bridge_node: {self.p.arm}", values, level, message)
        self.diag_pub.publish(msgs.diagnostics_msg(self._now(), [status]))


#: the parameters this node declares (checked by `slowfast` before anything starts)
PARAMS = RobotBridgeNodeParams


def main(args=None) -> int:
    return run_node(RobotBridgeNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
