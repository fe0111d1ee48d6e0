"""streamvln_nav: vision-language navigation with StreamVLN, over ROS 2.

Subscribes ``camera/color/image_raw``, ``camera/aligned_depth_to_color/image_raw`` (16UC1 mm
or 32FC1 m), ``camera/color/camera_info``, ``odom`` (nav_msgs/Odometry) and ``instruction``
(std_msgs/String: a new instruction starts a new episode, an empty one cancels it). Publishes
``cmd_vel`` (Twist) at ``control_hz``, ``nav/status`` (latched JSON: start, stop, cancel; an
episode's end carries every turn's latency and CPU time, cache and memory tokens, goals dropped
as blocked, and the lowest speeds through every FORWARD-to-FORWARD join of two turns) and
``/diagnostics`` (per-turn latency, window and memory tokens, pruning ratio, skips, stops).

Two threads besides the executor:

* the turn thread runs the model (``StreamVLNAgent.step``) on the freshest synchronised
  colour + depth pair with the odometry pose at the image stamp, and queues its actions as
  pose goals (``policy.streamvln.nav_control``). It starts the next turn as soon as at most
  ``plan_ahead_actions`` actions are left, so the base keeps moving while it computes;
* the control loop (``PacedLoop``) tracks the queued goals and publishes ``cmd_vel``; it
  publishes zero (and counts why) when odometry or images are stale, after a pose jump,
  and when no episode runs. STOP ends the episode. Joins where a FORWARD turn follows a
  FORWARD turn are counted, and a join whose speed fell below 0.01 m/s counts as a stop
  (``forward_joins`` / ``forward_join_stops`` in ``/diagnostics``).

Bad input is skipped and counted (the frame checks are ``policy.streamvln.frame_sync``'s):
colour and depth of different sizes or with stamps more than ``max_stamp_skew`` apart, unknown encodings, a frame the agent refuses, a pose that jumps more
than ``max_pose_jump`` between two odometry messages (the queued goals are dropped then: they
were in the old frame).

A lifecycle node (``slowfast_ros.lifecycle``): configure builds the agent and starts both
threads, activate lets it take instructions and command the base, deactivate publishes one
zero ``cmd_vel`` (the base stops), ends a running episode (``nav/status`` event ``cancel``,
``"reason": "deactivated"``), says so in its log and publishes nothing on ``cmd_vel`` until
activated; an instruction received while inactive is ignored (counted in ``skipped/``).
cleanup stops the threads and releases the model.
"""
from __future__ import annotations

import dataclasses
import importlib
import threading
import time
from collections import Counter, deque

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import String

from slowfast_data.geometry import BaseCameraMount
from slowfast_ros import msgs, qos
from slowfast_ros.lifecycle import ManagedNode, ManagedParams
from policy.streamvln.frame_sync import FrameSync, SyncedFrame
from policy.streamvln.nav_control import GoalTracker, TrackerConfig
from slowfast_ros.node_util import PacedLoop, RateMeter, declare_params, param, run_node


@dataclasses.dataclass
class StreamVLNNavParams(ManagedParams):
    checkpoint: str = param("", "StreamVLN checkpoint folder ('' = a small random model: plumbing only)")
    agent_factory: str = param("", "'module:callable' returning an agent (reset/step/stats); overrides checkpoint")
    device: str = param("cpu", "torch device of the model (cpu, cuda, cuda:1)")
    dtype: str = param("float32", "model dtype: float32 | bfloat16 | float16")
    window_turns: int = param(0, "dialogue turns in the sliding KV window (0 = the checkpoint's agent.json, else 8)")
    memory_refresh_turns: int = param(0, "rebuild the 3-D memory every this many turns (0 = agent.json, else 8)")
    control_hz: float = param(30.0, "cmd_vel rate (Hz), >= 20")
    tracker: TrackerConfig = param(TrackerConfig(), "how the base follows the queued goals "
                                                    "(policy.streamvln.nav_control.TrackerConfig)")
    plan_ahead_actions: int = param(2, "start the next turn when at most this many actions are queued")
    odom_timeout: float = param(0.3, "stop when the newest odometry is older than this (s)")
    image_timeout: float = param(1.0, "stop when the newest image is older than this (s)")
    max_stamp_skew: float = param(0.05, "colour and depth stamps may differ by at most this (s)")
    max_pose_jump: float = param(0.5, "odometry jump (m) between two messages that counts as a pose jump")
    camera: BaseCameraMount = param(BaseCameraMount(), "where the camera sits on the base "
                                                       "(slowfast_data.geometry.BaseCameraMount)")
    max_turns: int = param(500, "end the episode after this many turns (0 = no limit)")
    torch_threads: int = param(0, "torch CPU threads (0 = torch's default)")

    def __post_init__(self):
        if self.dtype not in ("float32", "bfloat16", "float16"):
            raise ValueError(f"dtype: {self.dtype!r} must be float32, bfloat16 or float16")
        if self.agent_factory and ":" not in self.agent_factory:
            raise ValueError(f"agent_factory: {self.agent_factory!r} must be 'module:callable'")
        if not (0 <= self.window_turns <= 1024):
            raise ValueError(f"window_turns: {self.window_turns} outside 0..1024")
        if not (0 <= self.memory_refresh_turns <= 1_000_000):
            raise ValueError(f"memory_refresh_turns: {self.memory_refresh_turns} outside 0..1000000")
        if not (20.0 <= self.control_hz <= 500.0):
            raise ValueError(f"control_hz: {self.control_hz} outside 20..500 Hz")
        for name, lo, hi in (("odom_timeout", 0.0, 10.0), ("image_timeout", 0.0, 30.0),
                             ("max_stamp_skew", 0.0, 1.0), ("max_pose_jump", 0.0, 10.0)):
            v = getattr(self, name)
            if not (lo < v <= hi):
                raise ValueError(f"{name}: {v} outside ({lo}, {hi}]")
        if not (0 <= self.plan_ahead_actions <= 16):
            raise ValueError(f"plan_ahead_actions: {self.plan_ahead_actions} outside 0..16")
        if not (0 <= self.max_turns <= 1_000_000):
            raise ValueError(f"max_turns: {self.max_turns} outside 0..1000000")
        if not (0 <= self.torch_threads <= 256):
            raise ValueError(f"torch_threads: {self.torch_threads} outside 0..256")


def build_agent(p: StreamVLNNavParams):
    """The agent the node drives: from ``agent_factory``, a checkpoint, or a small random model."""
    if p.agent_factory:
        mod, _, attr = p.agent_factory.partition(":")
        return getattr(importlib.import_module(mod), attr)()
    import torch  # noqa: PLC0415

    from policy.streamvln import load_streamvln  # noqa: PLC0415
    from policy.streamvln.agent import agent_for_device  # noqa: PLC0415
    from policy.streamvln.train import agent_config_for  # noqa: PLC0415

    if p.torch_threads:
        torch.set_num_threads(p.torch_threads)
    dtype = getattr(torch, p.dtype)
    over = {k: getattr(p, k) or None for k in ("window_turns", "memory_refresh_turns")}
    if p.checkpoint:
        model, tokenizer = load_streamvln(p.checkpoint, dtype=dtype, device=p.device)
        cfg = agent_config_for(p.checkpoint, **over)  # the checkpoint's agent.json, then the parameters
    else:
        from policy.streamvln import AgentConfig  # noqa: PLC0415
        from policy.streamvln.tiny import build_tiny_model, build_tiny_tokenizer  # noqa: PLC0415
        tokenizer = build_tiny_tokenizer()
        model = build_tiny_model(tokenizer, image_size=112, dtype=dtype).to(p.device)
        cfg = AgentConfig(**{k: v for k, v in over.items() if v is not None})
    return agent_for_device(model, tokenizer, cfg)  # on CUDA: static KV path, warmed up before the first turn


class StreamVLNNav(ManagedNode):
    active_note = "taking instructions and commanding the base"
    inactive_note = "base stopped (one zero cmd_vel sent), episode cancelled; no command until activated"

    def __init__(self):
        super().__init__("streamvln_nav")
        self.p: StreamVLNNavParams = declare_params(self, StreamVLNNavParams())
        p = self.p
        self.tracker = GoalTracker(p.tracker)
        self.agent = None
        self._lock = threading.Lock()
        self._color: Image | None = None
        self._depth: Image | None = None
        self._info: CameraInfo | None = None
        self._image_rx = -1e9  # monotonic receipt time of the newest colour image
        self._odom: tuple[float, np.ndarray, float] | None = None  # stamp, (x, y, yaw), forward speed
        self._odom_rx = -1e9
        self._odom_hist: deque = deque(maxlen=400)  # (stamp, pose)
        self._jump_pending = False
        self._pending_instruction: str | None = None
        self._episode_gen = 0  # bumped by every instruction, read by both threads
        self.instruction = ""
        self.navigating = False   # an episode runs
        self.skips: Counter = Counter()
        self.stops: Counter = Counter()
        self.pose_jumps = 0
        self.latencies: deque = deque(maxlen=200)
        self.episode_turns: list = []   # (latency s, CPU s, cache tokens, memory tokens) of this episode's turns
        self.turns = 0
        self.sync = FrameSync(p.max_stamp_skew, max(p.odom_timeout, 0.1), p.camera, self.skips)
        self.cmd_meter = RateMeter()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._tick_lock = threading.Lock()   # a control tick and a transition never overlap
        self._turn_thread: threading.Thread | None = None
        self.loop: PacedLoop | None = None

        sub = qos.SENSOR_SUB
        self.create_subscription(Image, "camera/color/image_raw", self._on_color, sub)
        self.create_subscription(Image, "camera/aligned_depth_to_color/image_raw", self._on_depth, sub)
        self.create_subscription(CameraInfo, "camera/color/camera_info", self._on_info, sub)
        self.create_subscription(Odometry, "odom", self._on_odom, sub)
        self.create_subscription(String, "instruction", self._on_instruction, qos.COMMAND)
        self.cmd_pub = self.create_publisher(Twist, "cmd_vel", qos.COMMAND)
        self.status_pub = self.create_publisher(String, "nav/status", qos.LATCHED)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_timer(1.0, self._publish_diagnostics)
        self.autostart(p.autostart)

    # ------------------------------------------------------------ lifecycle

    def _configure(self) -> None:
        p = self.p
        self.agent = build_agent(p)
        if not p.checkpoint and not p.agent_factory:
            self.get_logger().warning("no checkpoint: a small RANDOM model drives (plumbing only)")
        self._stop = threading.Event()
        self._turn_thread = threading.Thread(target=self._turn_loop, name="vln-turns", daemon=True)
        self._turn_thread.start()
        self.loop = PacedLoop(p.control_hz, self._control_tick, name="vln-control").start()
        self.get_logger().info(f"streamvln_nav: cmd_vel at {p.control_hz} Hz, waiting for an instruction")

    def _cleanup(self) -> None:
        self._stop.set()
        if self.loop is not None:
            self.loop.stop()
            self.loop = None
        self._wake.set()
        if self._turn_thread is not None:
            self._turn_thread.join(timeout=5.0)
            self._turn_thread = None
        self.agent = None

    def _deactivate(self) -> None:
        with self._tick_lock:   # waits for a tick in progress: the zero below is the last command
            self.active = False
            try:
                self.cmd_pub.publish(msgs.twist_msg(0.0, 0.0))
            except Exception:  # noqa: BLE001 - on the way out, the context may be down
                pass
        with self._lock:
            self._pending_instruction = None
            self._episode_gen += 1   # a turn in flight is dropped
            navigating = self.navigating
        if navigating:
            self._end("cancel", reason="deactivated")

    # ------------------------------------------------------------ callbacks (store only)

    def _on_color(self, msg: Image) -> None:
        with self._lock:
            self._color = msg
            self._image_rx = time.monotonic()
        self._wake.set()

    def _on_depth(self, msg: Image) -> None:
        with self._lock:
            self._depth = msg

    def _on_info(self, msg: CameraInfo) -> None:
        with self._lock:
            self._info = msg

    def _on_odom(self, msg: Odometry) -> None:
        try:
            stamp, pose, twist = msgs.odometry_from_msg(msg)
        except ValueError:
            self.skips["odom_invalid"] += 1
            return
        with self._lock:
            if self._odom is not None and np.hypot(*(pose[:2] - self._odom[1][:2])) > self.p.max_pose_jump:
                self._jump_pending = True  # handled by the control loop
            self._odom = (stamp, pose, float(twist[0]))
            self._odom_rx = time.monotonic()
            self._odom_hist.append((stamp, pose))

    def _on_instruction(self, msg: String) -> None:
        if not self.active:
            self.skips["instruction_while_inactive"] += 1
            self.get_logger().warning(f"inactive: instruction ignored ({msg.data!r}); "
                                      f"`slowfast lifecycle {self.get_name()} activate` first")
            return
        with self._lock:
            self._pending_instruction = msg.data
            self._episode_gen += 1
        self._wake.set()

    # ------------------------------------------------------------ turn thread

    def _turn_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(0.05)
            self._wake.clear()
            with self._lock:
                instr, self._pending_instruction = self._pending_instruction, None
                gen = self._episode_gen
            if instr is not None:
                self._begin(instr, gen)
            if not self.navigating or self.tracker.done:
                continue
            if len(self.tracker) > self.p.plan_ahead_actions:
                continue
            frame = self._frame()
            if frame is None:
                continue
            t0, c0 = time.perf_counter(), time.thread_time()
            try:
                actions = self.agent.step(frame.rgb, frame.depth, frame.K, frame.camera_pose)
            except Exception as exc:  # noqa: BLE001 - a failing model stops the base, loudly
                self.get_logger().error(f"agent step failed: {exc!r}")
                self.skips["agent_error"] += 1
                self._end("error")
                continue
            self.latencies.append(time.perf_counter() - t0)
            cpu = time.thread_time() - c0  # this thread's CPU: the turn's compute, without the waits
            st = self.agent.stats
            self.episode_turns.append((round(self.latencies[-1], 6), round(cpu, 6),
                                       int(getattr(st, "cache_tokens", 0) or 0),
                                       int(getattr(st, "memory_tokens", 0) or 0)))
            if not actions:
                self.skips["agent_refused"] += 1
                continue
            self.sync.used(frame.stamp)
            with self._lock:
                if gen != self._episode_gen:  # a new instruction arrived meanwhile: drop this turn
                    continue
                self.tracker.extend(actions, frame.base_pose)
            self.turns += 1
            if self.p.max_turns and self.turns >= self.p.max_turns:
                with self._lock:
                    self.tracker.extend([0], frame.base_pose)

    def _begin(self, instruction: str, gen: int) -> None:
        with self._lock:
            self.tracker.new_episode()
        text = " ".join(instruction.split())
        if not text:
            if self.navigating:
                self._end("cancel")
            return
        self.agent.reset(text)
        self.instruction = text
        self.turns = 0
        self.episode_turns = []
        self.sync.reset()
        with self._lock:
            if gen != self._episode_gen:
                return   # deactivated (or another instruction came) meanwhile
            self.navigating = True
            self.status_pub.publish(msgs.json_msg({"event": "start", "instruction": text}))
        self.get_logger().info(f"new episode: {text}")

    def _end(self, event: str, **extra) -> None:
        with self._lock:
            self.navigating = False
            self.tracker.clear()
            joins, timeouts = list(self.tracker.joins), self.tracker.episode_timeouts
        lat, cpu, cache, mem = (list(c) for c in zip(*self.episode_turns)) if self.episode_turns else ([],) * 4
        self.status_pub.publish(msgs.json_msg({
            "event": event, "instruction": self.instruction, "turns": self.turns,
            "turn_latency_s": lat, "turn_cpu_s": cpu, "cache_tokens": cache, "memory_tokens": mem,
            "goal_timeouts": timeouts,  # goals dropped because the base did not reach them (blocked)
            # FORWARD-to-FORWARD joins of consecutive turns: lowest commanded / measured speed
            "forward_joins": len(joins), "forward_join_stops": sum(j.stopped for j in joins),
            "forward_join_min_cmd": [round(j.min_cmd, 4) for j in joins],
            "forward_join_min_measured": [None if j.min_measured is None else round(j.min_measured, 4)
                                          for j in joins], **extra}))
        self.get_logger().info(f"episode {event} after {self.turns} turns")

    def _frame(self) -> SyncedFrame | None:
        """The newest synchronised frame (``policy.streamvln.frame_sync``), or None (skipped
        and counted, or nothing new yet)."""
        with self._lock:
            color, depth, info, hist = self._color, self._depth, self._info, list(self._odom_hist)
        if color is None or depth is None or info is None or not hist:
            return None
        stamp = msgs.stamp_of(color)
        if not self.sync.is_new(stamp):
            return None  # no new frame since the last turn
        try:
            _, rgb = msgs.image_from_msg(color)
            _, depth_m = msgs.depth_from_msg(depth)
            intr = msgs.intrinsics_from_msg(info)
        except ValueError:
            self.sync.reject(stamp, "encoding")
            return None
        if color.encoding == "bgr8":
            rgb = rgb[:, :, ::-1]
        return self.sync.match(stamp, rgb, depth_m, msgs.stamp_of(depth), intr, hist)

    # ------------------------------------------------------------ control loop

    def _control_tick(self) -> None:
        with self._tick_lock:
            if self.active:   # inactive: nothing on cmd_vel
                self._control_once()

    def _control_once(self) -> None:
        now = time.monotonic()
        dt = 1.0 / self.p.control_hz
        with self._lock:
            odom, odom_rx, image_rx = self._odom, self._odom_rx, self._image_rx
            if self._jump_pending:
                self._jump_pending = False
                self.pose_jumps += 1
                self.tracker.clear()  # the goals were in the frame before the jump
                hist = self._odom_hist
                last = hist[-1]
                hist.clear()  # poses from before the jump must not be matched to new images
                hist.append(last)
            v, w, done = 0.0, 0.0, False
            reason = None
            if not self.navigating:
                reason = None
            elif odom is None or now - odom_rx > self.p.odom_timeout:
                reason = "stale_odom"
            elif now - image_rx > self.p.image_timeout:
                reason = "stale_image"
            else:
                v, w = self.tracker.command(odom[1], dt, speed=odom[2])
                done = self.tracker.done
            if reason is not None:
                self.tracker.hold()
        if reason is not None:
            self.stops[reason] += 1
            self.get_logger().warning(f"base stopped: {reason}", throttle_duration_sec=1.0)
        self.cmd_pub.publish(msgs.twist_msg(v, w))
        self.cmd_meter.tick(now)
        if self.navigating and reason is None and done:
            self._end("stop")

    # ------------------------------------------------------------ diagnostics, shutdown

    def _publish_diagnostics(self) -> None:
        if self.agent is None:
            return
        st = self.agent.stats.as_dict() if hasattr(self.agent.stats, "as_dict") else dict(self.agent.stats)
        lat = np.array(self.latencies) if self.latencies else np.array([np.nan])
        values = {"active": self.active, "navigating": self.navigating, "turns": self.turns,
                  "queued_goals": len(self.tracker),
                  "turn_latency_s_last": float(lat[-1]), "turn_latency_s_p50": float(np.median(lat)),
                  "turn_latency_s_max": float(np.max(lat)),
                  "window_tokens": st.get("window_tokens", 0), "window_turns": st.get("window_turns", 0),
                  "memory_tokens": st.get("memory_tokens", 0), "pruning_ratio": float(st.get("pruning_ratio", 0.0)),
                  "cache_tokens": st.get("cache_tokens", 0), "rate/cmd_vel": self.cmd_meter.rate(),
                  "pose_jumps": self.pose_jumps, "goal_timeouts": self.tracker.timeouts,
                  "forward_joins": len(self.tracker.joins), "forward_join_stops": self.tracker.join_stops,
                  "loop_overruns": self.loop.overruns if self.loop is not None else 0}
        values.update({f"skipped/{k}": n for k, n in self.skips.items()})
        values.update({f"stopped/{k}": n for k, n in self.stops.items()})
        for k, n in (st.get("skip_reasons") or {}).items():
            values[f"agent_skipped/{k}"] = n
        level = "warn" if (any(self.stops.values()) and self.navigating) or not self.active else "ok"
        stamp = self.get_clock().now().nanoseconds * 1e-9
        self.diag_pub.publish(msgs.diagnostics_msg(stamp, [msgs.diagnostic_status(
            "streamvln_nav", values, level, "" if self.active else "inactive: base stopped")]))


#: the parameters this node declares (checked by `slowfast` before anything starts)
PARAMS = StreamVLNNavParams


def main(args=None) -> int:
    return run_node(StreamVLNNav, args)


if __name__ == "__main__":
    raise SystemExit(main())
