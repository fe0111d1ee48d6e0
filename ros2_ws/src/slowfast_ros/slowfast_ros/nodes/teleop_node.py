"""teleop_node: the TactAR teleop server (headset app over HTTP + UDP, WebXR page over
HTTPS/WebSocket) as a ROS 2 node.

Each valid hand message is retargeted (clutch, relative) and published at once, stamped
now, on ``<arm>/target_tcp_unsafe`` (PoseStamped, world) for safety_node, with the trigger
on ``<arm>/gripper/command``. Headset buttons and page buttons publish recorder commands on
``recorder/command`` (JSON). A feedback thread sends robot state (UDP 10001, ``feedback_hz``),
tactile arrows (10002) and the wrist force arrow (10005) at ``tactile_feedback_hz``, camera
JPEGs (10004) at ``camera_feedback_hz``, and the same to every WebXR page. Subscribes the
arm topics and the camera. A headset silent for ``deadline`` s disengages: safety_node then
holds the arm.

Episodes: an outcome button (success, failure, discard) or the page's "New episode" button
also asks the sim to end its episode (``sim/episode_command``; a sim in its operator mode
honours it, one in its task mode ignores it). Every ``sim/episode`` end or start releases
every clutch explicitly: a clutch still held moves nothing until it is let go and pressed
again, and the operator is told.

Log lines (UDP 10003, the protocol's ``text``; the page's log; this node's log): episode
ended and started, a clutch released by a reset, the recorder's episode events
(``recorder/events``: recording, saved, discarded, errors), the safety filter's
interventions (onsets, from ``safety_diagnostics``' /diagnostics) and a target that
diverged. The headset's address is the one its hand messages come from (or ``headset_host``).

A lifecycle node (``slowfast_ros.lifecycle``): configure starts the server and the feedback
thread, activate forwards the headset's targets (every clutch must be pressed afresh after a
deactivation), deactivate releases every clutch and forwards no target, gripper or headset
button command until activated (safety_node downstream then holds the arm on its command
watchdog); the operator is told both, and /diagnostics says ``active``. The server and the
feedback keep running while inactive; cleanup stops them.
"""
from __future__ import annotations

import dataclasses
import threading
import time

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String

from slowfast_ros import msgs, qos
from slowfast_ros.arm_io import ArmInputs, topic
from slowfast_ros.lifecycle import ManagedNode, ManagedParams
from slowfast_ros.node_util import PacedLoop, declare_params, param, run_node
from teleop_tactar.notices import REPORTED_INTERVENTIONS
from teleop_tactar.retarget import SILENCE_DEADLINE, RetargetConfig, Teleoperator
from teleop_tactar.server_config import ServerConfig


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
        from teleop_tactar.notices import InterventionWatch  # noqa: PLC0415
        InterventionWatch([r for r in self.safety_log if r])   # validates the reasons


class TeleopNode(ManagedNode):
    active_note = "forwarding the headset's targets"
    inactive_note = "no target forwarded until activated (safety_node holds the arm)"

    def __init__(self):
        super().__init__("teleop_node")
        from teleop_tactar.feedback import FeedbackSender  # noqa: PLC0415
        from teleop_tactar.notices import InterventionWatch  # noqa: PLC0415

        p = self.p = declare_params(self, TeleopNodeParams)
        self.teleop = Teleoperator(dict(zip(p.arms, p.hands)), p.retarget, p.deadline)
        self.side_of = dict(zip(p.arms, p.hands))
        self._lock = threading.Lock()
        self._forward = threading.Lock()   # a frame's forwarding and a transition never overlap
        self.frames_inactive = 0
        self._deactivated_once = False
        self.server = self.loop = None
        self.inputs = ArmInputs(self, p.arms)
        self.latency_ms: list[float] = []
        self.published = 0
        self._image = None
        self._episode: dict = {}           # the running sim episode's start event ({} = none seen)
        self._recording = False
        self._t0 = self._now()
        self.said = 0
        self.interventions = InterventionWatch([r for r in p.safety_log if r])
        self._diverged = {a: 0 for a in p.arms}
        self.target_pubs = {a: self.create_publisher(PoseStamped, topic(a, p.output_topic), qos.COMMAND)
                            for a in p.arms}
        self.gripper_pubs = {a: self.create_publisher(JointState, topic(a, "gripper/command"), qos.COMMAND)
                             for a in p.arms}
        self.record_pub = self.create_publisher(String, "recorder/command", qos.COMMAND)
        self.episode_cmd_pub = self.create_publisher(String, "sim/episode_command", qos.COMMAND)
        self.create_subscription(String, "sim/episode", self._on_episode, qos.EVENTS)
        self.create_subscription(String, "recorder/state", self._on_recorder_state, qos.LATCHED)
        self.create_subscription(String, "recorder/events", self._on_recorder_event, qos.EVENTS)
        if p.safety_diagnostics:
            self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        if p.camera:
            self.create_subscription(Image, f"{p.camera}/color/image_raw", self._on_image, qos.SENSOR_SUB)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_timer(1.0, self._publish_diagnostics)
        self.feedback = FeedbackSender(p.udp_port_offset)
        if p.headset_host:
            self.feedback.host = p.headset_host
        self._recorder_text = ""
        self._tick_n = 0
        self.autostart(p.autostart)

    # ------------------------------------------------------------ lifecycle

    def _configure(self) -> None:
        from teleop_tactar.server import TeleopServer  # noqa: PLC0415

        p = self.p
        self.server = TeleopServer(p.server, self._on_frame, self._on_page_command, self._on_page_episode).start()
        self.loop = PacedLoop(p.feedback_hz, self._feedback_tick, name="teleop-feedback").start()
        self.get_logger().info(f"teleop server at {self.server.url} (arms {dict(zip(p.arms, p.hands))})")

    def _cleanup(self) -> None:
        if self.loop is not None:
            self.loop.stop()
            self.loop = None
        if self.server is not None:
            self.server.stop()
            self.server = None

    def _activate(self) -> None:
        with self._forward, self._lock:
            self.teleop.release()   # a clutch held across the pause moves nothing until pressed again
            self.active = True
        if self._deactivated_once:
            self.say("teleop active: press the clutch to drive")

    def _deactivate(self) -> None:
        with self._forward, self._lock:   # waits for a frame being forwarded: none after this
            self.active = False
            self.teleop.release()
        self._deactivated_once = True
        self.say("teleop inactive: no target forwarded, the arm holds")

    # ------------------------------------------------------------ operator log lines

    def say(self, text: str) -> None:
        """One log line to the headset (UDP 10003), every page and this node's log."""
        self.feedback.log(text)
        if self.server is not None:
            self.server.broadcast({"type": "log", "text": text})
        self.said += 1
        self.get_logger().info(f"to the operator: {text}")

    # ------------------------------------------------------------ ROS callbacks

    def _on_episode(self, msg: String) -> None:
        from teleop_tactar import notices  # noqa: PLC0415

        try:
            ev = msgs.json_from_msg(msg)
        except ValueError:
            return
        if ev.get("event") not in ("start", "end"):
            return
        # a reset moves the robot under the hand: every clutch let go, and the operator told
        # (a clutch pressed on the robot as it is after the reset, news of which came late, stays)
        stamp = ev.get("hold_stamp") if ev["event"] == "start" else ev.get("stamp")
        with self._lock:
            released = self.teleop.release(float(stamp) if isinstance(stamp, (int, float)) else None)
            if ev["event"] == "start":
                self._episode = ev
        if not (isinstance(stamp, (int, float)) and stamp < self._t0 - 1.0):   # not a latched old one
            self.say(notices.episode_started(ev) if ev["event"] == "start" else notices.episode_ended(ev))
        if released:
            self.say(notices.clutch_released(released))

    def _on_recorder_state(self, msg: String) -> None:
        try:
            state = msgs.json_from_msg(msg)
        except ValueError:
            return
        self._recorder_text = state.get("line", "")
        self._recording = state.get("state") == "recording"

    def _on_recorder_event(self, msg: String) -> None:
        from teleop_tactar.notices import recorder_event  # noqa: PLC0415

        try:
            ev = msgs.json_from_msg(msg)
        except ValueError:
            return
        stamp = ev.get("stamp")
        if isinstance(stamp, (int, float)) and stamp < self._t0 - 1.0:
            return   # a latched event from before this node started
        line = recorder_event(ev)
        if line:
            self.say(line)

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name == self.p.safety_diagnostics:
                for line in self.interventions.update(msgs.diagnostics_values(status)):
                    self.say(line)

    def _on_image(self, msg: Image) -> None:
        self._image = msg

    # ------------------------------------------------------------ server thread

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_frame(self, frame, client: str) -> None:
        if not self.p.headset_host and not client.startswith("ws:"):
            self.feedback.host = client
        with self._forward:
            if not self.active:
                self.frames_inactive += 1   # inactive: the hand moves nothing
                return
            self._forward_frame(frame)

    def _forward_frame(self, frame) -> None:
        t_in = time.perf_counter()
        snap = self.inputs.snapshot()
        with self._lock:
            tcp = {a: (s.tcp_pos, s.tcp_quat) if np.isfinite(s.pose_stamp) else None for a, s in snap.items()}
            targets, commands = self.teleop.on_frame(frame, tcp, time.monotonic(),
                                                     {a: s.pose_stamp for a, s in snap.items()})
            diverged = [a for a, r in self.teleop.arms.items() if r.diverged != self._diverged[a]]
            for a in diverged:
                self._diverged[a] = self.teleop.arms[a].diverged
        now = self._now()
        for arm, t in targets.items():
            self.target_pubs[arm].publish(msgs.pose_msg(now, self.p.world_frame, t.pos, t.quat))
            self.gripper_pubs[arm].publish(msgs.gripper_msg(now, t.gripper_width, self.p.retarget.gripper_force))
        if targets:
            self.published += 1
            self.latency_ms.append((time.perf_counter() - t_in) * 1e3)
            del self.latency_ms[:-2000]
        for cmd in commands:
            self._on_page_command(cmd)
        if diverged:
            from teleop_tactar.notices import diverged as diverged_line  # noqa: PLC0415
            for a in diverged:
                self.say(diverged_line(a, self.p.retarget.max_divergence))

    def _on_page_command(self, cmd: str) -> None:
        """A recorder command (a headset button or the page's); an outcome also ends the
        sim episode when the sim runs in its operator mode."""
        from teleop_tactar.retarget import EPISODE_END_COMMANDS  # noqa: PLC0415

        self.record_pub.publish(msgs.json_msg({"cmd": cmd, "source": "teleop"}))
        self.get_logger().info(f"recorder command: {cmd}")
        if cmd in EPISODE_END_COMMANDS and self._episode.get("episode_end") == "operator":
            self._request_episode_end(cmd)

    def _on_page_episode(self, cmd: str) -> None:
        """The page's "New episode" button (``cmd`` "end")."""
        ep = self._episode
        if not ep:
            self.say("no sim episode to end")
            return
        if ep.get("episode_end") != "operator":
            self.say(f"episode {ep.get('episode')} ends at the task's length (the sim is not in its operator mode)")
            return
        if self._recording:   # the bag must not run across the reset: saved, without an outcome
            self.record_pub.publish(msgs.json_msg({"cmd": "stop", "source": "teleop"}))
        self._request_episode_end("page")

    def _request_episode_end(self, why: str) -> None:
        episode = self._episode.get("episode")
        self.episode_cmd_pub.publish(msgs.json_msg({"cmd": "end", "episode": episode, "source": why}))
        self.get_logger().info(f"episode {episode}: end requested ({why})")

    # ------------------------------------------------------------ feedback thread

    def _feedback_tick(self) -> None:
        from teleop_tactar.feedback import encode_jpeg, marker_arrows  # noqa: PLC0415
        from teleop_tactar.frames import pose_to_unity, quat_to_matrix  # noqa: PLC0415

        with self._lock:
            self.teleop.check_deadline(time.monotonic())
        self._tick_n += 1
        snap = self.inputs.snapshot()
        tcp, grip = {}, {}
        for arm, s in snap.items():
            if np.isfinite(s.pose_stamp):
                tcp[self.side_of[arm]] = pose_to_unity(s.tcp_pos, s.tcp_quat)
                grip[self.side_of[arm]] = (self.p.retarget.gripper_open, 0.0)
        self.feedback.robot_state(tcp, grip)
        every = max(1, int(round(self.p.feedback_hz / self.p.tactile_feedback_hz)))
        page = {"type": "state", "tcp": tcp, "engaged": {a: r.engaged for a, r in self.teleop.arms.items()},
                "recorder": self._recorder_text} if self._tick_n % every == 0 else None
        if self._tick_n % every == 0:
            page["tactile"], page["force"] = {}, {}
            for arm, s in snap.items():
                if s.tactile.size:
                    starts, ends = marker_arrows(s.tactile)
                    self.feedback.tactile(f"{arm}_tactile", starts, ends)
                    page["tactile"][arm] = np.round(np.concatenate([starts[:, :2], ends[:, :2]], 1), 5).tolist()
                if np.isfinite(s.wrench).all() and np.isfinite(s.pose_stamp):
                    f_world = quat_to_matrix(s.tcp_quat) @ s.wrench[:3]
                    end = s.tcp_pos + 0.01 * f_world
                    from teleop_tactar.frames import world_to_unity_pos  # noqa: PLC0415
                    self.feedback.force(f"{arm}_force", world_to_unity_pos(s.tcp_pos), world_to_unity_pos(end))
                    page["force"][arm] = np.round(f_world, 3).tolist()
        cam_every = max(1, int(round(self.p.feedback_hz / self.p.camera_feedback_hz)))
        img = self._image
        jpeg = None
        if img is not None and self._tick_n % cam_every == 0:
            try:
                _, rgb = msgs.image_from_msg(img)
                if rgb.ndim == 3:
                    jpeg = encode_jpeg(rgb)
                    self.feedback.images([{"id": self.p.camera, "image": jpeg}])
            except ValueError:
                pass
        if self.server.clients:
            if jpeg is not None:
                import base64  # noqa: PLC0415
                self.server.broadcast({"type": "image", "id": self.p.camera,
                                       "jpeg": base64.b64encode(jpeg).decode()})
            if page is not None:
                self.server.broadcast(page)

    def _publish_diagnostics(self) -> None:
        if self.server is None:
            return
        values = {f"server/{k}": v for k, v in self.server.counters.items()}
        values.update({"active": self.active, "frames_while_inactive": self.frames_inactive,
                       "published": self.published, "deadline_timeouts": self.teleop.timeouts,
                       "log_lines": self.said, "udp_log_sent": self.feedback.sent["log"],
                       "udp_errors": self.feedback.errors, "ws_clients": self.server.clients})
        values.update({f"{a}/engaged": r.engaged for a, r in self.teleop.arms.items()})
        values.update({f"{a}/enabled": e for a, e in self.teleop.enabled.items()})
        values.update({f"{a}/diverged": r.diverged for a, r in self.teleop.arms.items()})
        if self.latency_ms:
            values["latency_ms_p99"] = float(np.percentile(self.latency_ms, 99))
        level, message = ("ok", "") if self.active else ("warn", "inactive: no target forwarded")
        self.diag_pub.publish(msgs.diagnostics_msg(self._now(), [msgs.diagnostic_status(
            "teleop_node", values, level, message)]))

    def close(self) -> None:
        super().close()
        self.feedback.close()


#: the parameters this node declares (checked by `slowfast` before anything starts)
PARAMS = TeleopNodeParams


def main(args=None) -> int:
    return run_node(TeleopNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
