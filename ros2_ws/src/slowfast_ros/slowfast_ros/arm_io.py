"""The latest state of each arm, kept from its topics (callbacks only store).

Used by every controller node (expert, reactive runtime, teleoperation): subscribe once,
read a consistent snapshot from the control thread.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
from geometry_msgs.msg import PoseStamped, WrenchStamped
from rclpy.node import Node
from sensor_msgs.msg import PointCloud2

from policy.serving import ArmHistory, ArmSnapshot, filter_command, sync_estop  # noqa: F401 (re-exported)
from slowfast_ros import msgs, qos
from slowfast_ros.node_util import param


def topic(arm: str, name: str) -> str:
    return f"{arm}/{name}" if arm else name


def controller_states(snap: dict[str, ArmSnapshot], start: float, max_input_age: float):
    """The arms as a scripted controller (the sim expert, the scripted operator) sees them.

    Returns ``(status, states, newest)``: status "waiting" (an input never arrived),
    "before_start" (still the hold before the episode), "stale" (inputs further apart than
    ``max_input_age``) or "ok" with ``states`` = {arm: sim.ArmState} stamped in seconds since
    ``start`` and ``newest`` the newest capture stamp."""
    if not all(s.complete for s in snap.values()):
        return "waiting", None, float("nan")
    newest = max(s.newest_stamp for s in snap.values())
    if newest < start:
        return "before_start", None, newest
    if newest - min(s.oldest_stamp for s in snap.values()) > max_input_age:
        return "stale", None, newest
    from sim import ArmState  # noqa: PLC0415 - only scripted controllers need the sim's types

    states = {a: ArmState(stamp=s.newest_stamp - start, tcp_pos=s.tcp_pos, tcp_quat=s.tcp_quat,
                          tcp_linvel=s.tcp_linvel, tcp_angvel=s.tcp_angvel, wrench=s.wrench,
                          tactile=s.tactile, gripper=None) for a, s in snap.items()}
    return "ok", states, newest


class ArmInputs:
    """Subscribes <arm>/tcp_pose, <arm>/tcp_wrench, <arm>/tactile/markers for each arm.

    TCP velocity is estimated from consecutive poses (the topic table has no twist topic),
    with a first-order low-pass so that one jittery stamp does not spike it.
    """

    def __init__(self, node: Node, arms, velocity_tau: float = 0.02, history_s: float = 0.0,
                 polled: bool = False, tactile: bool = True):
        """``polled``: the readings are taken by :meth:`poll` from the caller's control thread
        instead of by executor callbacks. rclpy spends ~200 us of Python per callback; at
        1 kHz of wrench that is a fifth of a core, and the executor thread then competes with
        the control thread for the GIL. Polled subscriptions live on a helper node that no
        executor spins. ``tactile``: False skips the marker field topic (not needed)."""
        self.arms = tuple(arms)
        self._lock = threading.Lock()
        self._state = {a: ArmSnapshot() for a in self.arms}
        self._tau = velocity_tau
        self.rejected = 0
        self.history_s = history_s
        self.history = ArmHistory(self.arms, history_s)
        self._io_node = None
        if polled:
            import rclpy  # noqa: PLC0415
            self._io_node = rclpy.create_node(f"{node.get_name()}_inputs", namespace=node.get_namespace(),
                                              context=node.context, start_parameter_services=False)
        target = self._io_node or node
        self._polled: list = []
        for arm in self.arms:
            topics = [(PoseStamped, "tcp_pose", self._on_pose), (WrenchStamped, "tcp_wrench", self._on_wrench)]
            if tactile:
                topics.append((PointCloud2, "tactile/markers", self._on_tactile))
            for mtype, name, handler in topics:
                sub = target.create_subscription(mtype, topic(arm, name),
                                                 lambda m, a=arm, h=handler: h(a, m), qos.SENSOR_SUB)
                self._polled.append((sub, arm, handler))

    def poll(self) -> None:
        """Take every pending reading (polled mode), oldest first, from the calling thread."""
        if self._io_node is None:
            return
        for sub, arm, handler in self._polled:
            with sub.handle:
                while (taken := sub.handle.take_message(sub.msg_type, False)) is not None:
                    handler(arm, taken[0])

    def close(self) -> None:
        if self._io_node is not None:
            self._io_node.destroy_node()
            self._io_node = None

    def _on_pose(self, arm: str, msg: PoseStamped) -> None:
        stamp, pos, quat = msgs.pose_from_msg(msg)
        if not (np.isfinite(pos).all() and np.isfinite(quat).all()):
            self.rejected += 1
            return
        with self._lock:
            s = self._state[arm]
            dt = stamp - s.pose_stamp
            if np.isfinite(dt) and 1e-4 < dt < 0.1:
                v = (pos - s.tcp_pos) / dt
                a = dt / (self._tau + dt)
                s.tcp_linvel = (1 - a) * s.tcp_linvel + a * v
            s.pose_stamp, s.tcp_pos, s.tcp_quat = stamp, pos, quat
            if self.history_s:
                self.history.add(arm, "pose", stamp, np.concatenate([pos, quat]))

    def _on_wrench(self, arm: str, msg: WrenchStamped) -> None:
        stamp, w = msgs.wrench_from_msg(msg)
        if not np.isfinite(w).all():
            self.rejected += 1
            return
        with self._lock:
            s = self._state[arm]
            s.wrench_stamp, s.wrench = stamp, w
            if self.history_s:
                self.history.add(arm, "wrench", stamp, w)

    def _on_tactile(self, arm: str, msg: PointCloud2) -> None:
        try:
            stamp, markers = msgs.markers_from_msg(msg)
        except ValueError:
            self.rejected += 1
            return
        with self._lock:
            s = self._state[arm]
            s.tactile_stamp, s.tactile = stamp, markers
            if self.history_s:
                self.history.add(arm, "tactile", stamp, markers)

    def snapshot(self) -> dict[str, ArmSnapshot]:
        """A copy of every arm's latest state, taken under one lock."""
        with self._lock:
            return {a: ArmSnapshot(**vars(s)) for a, s in self._state.items()}

    def at(self, kind: str, stamp: float, tolerance: float) -> list | None:
        """Per arm, the ``kind`` ("pose": (7,) pos + quat xyzw; "wrench"; "tactile") reading
        nearest to ``stamp`` within ``tolerance`` s; None if any arm has none (the
        :class:`policy.serving.ArmHistory` lookup, under this object's lock)."""
        with self._lock:
            return self.history.at(kind, stamp, tolerance)

    def before(self, kind: str, stamp: float) -> list | None:
        """Per arm, the newest ``kind`` reading captured at or before ``stamp`` (the
        :class:`policy.serving.ArmHistory` lookup, under this object's lock)."""
        with self._lock:
            return self.history.before(kind, stamp)

    def reset(self) -> None:
        with self._lock:
            self._state = {a: ArmSnapshot() for a in self.arms}
            self.history.clear()


@dataclass
class SafetyParams:
    """The parameters every node that commands an arm through the safety filter declares
    (rdp_fast, safety_node): which arms, how fast, and the filter's limits. Nodes subclass
    it and add their own; ``__post_init__`` validates the shared ones."""

    arms: list = param(["arm"], "arm namespaces")
    control_hz: float = param(200.0, "control/output rate (Hz), 1..1000")
    world_frame: str = param("world", "frame of TCP poses and commands")
    max_contact_age: float = param(0.05, "wrench/contact reading older than this -> hold (s)")
    command_timeout: float = param(0.2, "no fresh command for this long -> hold (s)")
    workspace_lo: list = param([-0.35, -0.25, -0.08], "safety workspace box, lower corner (m, world)")
    workspace_hi: list = param([0.35, 0.25, 0.40], "safety workspace box, upper corner (m, world)")
    max_speed: float = param(0.25, "TCP speed limit (m/s)")
    max_angular_speed: float = param(1.5, "TCP angular speed limit (rad/s)")
    max_accel: float = param(3.0, "TCP acceleration limit (m/s^2)")
    force_limit: float = param(60.0, "contact force that triggers a back-off (N)")
    force_release: float = param(30.0, "force below which the back-off hold ends (N)")
    backoff_distance: float = param(0.01, "back-off distance along the force (m)")
    max_step: float = param(0.05, "the command is never farther than this from the measured TCP (m); a "
                                  "measured jump larger than this between ticks is a reset of the plant")
    episode_topic: str = param("", "latched JSON episode events (the sim's 'sim/episode'); a start restarts "
                                   "the filter from the measured pose ('' = none)")

    def __post_init__(self):
        if not self.arms:
            raise ValueError("arms: at least one arm")
        if not (1.0 <= self.control_hz <= 1000.0):
            raise ValueError(f"control_hz: {self.control_hz} outside 1..1000")
        if not (0.001 <= self.max_contact_age <= 1.0):
            raise ValueError(f"max_contact_age: {self.max_contact_age} outside [0.001, 1] s")

    def safety_config(self):
        """The policy.safety.SafetyConfig these parameters describe (validated there too)."""
        from policy.safety import SafetyConfig  # noqa: PLC0415

        return SafetyConfig(workspace_lo=tuple(self.workspace_lo), workspace_hi=tuple(self.workspace_hi),
                            max_speed=self.max_speed, max_angular_speed=self.max_angular_speed,
                            max_accel=self.max_accel, force_limit=self.force_limit,
                            force_release=self.force_release, backoff_distance=self.backoff_distance,
                            contact_timeout=self.max_contact_age, command_timeout=self.command_timeout,
                            max_step=self.max_step)


class EpisodeStarts:
    """The start events of an episode topic (``sim/episode``), for a node that commands arms.

    ``check(snap)`` on each control tick: "run" (nothing pending), "wait" (an episode started
    and the arms' measured state is still from before it: command nothing), or "restart"
    (once per start, on the first tick with the new episode's state: restart filters and
    executors from the measured pose)."""

    def __init__(self, node: Node, topic_name: str):
        self._lock = threading.Lock()
        self._after: float | None = None
        if topic_name:
            from std_msgs.msg import String  # noqa: PLC0415
            node.create_subscription(String, topic_name, self._on_event, qos.LATCHED)

    def _on_event(self, msg) -> None:
        event = msgs.episode_start(msg)
        if event is not None:
            with self._lock:
                self._after = float(event.get("hold_stamp", event.get("start_stamp", 0.0)))

    def check(self, snap: dict[str, ArmSnapshot]) -> str:
        with self._lock:
            after = self._after
            if after is None:
                return "run"
            if min(s.pose_stamp for s in snap.values()) < after:
                return "wait"
            self._after = None
        return "restart"


def publish_hold(node: Node, pubs: dict, snap: dict[str, ArmSnapshot], stamp: float, frame: str) -> None:
    """Command every arm to stay where it is measured: the last word of a node that commands
    arms, on its way out (a robot's controller keeps the last target it got)."""
    if not node.context.ok():
        return
    for arm, s in snap.items():
        if np.isfinite(s.pose_stamp) and np.isfinite(s.tcp_pos).all():
            pubs[arm].publish(msgs.pose_msg(stamp, frame, s.tcp_pos, s.tcp_quat))


def safety_report(filters: dict) -> tuple[dict, bool]:
    """Diagnostics values of every arm's filter, and whether any arm is holding."""
    values, holding = {}, False
    for arm, sf in filters.items():
        values.update({f"{arm}/{k}": v for k, v in sf.report().items()})
        holding = holding or sf.holding
    return values, holding
