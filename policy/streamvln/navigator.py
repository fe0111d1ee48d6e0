"""StreamVLN navigation without ROS: turns, pose goals, episodes and the stop rules.

``streamvln_nav`` (the ROS node) only converts messages and runs two threads; what it decides
lives here, so it is tested without rclpy and an in-process runner can drive a base the same way.
:class:`Navigator` is fed odometry, image receipts and instructions, and is asked for

* a **turn** (:meth:`Navigator.turn`, the node's turn thread): the model
  (``StreamVLNAgent.step``) runs on the freshest synchronised colour + depth pair
  (:mod:`policy.streamvln.frame_sync`) with the odometry pose at the image stamp, and its
  actions are queued as pose goals (:mod:`policy.streamvln.nav_control`). A turn starts as soon
  as at most ``plan_ahead_actions`` actions are left, so the base keeps moving while it computes;
  a turn whose instruction was replaced meanwhile is dropped; ``max_turns`` queues a STOP;
* a **command** (:meth:`Navigator.control`, the node's control loop): zero (and why) when
  odometry or images are stale or no episode runs, else the tracker's (v, w). A pose jump of
  more than ``max_pose_jump`` between two odometry messages drops the queued goals (they were
  in the old frame) and the poses from before it.

Episode events (``start``, ``stop``, ``cancel``, ``error``; the end carries every turn's
latency and CPU time, cache and memory tokens, goals dropped as blocked and the lowest speeds
through every FORWARD-to-FORWARD join) go to the ``publish`` callback as dicts.

:class:`NavigatorConfig` and :class:`AgentSpec` are the one definition of their values; the
node's parameter dataclass derives from both, so they keep their flat parameter names.
"""
from __future__ import annotations

import dataclasses
import importlib
import logging
import threading
import time
from collections import Counter, deque
from typing import Callable, NamedTuple

import numpy as np

from slowfast_data.fields import described
from slowfast_data.geometry import BaseCameraMount

from .frame_sync import FrameSync, SyncedFrame
from .nav_control import GoalTracker, TrackerConfig


@dataclasses.dataclass
class AgentSpec:
    """Which agent drives: a factory, a checkpoint, or a small random model (:func:`build_agent`)."""

    checkpoint: str = described("", "StreamVLN checkpoint folder ('' = a small random model: plumbing only)")
    agent_factory: str = described("", "'module:callable' returning an agent (reset/step/stats); overrides checkpoint")
    device: str = described("cpu", "torch device of the model (cpu, cuda, cuda:1)")
    dtype: str = described("float32", "model dtype: float32 | bfloat16 | float16")
    window_turns: int = described(0, "dialogue turns in the sliding KV window (0 = the checkpoint's agent.json, "
                                     "else 8)")
    memory_refresh_turns: int = described(0, "rebuild the 3-D memory every this many turns (0 = agent.json, else 8)")
    torch_threads: int = described(0, "torch CPU threads (0 = torch's default)")

    def __post_init__(self):
        if self.dtype not in ("float32", "bfloat16", "float16"):
            raise ValueError(f"dtype: {self.dtype!r} must be float32, bfloat16 or float16")
        if self.agent_factory and ":" not in self.agent_factory:
            raise ValueError(f"agent_factory: {self.agent_factory!r} must be 'module:callable'")
        if not (0 <= self.window_turns <= 1024):
            raise ValueError(f"window_turns: {self.window_turns} outside 0..1024")
        if not (0 <= self.memory_refresh_turns <= 1_000_000):
            raise ValueError(f"memory_refresh_turns: {self.memory_refresh_turns} outside 0..1000000")
        if not (0 <= self.torch_threads <= 256):
            raise ValueError(f"torch_threads: {self.torch_threads} outside 0..256")


def build_agent(p: AgentSpec):
    """The agent ``p`` names: from ``agent_factory``, a checkpoint, or a small random model."""
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


@dataclasses.dataclass
class NavigatorConfig:
    """How the navigator paces turns, follows goals and decides to stop the base."""

    control_hz: float = described(30.0, "cmd_vel rate (Hz), >= 20")
    tracker: TrackerConfig = described(TrackerConfig(), "how the base follows the queued goals "
                                                        "(policy.streamvln.nav_control.TrackerConfig)")
    # 0: the next turn waits until the base has done the queued actions, so the model sees the
    # frames it was trained on (taken at rest after each turn, as `slowfast nav eval` steps).
    # Planning ahead keeps the base moving but shows the model frames taken mid-motion: the
    # shipped model reached 0 of 3 held-out goals that way over ROS 2, 2 of 3 at 0 (the same
    # two as synchronously; docs/navigation.md).
    plan_ahead_actions: int = described(0, "start the next turn when at most this many actions are queued (0: "
                                           "when the base has done them; > 0 keeps it moving, for a model "
                                           "trained on frames taken in motion)")
    odom_timeout: float = described(0.3, "stop when the newest odometry is older than this (s)")
    image_timeout: float = described(1.0, "stop when the newest image is older than this (s)")
    max_stamp_skew: float = described(0.05, "colour and depth stamps may differ by at most this (s)")
    max_pose_jump: float = described(0.5, "odometry jump (m) between two messages that counts as a pose jump")
    camera: BaseCameraMount = described(BaseCameraMount(), "where the camera sits on the base "
                                                           "(slowfast_data.geometry.BaseCameraMount)")
    max_turns: int = described(500, "end the episode after this many turns (0 = no limit)")

    def __post_init__(self):
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


class Command(NamedTuple):
    v: float
    w: float
    stopped: str | None   # why the base is held ("stale_odom", "stale_image"), None otherwise
    done: bool            # the tracker reached a STOP goal: the caller ends the episode after sending


#: ``frame_source()`` -> None (no frame yet) or (colour stamp, decode); ``decode()`` -> (rgb in RGB
#: order, depth in metres, depth stamp, CameraIntrinsics), ValueError when it cannot decode
FrameSource = Callable[[], "tuple[float, Callable[[], tuple]] | None"]


class Navigator:
    def __init__(self, cfg: NavigatorConfig, publish: Callable[[dict], None], agent=None,
                 log: logging.Logger | None = None):
        self.cfg = cfg
        self.publish = publish   # episode events; called under the lock for "start"
        self.agent = agent
        self.log = log or logging.getLogger("streamvln.navigator")
        self.tracker = GoalTracker(cfg.tracker)
        self.lock = threading.Lock()
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
        self.sync = FrameSync(cfg.max_stamp_skew, max(cfg.odom_timeout, 0.1), cfg.camera, self.skips)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._turn_thread: threading.Thread | None = None

    # ------------------------------------------------------------ inputs (any thread)

    def image_received(self, now: float) -> None:
        """A colour image arrived at monotonic time ``now``: it may feed the next turn."""
        with self.lock:
            self._image_rx = now
        self._wake.set()

    def odometry(self, stamp: float, pose: np.ndarray, speed: float, now: float) -> None:
        with self.lock:
            if self._odom is not None and np.hypot(*(pose[:2] - self._odom[1][:2])) > self.cfg.max_pose_jump:
                self._jump_pending = True  # handled by the control loop
            self._odom = (stamp, pose, float(speed))
            self._odom_rx = now
            self._odom_hist.append((stamp, pose))

    def instruct(self, text: str) -> None:
        """A new instruction (the next turn starts its episode); an empty one cancels."""
        with self.lock:
            self._pending_instruction = text
            self._episode_gen += 1
        self._wake.set()

    def cancel(self, **extra) -> None:
        """Drop a pending instruction and a turn in flight; end a running episode (``cancel``)."""
        with self.lock:
            self._pending_instruction = None
            self._episode_gen += 1   # a turn in flight is dropped
            navigating = self.navigating
        if navigating:
            self.end("cancel", **extra)

    # ------------------------------------------------------------ turns

    def start_turns(self, frame_source: FrameSource) -> None:
        """Run :meth:`turn` in a thread whenever an image or an instruction arrives (and every 50 ms)."""
        self._stop = threading.Event()
        self._turn_thread = threading.Thread(target=self._turn_loop, args=(frame_source,), name="vln-turns",
                                             daemon=True)
        self._turn_thread.start()

    def stop_turns(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._turn_thread is not None:
            self._turn_thread.join(timeout=timeout)
            self._turn_thread = None

    def _turn_loop(self, frame_source: FrameSource) -> None:
        while not self._stop.is_set():
            self._wake.wait(0.05)
            self._wake.clear()
            self.turn(frame_source)

    def turn(self, frame_source: FrameSource) -> None:
        """Start a pending episode, then run one model turn when the queue is short enough and a
        new synchronised frame is there (else return at once)."""
        with self.lock:
            instr, self._pending_instruction = self._pending_instruction, None
            gen = self._episode_gen
        if instr is not None:
            self._begin(instr, gen)
        if not self.navigating or self.tracker.done:
            return
        if len(self.tracker) > self.cfg.plan_ahead_actions:
            return
        frame = self.frame(frame_source)
        if frame is None:
            return
        t0, c0 = time.perf_counter(), time.thread_time()
        try:
            actions = self.agent.step(frame.rgb, frame.depth, frame.K, frame.camera_pose)
        except Exception as exc:  # noqa: BLE001 - a failing model stops the base, loudly
            self.log.error(f"agent step failed: {exc!r}")
            self.skips["agent_error"] += 1
            self.end("error")
            return
        self.latencies.append(time.perf_counter() - t0)
        cpu = time.thread_time() - c0  # this thread's CPU: the turn's compute, without the waits
        st = self.agent.stats
        self.episode_turns.append((round(self.latencies[-1], 6), round(cpu, 6),
                                   int(getattr(st, "cache_tokens", 0) or 0),
                                   int(getattr(st, "memory_tokens", 0) or 0)))
        if not actions:
            self.skips["agent_refused"] += 1
            return
        self.sync.used(frame.stamp)
        with self.lock:
            if gen != self._episode_gen:  # a new instruction arrived meanwhile: drop this turn
                return
            self.tracker.extend(actions, frame.base_pose)
        self.turns += 1
        if self.cfg.max_turns and self.turns >= self.cfg.max_turns:
            with self.lock:
                self.tracker.extend([0], frame.base_pose)

    def frame(self, frame_source: FrameSource) -> SyncedFrame | None:
        """The newest synchronised frame, or None (skipped and counted, or nothing new yet)."""
        with self.lock:
            hist = list(self._odom_hist)
        if not hist:
            return None
        latest = frame_source()
        if latest is None:
            return None
        stamp, decode = latest
        if not self.sync.is_new(stamp):
            return None  # no new frame since the last turn
        try:
            rgb, depth_m, depth_stamp, intr = decode()
        except ValueError:
            self.sync.reject(stamp, "encoding")
            return None
        return self.sync.match(stamp, rgb, depth_m, depth_stamp, intr, hist)

    def _begin(self, instruction: str, gen: int) -> None:
        with self.lock:
            self.tracker.new_episode()
        text = " ".join(instruction.split())
        if not text:
            if self.navigating:
                self.end("cancel")
            return
        self.agent.reset(text)
        self.instruction = text
        self.turns = 0
        self.episode_turns = []
        self.sync.reset()
        with self.lock:
            if gen != self._episode_gen:
                return   # deactivated (or another instruction came) meanwhile
            self.navigating = True
            self.publish({"event": "start", "instruction": text})
        self.log.info(f"new episode: {text}")

    def end(self, event: str, **extra) -> None:
        """End the episode: clear the goals and publish ``event`` with the episode's record."""
        with self.lock:
            self.navigating = False
            self.tracker.clear()
            joins, timeouts = list(self.tracker.joins), self.tracker.episode_timeouts
        lat, cpu, cache, mem = (list(c) for c in zip(*self.episode_turns)) if self.episode_turns else ([],) * 4
        self.publish({
            "event": event, "instruction": self.instruction, "turns": self.turns,
            "turn_latency_s": lat, "turn_cpu_s": cpu, "cache_tokens": cache, "memory_tokens": mem,
            "goal_timeouts": timeouts,  # goals dropped because the base did not reach them (blocked)
            # FORWARD-to-FORWARD joins of consecutive turns: lowest commanded / measured speed
            "forward_joins": len(joins), "forward_join_stops": sum(j.stopped for j in joins),
            "forward_join_min_cmd": [round(j.min_cmd, 4) for j in joins],
            "forward_join_min_measured": [None if j.min_measured is None else round(j.min_measured, 4)
                                          for j in joins], **extra})
        self.log.info(f"episode {event} after {self.turns} turns")

    # ------------------------------------------------------------ control

    def control(self, now: float) -> Command:
        """The command of one control tick at monotonic time ``now`` (a stop is counted)."""
        dt = 1.0 / self.cfg.control_hz
        with self.lock:
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
            elif odom is None or now - odom_rx > self.cfg.odom_timeout:
                reason = "stale_odom"
            elif now - image_rx > self.cfg.image_timeout:
                reason = "stale_image"
            else:
                v, w = self.tracker.command(odom[1], dt, speed=odom[2])
                done = self.tracker.done
            if reason is not None:
                self.tracker.hold()
        if reason is not None:
            self.stops[reason] += 1
        return Command(v, w, reason, done)

    def diagnostics(self) -> dict:
        """The navigator's values for ``/diagnostics`` (needs the agent)."""
        st = self.agent.stats.as_dict() if hasattr(self.agent.stats, "as_dict") else dict(self.agent.stats)
        lat = np.array(self.latencies) if self.latencies else np.array([np.nan])
        values = {"navigating": self.navigating, "turns": self.turns, "queued_goals": len(self.tracker),
                  "turn_latency_s_last": float(lat[-1]), "turn_latency_s_p50": float(np.median(lat)),
                  "turn_latency_s_max": float(np.max(lat)),
                  "window_tokens": st.get("window_tokens", 0), "window_turns": st.get("window_turns", 0),
                  "memory_tokens": st.get("memory_tokens", 0), "pruning_ratio": float(st.get("pruning_ratio", 0.0)),
                  "cache_tokens": st.get("cache_tokens", 0),
                  "pose_jumps": self.pose_jumps, "goal_timeouts": self.tracker.timeouts,
                  "forward_joins": len(self.tracker.joins), "forward_join_stops": self.tracker.join_stops}
        values.update({f"skipped/{k}": n for k, n in self.skips.items()})
        values.update({f"stopped/{k}": n for k, n in self.stops.items()})
        for k, n in (st.get("skip_reasons") or {}).items():
            values[f"agent_skipped/{k}"] = n
        return values
