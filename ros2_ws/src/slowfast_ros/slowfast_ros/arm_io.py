"""The latest state of each arm, kept from its topics (callbacks only store).

Used by every controller node (expert, reactive runtime, teleoperation): subscribe once,
read a consistent snapshot from the control thread.
"""
from __future__ import annotations

import math
import struct
import threading
import time
from dataclasses import dataclass

import numpy as np
from geometry_msgs.msg import PoseStamped, WrenchStamped
from rclpy.node import Node
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import PointCloud2

from policy.safety import SafetyConfig, safety_report  # noqa: F401 (re-exported)
from policy.serving import ArmHistory, ArmSnapshot, filter_command, sync_estop  # noqa: F401 (re-exported)
from slowfast_ros import msgs, qos
from slowfast_ros.lifecycle import ManagedParams
from slowfast_ros.node_util import helper_node, param


#: The ros2_control stack a real arm runs under the README's robot setup (the FZI
#: cartesian_controllers, a TCP pose broadcaster, ros2_controllers' F/T sensor broadcaster):
#: robot_bridge_node's defaults, and what sim_node offers with ``interface: ros2_control``.
ROS2_CONTROL = {"controller": "cartesian_compliance_controller", "base_frame": "base_link",
                "pose_topic": "/tcp_pose_broadcaster/pose", "wrench_topic": "/force_torque_sensor_broadcaster/wrench",
                "joint_states": "/joint_states"}

#: How sim_node meets the stack: ``stack`` (the stack's own <arm>/ topics, world frame) or
#: ``ros2_control`` (the ROS2_CONTROL topics of one arm, for robot_bridge_node).
INTERFACES = ("stack", "ros2_control")


def controller_target_topic(controller: str) -> str:
    """The Cartesian controller's command topic: ``/<controller>/target_frame``."""
    return f"/{controller.strip('/')}/target_frame"


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


# ------------------------------------------------------------------ raw CDR (polled mode)
# The polled control thread takes its readings serialized and reads the few numbers it needs
# straight from the CDR bytes: rclpy's conversion to a Python message object costs ~50 us
# for a WrenchStamped (a raw take ~9 us), and most of a PointCloud2's fields are constant.

_CDR_LE = b"\x00\x01"     # encapsulation: plain CDR, little endian (what the DDS layers send)
_U32 = struct.Struct("<I")
_HEADER = struct.Struct("<iII")      # stamp sec, nanosec, frame_id length (with its NUL)
_POSE = struct.Struct("<7d")
_WRENCH = struct.Struct("<6d")
_MARKER_LAYOUT = ((b"x", 0), (b"y", 4), (b"dx", 8), (b"dy", 12))


def take_raw(sub):
    """One pending message of a subscription made with ``raw=True`` (its CDR bytes, message
    info), taken in the calling thread without an executor; None when none is pending."""
    with sub.handle:
        return sub.handle.take_message(sub.msg_type, True)


class CdrLayoutError(ValueError):
    """Not plain little-endian CDR (the caller deserializes it the slow way)."""


def _cdr_header(buf) -> tuple[float, int]:
    """(stamp, offset just after header.frame_id) of a stamped message's CDR bytes."""
    if buf[:2] != _CDR_LE:
        raise CdrLayoutError("not plain little-endian CDR")
    sec, nsec, n = _HEADER.unpack_from(buf, 4)
    return sec + nsec * 1e-9, 16 + n    # the float msgs.from_time computes, to the bit


def _align8(off: int) -> int:
    return 4 + ((off - 4 + 7) & ~7)     # CDR aligns from the end of the 4-byte encapsulation


def cdr_pose(buf) -> tuple[float, np.ndarray]:
    """PoseStamped CDR -> (stamp, (7,) position + quaternion x, y, z, w)."""
    stamp, off = _cdr_header(buf)
    return stamp, np.array(_POSE.unpack_from(buf, _align8(off)))


def cdr_pose_in_frame(buf) -> tuple[float, str, np.ndarray]:
    """PoseStamped CDR -> (stamp, header.frame_id, (7,) position + quaternion x, y, z, w)."""
    stamp, off = _cdr_header(buf)
    frame = bytes(buf[16:off - 1]).decode("utf-8", "replace")
    return stamp, frame, np.array(_POSE.unpack_from(buf, _align8(off)))


def cdr_wrench(buf) -> tuple[float, np.ndarray]:
    """WrenchStamped CDR -> (stamp, [fx, fy, fz, tx, ty, tz])."""
    stamp, off = _cdr_header(buf)
    return stamp, np.array(_WRENCH.unpack_from(buf, _align8(off)))


def cdr_markers(buf) -> tuple[float, np.ndarray]:
    """PointCloud2 CDR of a marker field (float32 x, y, dx, dy) -> (stamp, (N, 4) float32),
    with the checks of :func:`msgs.markers_from_msg` (ValueError)."""
    stamp, off = _cdr_header(buf)
    off = (off + 3) & ~3
    height, width, nfields = struct.unpack_from("<III", buf, off)
    off += 12
    if nfields < 4:
        raise ValueError(f"tactile cloud must have float32 fields x, y, dx, dy; got {nfields} field(s)")
    for i in range(nfields):
        n = _U32.unpack_from(buf, off)[0]
        name = bytes(buf[off + 4:off + 3 + n])
        off = (off + 4 + n + 3) & ~3
        f_off, dtype = struct.unpack_from("<IB", buf, off)
        off = (off + 5 + 3) & ~3
        count = _U32.unpack_from(buf, off)[0]
        off += 4
        if i < 4 and (name, f_off) != _MARKER_LAYOUT[i] or i < 4 and (dtype != 7 or count != 1):
            raise ValueError(f"tactile cloud must have float32 fields x, y, dx, dy; got {name!r} at {f_off}")
    bigendian = buf[off]
    off = (off + 1 + 3) & ~3
    point_step, _row_step, nbytes = struct.unpack_from("<III", buf, off)
    off += 12
    npts = height * width
    if bigendian or point_step != 16 or nbytes < 16 * npts:
        raise ValueError(f"tactile cloud must be little-endian float32 x, y, dx, dy (16 bytes a point), "
                         f"got point_step {point_step}")
    return stamp, np.frombuffer(buf, "<f4", 4 * npts, off).reshape(npts, 4).copy()


class RawPosePublisher:
    """Publishes PoseStamped as CDR bytes it packs itself into a buffer kept between calls:
    no message object is built (``msgs.pose_msg`` + rclpy's conversion cost ~40 us a call).
    The bytes are those rclpy would send for ``msgs.pose_msg(stamp, frame_id, pos, quat)``."""

    def __init__(self, publisher, frame_id: str):
        self.publisher = publisher
        frame = frame_id.encode() + b"\x00"
        head = 16 + len(frame)                     # encapsulation, stamp, length, frame_id + NUL
        self._body = _align8(head)
        self._buf = bytearray(self._body + 56)
        self._buf[:4] = _CDR_LE + b"\x00\x00"
        _U32.pack_into(self._buf, 12, len(frame))
        self._buf[16:head] = frame

    def pack(self, stamp: float, pos, quat) -> bytes:
        ns = int(round(stamp * 1e9))               # as msgs.to_time
        struct.pack_into("<iI", self._buf, 4, ns // 1_000_000_000, ns % 1_000_000_000)
        _POSE.pack_into(self._buf, self._body, float(pos[0]), float(pos[1]), float(pos[2]),
                        float(quat[0]), float(quat[1]), float(quat[2]), float(quat[3]))
        return bytes(self._buf)

    def publish(self, stamp: float, pos, quat) -> None:
        self.publisher.publish(self.pack(stamp, pos, quat))


class ArmInputs:
    """Subscribes <arm>/tcp_pose, <arm>/tcp_wrench, <arm>/tactile/markers for each arm.

    TCP velocity is estimated from consecutive poses (the topic table has no twist topic),
    with a first-order low-pass so that one jittery stamp does not spike it.
    """

    def __init__(self, node: Node, arms, velocity_tau: float = 0.02, history_s: float = 0.0,
                 polled: bool = False, tactile: bool = True, trigger: str = "wrench"):
        """``polled``: the readings are taken by the caller's control thread instead of by
        executor callbacks: :meth:`poll` / :meth:`drain` (everything pending),
        :meth:`take_trigger` (one ``trigger`` reading, "wrench" or "tactile", of every arm),
        :meth:`wait` (block on the subscriptions, an rcl wait set of their own) -- the source
        interface of :class:`hardware.realtime.TickLoop`. rclpy spends ~200 us of Python per
        callback; at 1 kHz of wrench that is a fifth of a core, and the executor thread then
        competes with the control thread for the GIL. Polled subscriptions live on a helper
        node that no executor spins, and are taken serialized (raw CDR, read in place).
        ``tactile``: False skips the marker field topic (not needed). A node whose readers
        are other threads (rdp_slow) has them taken the same way by a thread of their own
        (:meth:`start_reader`)."""
        self.arms = tuple(arms)
        self._reader: threading.Thread | None = None
        self._reader_stop = threading.Event()
        self._lock = threading.Lock()
        self._state = {a: ArmSnapshot() for a in self.arms}
        self._tau = velocity_tau
        self.rejected = 0
        self.history_s = history_s
        self.history = ArmHistory(self.arms, history_s)
        self._io_node = None
        if trigger not in ("wrench", "tactile") or (trigger == "tactile" and not tactile):
            raise ValueError(f"trigger {trigger!r}: 'wrench', or 'tactile' with the tactile topic")
        if polled:
            self._io_node = helper_node(node, "inputs")
        target = self._io_node or node
        self._polled: list = []       # (subscription, arm, raw reader) of every topic
        self._triggers: list = []     # per arm, the trigger topic's entry
        self._others: list = []       # the rest
        readers = {"tcp_pose": self._raw_pose, "tcp_wrench": self._raw_wrench,
                   "tactile/markers": self._raw_tactile}
        for arm in self.arms:
            topics = [(PoseStamped, "tcp_pose", self._on_pose), (WrenchStamped, "tcp_wrench", self._on_wrench)]
            if tactile:
                topics.append((PointCloud2, "tactile/markers", self._on_tactile))
            for mtype, name, handler in topics:
                sub = target.create_subscription(mtype, topic(arm, name), lambda m, a=arm, h=handler: h(a, m),
                                                 qos.SENSOR_SUB, raw=polled)
                entry = (sub, arm, readers[name])
                self._polled.append(entry)
                (self._triggers if name == {"wrench": "tcp_wrench", "tactile": "tactile/markers"}[trigger]
                 else self._others).append(entry)
        self._have = [math.nan] * len(self.arms)   # stamp of each arm's trigger reading taken, not yet ticked
        self._received = 0         # DDS reception time (ns, system clock) of the last message taken
        self.trigger_received = math.nan   # ... of the newest trigger reading returned by take_trigger (s)
        self._wait_set = self._guard = None
        if polled:
            from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy  # noqa: PLC0415
            self._guard = self._io_node.create_guard_condition(lambda: None)
            self._wait_set = _rclpy.WaitSet(len(self._polled), 1, 0, 0, 0, 0, node.context.handle)

    # ------------------------------------------------------------ polled mode (control thread)

    def _take(self, entry) -> float | None:
        """Take one message of a polled subscription into the state: its stamp (NaN when
        unreadable; a rejected reading counts and is not stored), None when none was pending."""
        sub, arm, reader = entry
        taken = take_raw(sub)
        if taken is None:
            return None
        self._received = taken[1].get("received_timestamp") or 0
        return reader(arm, taken[0], sub.msg_type)

    def poll(self) -> None:
        """Take every pending reading (polled mode), oldest first, from the calling thread."""
        self.drain()

    def drain(self) -> None:
        """Take every pending reading of every topic (the freshest wins)."""
        if self._io_node is None:
            return
        for entry in self._polled:
            while self._take(entry) is not None:
                pass
        for i in range(len(self._have)):
            self._have[i] = math.nan

    def take_trigger(self) -> float | None:
        """Take one trigger reading (wrench or tactile field) of each arm that has none
        waiting; when every arm has one, take the pending readings of the other topics too
        (the pose of the same instant, published first, is in) and return the trigger's
        capture stamp (the oldest of the arms'). None while an arm's reading is missing.
        Each reading is returned once: a trigger taken is consumed. A reading that is
        rejected (NaN, malformed) still triggers: the tick then sees the last valid reading
        age, and the safety filter holds when it is too old."""
        if self._io_node is None:
            return None
        have = self._have
        for i, entry in enumerate(self._triggers):
            if have[i] != have[i]:    # NaN: this arm's next reading is not in yet
                stamp = self._take(entry)
                if stamp is None:
                    return None
                have[i] = stamp if stamp == stamp else -math.inf   # unreadable: still a reading
                self.trigger_received = self._received * 1e-9 if self._received else math.nan
        for entry in self._others:
            while self._take(entry) is not None:
                pass
        stamp = min(have)
        for i in range(len(have)):
            have[i] = math.nan
        return stamp

    def wait(self, timeout_s: float) -> None:
        """Block until a polled subscription has data (or :meth:`wake`, or ``timeout_s``)."""
        ws = self._wait_set
        if ws is None:
            time.sleep(timeout_s)
            return
        ws.clear_entities()
        for sub, _, _ in self._polled:
            ws.add_subscription(sub.handle)
        ws.add_guard_condition(self._guard.handle)
        ws.wait(int(timeout_s * 1e9))

    def wake(self) -> None:
        """End a :meth:`wait` in another thread at once."""
        if self._guard is not None:
            self._guard.trigger()

    def start_reader(self, name: str = "inputs") -> None:
        """Polled mode, for a node whose readers are other threads: a thread of this object
        takes every reading as it arrives (raw, ~25 us each, against ~200 us for an executor
        callback: at 1 kHz of pose and wrench the callbacks took ~0.4 of a core), and
        :meth:`snapshot` then returns copies, as with callbacks. Stopped by :meth:`close`."""
        if self._io_node is None:
            raise ValueError("start_reader needs polled=True")
        if self._reader is None:
            self._reader = threading.Thread(target=self._read, name=name, daemon=True)
            self._reader.start()

    def _read(self) -> None:
        stop, context = self._reader_stop, self._io_node.context
        while not stop.is_set() and context.ok():
            try:
                self.wait(0.1)
                if not stop.is_set():
                    self.drain()
            except Exception:  # noqa: BLE001 - the context went down under the wait: shutting down
                if context.ok() and not stop.is_set():
                    raise
                return

    def close(self) -> None:
        if self._reader is not None:
            self._reader_stop.set()
            self.wake()
            self._reader.join(2.0)
            self._reader = None
        if self._io_node is not None:
            self._wait_set = None
            self._io_node.destroy_node()
            self._io_node = None

    # ------------------------------------------------------------ readers: raw (polled) or message

    def _raw_pose(self, arm: str, buf, mtype) -> float:
        try:
            stamp, pose = cdr_pose(buf)
        except (CdrLayoutError, struct.error):
            stamp, pos, quat = msgs.pose_from_msg(deserialize_message(buf, mtype))
            pose = np.concatenate([pos, quat])
        self._put_pose(arm, stamp, pose)
        return stamp

    def _raw_wrench(self, arm: str, buf, mtype) -> float:
        try:
            stamp, w = cdr_wrench(buf)
        except (CdrLayoutError, struct.error):
            stamp, w = msgs.wrench_from_msg(deserialize_message(buf, mtype))
        self._put_wrench(arm, stamp, w)
        return stamp

    def _raw_tactile(self, arm: str, buf, mtype) -> float:
        try:
            try:
                stamp, markers = cdr_markers(buf)
            except (CdrLayoutError, struct.error):
                stamp, markers = msgs.markers_from_msg(deserialize_message(buf, mtype))
        except (ValueError, struct.error):
            self.rejected += 1
            return math.nan
        self._put_tactile(arm, stamp, markers)
        return stamp

    def _on_pose(self, arm: str, msg: PoseStamped) -> None:
        stamp, pos, quat = msgs.pose_from_msg(msg)
        self._put_pose(arm, stamp, np.concatenate([pos, quat]))

    def _on_wrench(self, arm: str, msg: WrenchStamped) -> None:
        self._put_wrench(arm, *msgs.wrench_from_msg(msg))

    def _on_tactile(self, arm: str, msg: PointCloud2) -> None:
        try:
            stamp, markers = msgs.markers_from_msg(msg)
        except ValueError:
            self.rejected += 1
            return
        self._put_tactile(arm, stamp, markers)

    def _put_pose(self, arm: str, stamp: float, pose: np.ndarray) -> None:
        """``pose``: (7,) position + quaternion, kept (the state's arrays are views of it)."""
        if not np.isfinite(pose).all():
            self.rejected += 1
            return
        pos, quat = pose[:3], pose[3:]
        with self._lock:
            s = self._state[arm]
            dt = stamp - s.pose_stamp
            if 1e-4 < dt < 0.1:     # False for NaN (no pose yet)
                a = dt / (self._tau + dt)
                s.tcp_linvel = (1 - a) * s.tcp_linvel + (a / dt) * (pos - s.tcp_pos)
            s.pose_stamp, s.tcp_pos, s.tcp_quat = stamp, pos, quat
            if self.history_s:
                self.history.add(arm, "pose", stamp, pose)

    def _put_wrench(self, arm: str, stamp: float, w: np.ndarray) -> None:
        if not np.isfinite(w).all():
            self.rejected += 1
            return
        with self._lock:
            s = self._state[arm]
            s.wrench_stamp, s.wrench = stamp, w
            if self.history_s:
                self.history.add(arm, "wrench", stamp, w)

    def _put_tactile(self, arm: str, stamp: float, markers: np.ndarray) -> None:
        with self._lock:
            s = self._state[arm]
            s.tactile_stamp, s.tactile = stamp, markers
            if self.history_s:
                self.history.add(arm, "tactile", stamp, markers)

    def snapshot(self) -> dict[str, ArmSnapshot]:
        """Every arm's latest state, taken under one lock: a copy, except in polled mode
        without a reader thread, where the readings are taken by the caller's thread itself
        and the live state is returned (nothing else writes it; read it, do not keep it past
        the next take)."""
        if self._io_node is not None and self._reader is None:
            return self._state
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
class SafetyParams(ManagedParams):
    """The parameters every node that commands an arm through the safety filter declares
    (rdp_fast, safety_node): which arms, how fast, and the filter's limits as ``safety.*``
    (``policy.safety.SafetyConfig``, their one definition), and ``autostart`` (they are
    managed nodes). Nodes subclass it and add their own; ``__post_init__`` validates the
    shared ones."""

    arms: list = param(["arm"], "arm namespaces")
    control_hz: float = param(200.0, "control/output rate (Hz), 1..1000")
    world_frame: str = param("world", "frame of TCP poses and commands")
    safety: SafetyConfig = param(SafetyConfig(), "the safety filter's limits")
    episode_topic: str = param("", "latched JSON episode events (the sim's 'sim/episode'); a start restarts "
                                   "the filter from the measured pose ('' = none)")

    def __post_init__(self):
        if not self.arms:
            raise ValueError("arms: at least one arm")
        if not (1.0 <= self.control_hz <= 1000.0):
            raise ValueError(f"control_hz: {self.control_hz} outside 1..1000")


class EpisodeStarts:
    """The start events of an episode topic (``sim/episode``), for a node that commands arms.

    ``check(snap)`` on each control tick: "run" (nothing pending), "wait" (an episode started
    and the arms' measured state is still from before it: command nothing), or "restart"
    (once per start, on the first tick with the new episode's state: restart filters and
    executors from the measured pose; ``start_stamp`` is then that episode's start)."""

    def __init__(self, node: Node, topic_name: str):
        self._lock = threading.Lock()
        self._after: float | None = None
        #: the start stamp of the episode the last "restart" was for (-inf before any)
        self.start_stamp = float("-inf")
        self._start = float("-inf")
        self._node, self._sub = node, None
        if topic_name:
            from std_msgs.msg import String  # noqa: PLC0415
            self._sub = node.create_subscription(String, topic_name, self._on_event, qos.LATCHED)

    def close(self) -> None:
        if self._sub is not None:
            self._node.destroy_subscription(self._sub)
            self._sub = None

    def _on_event(self, msg) -> None:
        event = msgs.episode_start(msg)
        if event is not None:
            with self._lock:
                self._after = float(event.get("hold_stamp", event.get("start_stamp", 0.0)))
                self._start = float(event.get("start_stamp", self._after))

    def check(self, snap: dict[str, ArmSnapshot]) -> str:
        with self._lock:
            after = self._after
            if after is None:
                return "run"
            if min(s.pose_stamp for s in snap.values()) < after:
                return "wait"
            self._after = None
            self.start_stamp = self._start
        return "restart"


def publish_hold(node: Node, pubs: dict, snap: dict[str, ArmSnapshot], stamp: float, frame: str) -> None:
    """Command every arm to stay where it is measured: the last word of a node that commands
    arms, on its way out (a robot's controller keeps the last target it got)."""
    if not node.context.ok():
        return
    for arm, s in snap.items():
        if np.isfinite(s.pose_stamp) and np.isfinite(s.tcp_pos).all():
            pubs[arm].publish(msgs.pose_msg(stamp, frame, s.tcp_pos, s.tcp_quat))
