"""teleop_node: the TactAR teleop server (headset app over HTTP + UDP, WebXR page over
HTTPS/WebSocket) as a ROS 2 node. It orchestrates: what it decides lives without ROS in
``teleop_tactar.session`` (retargeting, clutch releases, episodes, the operator's log lines)
and ``teleop_tactar.headset_feedback`` (what goes back to the headset, and how often).

Publishes each hand message's targets at once, stamped now, on ``<arm>/target_tcp_unsafe``
(PoseStamped, world; safety_node's input) and ``<arm>/gripper/command``, recorder commands
(headset and page buttons) on ``recorder/command``, episode end requests on
``sim/episode_command``. Log lines go to the headset (UDP 10003), the page and this node's
log. A headset silent for ``deadline`` s disengages: safety_node then holds the arm.

A lifecycle node (``slowfast_ros.lifecycle``): configure starts the server and the feedback
thread, activate forwards the headset's targets (every clutch pressed afresh), deactivate
releases every clutch and forwards no target, gripper or headset button command until
activated (safety_node then holds the arm on its command watchdog); the operator is told
both, and /diagnostics says ``active``. Server and feedback run on while inactive; cleanup
stops them.
"""
from __future__ import annotations

import dataclasses

from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String

from slowfast_ros import msgs, qos
from slowfast_ros.arm_io import ArmInputs, topic
from slowfast_ros.lifecycle import ManagedNode, ManagedParams
from slowfast_ros.node_util import PacedLoop, declare_params, node_now, param, run_node
from teleop_tactar.headset_feedback import HeadsetFeedback
from teleop_tactar.notices import REPORTED_INTERVENTIONS, InterventionWatch
from teleop_tactar.retarget import SILENCE_DEADLINE, RetargetConfig
from teleop_tactar.server_config import ServerConfig
from teleop_tactar.session import TeleopSession


@dataclasses.dataclass
class TeleopNodeParams(ManagedParams):
    arms: list = param(["arm"], "arm namespaces the operator drives")
    hands: list = param(["right"], "the hand (left | right) driving each arm, same order as arms")
    server: ServerConfig = param(ServerConfig(), "the headset's server (teleop_tactar.server.ServerConfig)")
    retarget: RetargetConfig = param(RetargetConfig(), "how a hand drives a TCP (teleop_tactar.retarget.RetargetConfig)")
    deadline: float = param(SILENCE_DEADLINE, "a headset silent this long disengages every arm (s)", 0.02, 5.0)
    world_frame: str = param("world", "frame of the published targets")
    output_topic: str = param("target_tcp_unsafe", "per-arm topic of the requests (safety_node's input)")
    feedback_hz: float = param(120.0, "robot state to the headset (Hz)")
    tactile_feedback_hz: float = param(24.0, "tactile and force arrows to the headset (Hz)")
    camera: str = param("camera", "camera whose images go to the headset ('' = none)")
    camera_feedback_hz: float = param(10.0, "camera images to the headset (Hz)")
    headset_host: str = param("", "UDP feedback address ('' = the address the hand messages come from)")
    udp_port_offset: int = param(0, "added to the app's UDP ports 10001..10005 (tests)")
    safety_diagnostics: str = param("safety_node", "/diagnostics status whose safety interventions are told "
                                                   "to the operator ('' = none)")
    safety_log: list = param(list(REPORTED_INTERVENTIONS), "the interventions told to the operator "
                                                          "(policy.safety reasons)")

    def __post_init__(self):
        if not self.arms or len(self.arms) != len(self.hands):
            raise ValueError(f"hands: {len(self.hands)} entries for {len(self.arms)} arms; give one per arm")
        for name in ("feedback_hz", "tactile_feedback_hz", "camera_feedback_hz"):
            v = getattr(self, name)
            if not 0.5 <= v <= 500.0:
                raise ValueError(f"{name}: {v} outside 0.5..500 Hz")
        if self.output_topic in ("", "target_tcp"):
            raise ValueError("output_topic: must not be '' or 'target_tcp' (commands go through safety_node)")
        if not 0 <= self.udp_port_offset <= 55000:
            raise ValueError(f"udp_port_offset: {self.udp_port_offset} outside 0..55000")
        InterventionWatch([r for r in self.safety_log if r])   # validates the reasons


class TeleopNode(ManagedNode):
    active_note = "forwarding the headset's targets"
    inactive_note = "no target forwarded until activated (safety_node holds the arm)"

    def __init__(self):
        super().__init__("teleop_node")
        p = self.p = declare_params(self, TeleopNodeParams)
        self.server = self.loop = self._image = None
        self.inputs = ArmInputs(self, p.arms)
        self.arm_hands = dict(zip(p.arms, p.hands))
        self.session = TeleopSession(self.arm_hands, p.retarget, p.deadline, p.safety_log, self._now(), self)
        self.headset = HeadsetFeedback(self.arm_hands, p.retarget.gripper_open, p.feedback_hz,
                                       p.tactile_feedback_hz, p.camera_feedback_hz, p.camera,
                                       p.udp_port_offset, p.headset_host)
        self.target_pubs, self.gripper_pubs = (
            {a: self.create_publisher(PoseStamped, topic(a, p.output_topic), qos.COMMAND) for a in p.arms},
            {a: self.create_publisher(JointState, topic(a, "gripper/command"), qos.COMMAND) for a in p.arms})
        self.command_pubs = {"recorder": self.create_publisher(String, "recorder/command", qos.COMMAND),
                             "sim": self.create_publisher(String, "sim/episode_command", qos.COMMAND)}
        s = self.session
        self.create_subscription(String, "sim/episode", msgs.on_json(s.on_episode), qos.EVENTS)
        self.create_subscription(String, "recorder/state", msgs.on_json(s.on_recorder_state), qos.LATCHED)
        self.create_subscription(String, "recorder/events", msgs.on_json(s.on_recorder_event), qos.EVENTS)
        if p.safety_diagnostics:
            self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        if p.camera:
            self.create_subscription(Image, f"{p.camera}/color/image_raw", lambda m: setattr(self, "_image", m),
                                     qos.SENSOR_SUB)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_timer(1.0, self._publish_diagnostics)
        self.autostart(p.autostart)

    # ------------------------------------------------------------ lifecycle

    def _configure(self) -> None:
        from teleop_tactar.server import TeleopServer  # noqa: PLC0415

        p = self.p
        self.server = TeleopServer(p.server, self._on_frame, self.session.page_command,
                                   self.session.page_episode).start()
        self.loop = PacedLoop(p.feedback_hz, self._feedback_tick, name="teleop-feedback").start()
        self.get_logger().info(f"teleop server at {self.server.url} (arms {self.arm_hands})")

    def _cleanup(self) -> None:
        if self.loop is not None:
            self.loop.stop()
            self.loop = None
        if self.server is not None:
            self.server.stop()
            self.server = None

    def _activate(self) -> None:
        self.session.activate()
        self.active = True

    def _deactivate(self) -> None:
        self.session.deactivate()
        self.active = False

    # ------------------------------------------------------------ the session's outputs

    def say(self, text: str) -> None:
        """One log line to the headset (UDP 10003), every page and this node's log."""
        self.headset.sender.log(text)
        if self.server is not None:
            self.server.broadcast({"type": "log", "text": text})
        self.get_logger().info(f"to the operator: {text}")

    def publish_targets(self, targets: dict) -> None:
        now = self._now()
        for arm, t in targets.items():
            self.target_pubs[arm].publish(msgs.pose_msg(now, self.p.world_frame, t.pos, t.quat))
            self.gripper_pubs[arm].publish(msgs.gripper_msg(now, t.gripper_width, self.p.retarget.gripper_force))

    def publish_command(self, to: str, cmd: dict) -> None:
        self.command_pubs[to].publish(msgs.json_msg(cmd))

    def info(self, text: str) -> None:
        self.get_logger().info(text)

    # ------------------------------------------------------------ ROS callbacks

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name == self.p.safety_diagnostics:
                self.session.on_safety_values(msgs.diagnostics_values(status))

    _now = node_now

    # ------------------------------------------------------------ server and feedback threads

    def _on_frame(self, frame, client: str) -> None:
        self.headset.heard_from(client)
        self.session.on_frame(frame, self.inputs.snapshot)

    def _feedback_tick(self) -> None:
        self.session.check_deadline()
        img = self._image
        self.headset.tick(self.inputs.snapshot(), self.session.page_state,
                          lambda: None if img is None else msgs.image_from_msg(img)[1], self.server)

    def _publish_diagnostics(self) -> None:
        if self.server is None:
            return
        sender = self.headset.sender
        session, level, message = self.session.diagnostics({
            "udp_log_sent": sender.sent["log"], "udp_errors": sender.errors, "ws_clients": self.server.clients})
        values = {**{f"server/{k}": v for k, v in self.server.counters.items()}, **session}
        self.diag_pub.publish(msgs.diagnostics_msg(self._now(), [msgs.diagnostic_status(
            "teleop_node", values, level, message)]))

    def close(self) -> None:
        super().close()
        self.headset.close()


#: the parameters this node declares (checked by `slowfast` before anything starts)
PARAMS = TeleopNodeParams


def main(args=None) -> int:
    return run_node(TeleopNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
