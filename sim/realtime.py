"""The simulator in real time: episodes stepped at 1 kHz, locked to the wall clock, readings
handed out as they are taken. No ROS: ``slowfast_ros.nodes.sim_node`` serves this over ROS 2
through the :class:`Outputs` callbacks, and a test drives it with plain Python objects.

Timing. One physics thread steps MuJoCo at 1 kHz and keeps sim time locked to the wall clock
(:class:`WallLock`): never ahead of it, and when the CPU cannot keep up the sim slows down
instead of lagging, so every reading is stamped with the time it was taken (episode start +
time slowed + sim time). A step is computed ``RealTimeSim.PREPARE_S`` (0.4 ms) before its
time and its readings are sent at that time, so a reading leaves when it is stamped, as a
sensor's would; a target arriving in those 0.4 ms applies one step later. Each stream (pose,
wrench, tactile, clock, cameras) is due on its own grid of sim time (:class:`Stream`). Cameras render off the physics thread, from a snapshot of
its state: in a thread (:class:`sim.render.ThreadRenderer`) or in a child process
(:class:`sim.render_process.ProcessRenderer`); both hand their frames to a sink the caller
built.

Episodes. Each starts from the seed ``seed + k``, holds the home pose for ``start_delay`` s
while it publishes live readings (controllers see the robot and reset; a frozen stamp would
look like a dead sensor), then runs until :class:`sim.episodes.EpisodeEnd` says so: at the
task's length, or on the operator's request. Targets that arrive are applied at the next
physics step; a target stamped before the episode's hold is from the previous episode and is
dropped, and one the environment refuses (NaN, non-unit, outside the workspace) is reported
through ``Outputs.reject``, never applied. At the end: the metrics, and with ``out_dir`` the
force trace (npz + png) and, after the last episode, ``metrics.json``.
"""
from __future__ import annotations

import dataclasses
import os
import threading
import time
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from sim.config import SimConfig
from slowfast_data.fields import described

STATE_STREAMS = ("pose", "wrench", "tactile")
#: below this real-time factor the sim says it runs slower than real time (/diagnostics), and an
#: episode's figures are no real-time result (`slowfast sim`, the experiment's report)
REAL_TIME_MIN = 0.95


def slowed_factors(episodes) -> tuple[list[float], list[float]]:
    """(every recorded real-time factor, those below :data:`REAL_TIME_MIN`) of episode metrics
    (``real_time`` of :meth:`RealTimeSim` episodes; episodes without one are left out)."""
    factors = [e["real_time"]["factor"] for e in episodes if (e.get("real_time") or {}).get("factor") is not None]
    return factors, [f for f in factors if f < REAL_TIME_MIN]


def _sim(name: str):
    """The environment's own default (``SimConfig``) for a value this config passes on to it."""
    return SimConfig.__dataclass_fields__[name].default


@dataclasses.dataclass
class RealTimeConfig:
    """The real-time simulator's values (the sim node's parameters of the same names)."""
    task: str = described(_sim("task"), "task: wipe | lift")
    embodiment: str = described(_sim("embodiment"), "floating: tools held by a native impedance coupling | arm: Franka "
                                            "Panda arms under a 1 kHz Cartesian impedance controller")
    seed: int = described(_sim("seed"), "seed of the first episode; episode k uses seed + k")
    perturb: bool = described(_sim("perturb"), "surface/object changes at random, seeded times")
    episodes: int = described(0, "episodes to run, then exit (0 = run until stopped)")
    episode_seconds: float = described(0.0, "episode length in s (0 = the task's default; episode_end task)")
    episode_end: str = described("task", "task: an episode ends at the task's length | operator: on the operator's "
                                         "request (sim/episode_command) or after max_episode_minutes")
    max_episode_minutes: float = described(30.0, "with episode_end operator: the longest episode (min)")
    pose_hz: float = described(200.0, "TCP pose publish rate (Hz)")
    wrench_hz: float = described(200.0, "wrist wrench publish rate (Hz)")
    tactile_hz: float = described(200.0, "tactile marker field publish rate (Hz)")
    camera_hz: float = described(30.0, "camera rate (Hz); 0 disables rendering")
    camera_width: int = described(_sim("camera_width"), "camera image width (px)")
    camera_height: int = described(_sim("camera_height"), "camera image height (px)")
    depth: bool = described(False, "also publish aligned depth (16UC1, mm)")
    render_process: bool = described(False, "render (and publish) the cameras in a child process, off this "
                                             "process's GIL (experimental: one 20-episode RDP run got no "
                                             "image-synchronised chunk and its stack did not exit) | false: in a "
                                             "thread of this process, which delays the force and tactile readings "
                                             "by up to a render")
    render_nice: int = described(0, "render_process: niceness added to the render process (0..19): on a busy CPU "
                                    "the physics and the control loop go first, and images come later (rdp_slow "
                                    "wants them within its image_tolerance) or are dropped")
    rt_priority: int = described(0, "SCHED_FIFO priority of the physics thread (0 = normal scheduling; the "
                                     "process's other threads one below), as a robot's driver runs; without "
                                     "permission the node says so once and runs without")
    clock_hz: float = described(100.0, "/clock publish rate (Hz)")
    out_dir: str = described("", "write per-episode metrics, force plot and camera MP4 here ('' = none)")
    start_delay: float = described(0.5, "seconds to hold the home pose before an episode starts (lets "
                                        "controllers reset)")
    max_lag: float = described(0.002, "when physics falls this far behind the wall clock (s), the sim slows "
                                      "down instead: stamps stay the wall time of each reading and readings go "
                                      "out as they are taken, not in catch-up bursts (0 = never)")

    def __post_init__(self):
        from sim.episodes import MODES  # noqa: PLC0415

        for name in ("pose_hz", "wrench_hz", "tactile_hz", "clock_hz"):
            v = getattr(self, name)
            if not (1.0 <= v <= 1000.0):
                raise ValueError(f"{name}: {v} Hz outside 1..1000 (physics runs at 1 kHz)")
        if not (0.0 <= self.camera_hz <= 120.0):
            raise ValueError(f"camera_hz: {self.camera_hz} outside 0..120")
        if self.episodes < 0:
            raise ValueError(f"episodes: {self.episodes} must be >= 0")
        if not (0 <= self.rt_priority <= 98):
            raise ValueError(f"rt_priority: {self.rt_priority} outside 0..98")
        if not (0 <= self.render_nice <= 19):
            raise ValueError(f"render_nice: {self.render_nice} outside 0..19")
        if not (0.0 <= self.max_lag <= 10.0):
            raise ValueError(f"max_lag: {self.max_lag} outside 0..10 s")
        if not (0.0 <= self.start_delay <= 10.0):
            raise ValueError(f"start_delay: {self.start_delay} outside 0..10 s")
        if self.episode_end not in MODES:
            raise ValueError(f"episode_end: {self.episode_end!r} not one of {', '.join(MODES)}")
        if not (0.0 < self.max_episode_minutes <= 1440.0):
            raise ValueError(f"max_episode_minutes: {self.max_episode_minutes} outside (0, 1440]")

    def sim_config(self):
        """The environment this runs (:class:`sim.SimConfig`)."""
        kw = dict(task=self.task, embodiment=self.embodiment, seed=self.seed, perturb=self.perturb,
                  camera_width=self.camera_width, camera_height=self.camera_height, render=self.camera_hz > 0)
        if self.episode_seconds > 0:
            kw["episode_seconds"] = self.episode_seconds
        return SimConfig(**kw)


class WallLock:
    """Sim time locked to the wall clock: never ahead of it, and at most ``max_lag`` behind.

    Further behind (the CPU cannot keep up), the sim slows down instead of lagging: a stamp must
    be the time its reading was taken, and readings older than a consumer's freshness limit are
    stale to it (the safety filter then holds for the rest of the episode). ``slowed`` is the
    wall time the physics was slowed down by; readings are stamped ``start + slowed + sim time``.
    ``max_lag`` 0 never slows down (the sim then catches up by stepping without sleeping)."""

    def __init__(self, wall0: float, sim0: float, max_lag: float):
        self.wall0, self.sim0, self.max_lag = wall0, sim0, max_lag
        self.slowed = 0.0

    def ahead(self, wall: float, sim_next: float) -> float:
        """How far (s) the next physics step is ahead of the wall clock (> 0: wait that long)."""
        ahead = (sim_next - self.sim0) - (wall - self.wall0 - self.slowed)
        if self.max_lag and -ahead > self.max_lag:
            self.slowed += -ahead - self.max_lag
            ahead = -self.max_lag
        return ahead

    def real_time_factor(self, wall: float, sim: float) -> float:
        elapsed = wall - self.wall0
        return (sim - self.sim0) / elapsed if elapsed > 0 else 0.0


class Stream:
    """A periodic publication on the sim clock."""

    def __init__(self, hz: float):
        self.period = 1.0 / hz
        self.next_t = 0.0

    def due(self, t: float) -> bool:
        if t + 1e-9 >= self.next_t:
            # Stay on the grid; if we fell behind by more than a period, skip ahead.
            self.next_t = max(self.next_t + self.period, t + 0.5 * self.period)
            return True
        return False


class Outputs(Protocol):
    """Where the real-time sim's readings and events go (the sim node: ROS topics)."""

    def now(self) -> float:
        """The time readings are stamped on (s; ROS time in the node)."""

    def state(self, stamp: float, arm: str, obs, joints: dict | None, which: tuple) -> None:
        """``arm``'s readings (:class:`sim.types.ArmState`; its joint state with the arm
        embodiment when the pose is due) taken at ``stamp``; ``which``: the streams due."""

    def clock(self, stamp: float) -> None:
        """Sim time advanced to ``stamp``."""

    def event(self, payload: dict) -> None:
        """An episode event (``{"event": "start" | "end", ...}``)."""

    def reject(self, arm: str, why: str) -> None:
        """A target the environment refused."""

    def log(self, level: str, text: str) -> None:
        """A line for the log (``level``: info, warning, error)."""

    def wait_ready(self, stop: threading.Event) -> None:
        """Block until what must run before the first episode is there (a controller)."""

    def poll(self) -> None:
        """Take the commands that arrived, calling :meth:`RealTimeSim.set_target` (the physics
        thread calls this before each step: a transport read from that thread instead of by
        callbacks in another one)."""


def _wait_until(ahead) -> None:
    """Return when ``ahead()`` (seconds still to go) is no longer positive: a sleep, then a
    spin of at most 0.1 ms (a sleep overshoots by ~0.05-0.1 ms)."""
    while (a := ahead()) > 0:
        if a > 0.00015:
            time.sleep(a - 0.0001)


class RealTimeSim:
    """Runs ``cfg``'s episodes in real time (:meth:`run`, on the caller's thread). Thread-safe
    inputs: :meth:`set_target`, :meth:`count_chunk`, :meth:`stop`, ``ending.request``.

    ``renderer``: ``make(env) -> renderer`` with ``submit(episode, stamp, sim_t, data) -> bool``
    (False: frame dropped), ``end_episode(episode)`` and ``close(timeout)``, e.g.
    :class:`sim.render.ThreadRenderer`; None: no cameras (or ``camera_hz`` 0)."""

    def __init__(self, cfg: RealTimeConfig, outputs: Outputs, renderer: Callable | None = None,
                 count_chunks: bool = False):
        from sim import SimEnv  # noqa: PLC0415
        from sim.episodes import EpisodeEnd  # noqa: PLC0415

        self.cfg, self.out = cfg, outputs
        self.env = SimEnv(cfg.sim_config())
        self.ending = EpisodeEnd(cfg.episode_end, 60.0 * cfg.max_episode_minutes)
        self.out_dir = Path(cfg.out_dir) if cfg.out_dir else None
        if self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            if not os.access(self.out_dir, os.W_OK):
                raise ValueError(f"out_dir: {self.out_dir} is not writable")
        self.arms = tuple(self.env.arms)
        self.cameras = tuple(self.env.cameras) if cfg.camera_hz > 0 else ()
        self.renderer = renderer(self.env) if (self.cameras and renderer is not None) else None
        self.count_chunks = count_chunks
        self._lock = threading.Lock()
        self._pending: dict[str, tuple[float, np.ndarray, np.ndarray]] = {}
        self._stop = threading.Event()
        self._close_lock = threading.Lock()
        self.episode = -1
        self.episode_start = 0.0
        self.chunks_this_episode = 0
        self.episode_results: list[dict] = []
        self.streams = {k: Stream(getattr(cfg, f"{k}_hz")) for k in (*STATE_STREAMS, "clock")}
        self.camera_stream = Stream(cfg.camera_hz) if self.renderer is not None else None
        self.rtf = 0.0
        self.slowed_s = 0.0         # wall seconds the physics was slowed down by (max_lag), finished episodes
        self.wall: WallLock | None = None   # the running episode's clock lock
        self.camera_dropped = 0
        self._episode_rt: dict = {}  # the last episode's real-time record (_run_episode)
        self.rt_priority = 0        # SCHED_FIFO priority the physics thread obtained
        self._frames_seen = (time.monotonic(), 0)   # the renderer's frame count at the last status()

    # ------------------------------------------------------------ inputs (any thread)

    #: a physics step is computed this long before its wall time (its readings go out at that
    #: time): a step with its readings takes ~0.1 ms here, up to ~0.3 ms at the 99th percentile
    PREPARE_S = 0.0004

    def set_target(self, arm: str, stamp: float, pos, quat) -> None:
        """A target for ``arm`` (world frame), applied at the next physics step."""
        with self._lock:
            self._pending[arm] = (stamp, pos, quat)

    def count_chunk(self) -> None:
        with self._lock:
            self.chunks_this_episode += 1

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    # ------------------------------------------------------------ the physics thread

    def run(self) -> None:
        """Every episode (``cfg.episodes``; 0 = until :meth:`stop`), then the summary."""
        if self.cfg.rt_priority > 0:
            from hardware.realtime import bound_gil_wait, enter_realtime, raise_other_threads  # noqa: PLC0415
            state = enter_realtime(self.cfg.rt_priority, memory=False,
                                   warn=lambda text: self.out.log("warning", text))
            self.rt_priority = state.fifo_priority
            if state.realtime:
                # a thread of this process holding the GIL must not be preempted by others
                raise_other_threads(self.cfg.rt_priority - 1)
                bound_gil_wait(self.env.dt)
        self.out.wait_ready(self._stop)
        while not self._stop.is_set():
            if self.cfg.episodes and self.episode + 1 >= self.cfg.episodes:
                break
            self._start_episode()
            reason = self._run_episode()
            if self._stop.is_set():
                break
            self._end_episode(reason)
        self.out.log("info", "all episodes done")
        if self.out_dir is not None and self.episode_results:
            from sim.report import write_metrics  # noqa: PLC0415
            summary = write_metrics(self.out_dir / "metrics.json", self.episode_results)
            self.out.log("info", f"summary: {summary}")

    def _start_episode(self) -> None:
        self.episode += 1
        seed = self.cfg.seed + self.episode
        self.env.reset(seed=seed)
        for arm in self.arms:
            self.env.set_target(arm, *self.env.home_pose(arm))
        with self._lock:
            self._pending.clear()
            self.chunks_this_episode = 0
        self.episode_start = self.out.now() + self.cfg.start_delay
        for s in (*self.streams.values(), *((self.camera_stream,) if self.camera_stream else ())):
            s.next_t = 0.0
        self.ending.begin(self.episode)
        from sim.report import jsonable  # noqa: PLC0415
        self.out.event({
            "event": "start", "episode": self.episode, "seed": seed, "task": self.cfg.task,
            "start_stamp": self.episode_start, "hold_stamp": self.episode_start - self.cfg.start_delay,
            "arms": list(self.arms), "episode_end": self.cfg.episode_end,
            "max_seconds": self.ending.limit_s if self.cfg.episode_end == "operator" else self.env.episode_seconds,
            "task_spec": jsonable(self.env.task_spec())})
        self.out.log("info", f"episode {self.episode} (seed {seed}) starts")
        # Hold the home pose while controllers reset, publishing live readings.
        while not self._stop.is_set() and self.out.now() < self.episode_start - 0.01:
            self._publish_state(self.out.now(), STATE_STREAMS)
            self.out.poll()       # the last episode's commands: taken, and refused by their stamps
            time.sleep(0.01)
        while self.out.now() < self.episode_start:
            time.sleep(0.0002)

    def _run_episode(self) -> str | None:
        """Steps the running episode, sim time 0 at ``episode_start``; the reason it ended."""
        env, dt = self.env, self.env.dt
        dropped0 = self.camera_dropped
        lock = self.wall = WallLock(time.monotonic() - (self.out.now() - self.episode_start), env.time,
                                    self.cfg.max_lag)
        reason = None
        while not self._stop.is_set() and (reason := self.ending.check(env.time, env.done)) is None:
            ahead = lock.ahead(time.monotonic(), env.time + dt)
            if ahead > self.PREPARE_S:
                time.sleep(min(ahead - self.PREPARE_S, 0.002))
                continue
            # The step and its readings are computed ahead, then sent at the reading's time: a
            # reading leaves when it is stamped, as a sensor's would, not a physics step later.
            self.out.poll()
            self._apply_pending()
            env.step(1)
            t = env.time
            due = tuple(k for k in STATE_STREAMS if self.streams[k].due(t))
            readings = self._observe(due) if due else ()
            _wait_until(lambda: lock.ahead(time.monotonic(), t))
            stamp = self.episode_start + lock.slowed + t
            for arm, obs, joints in readings:
                self.out.state(stamp, arm, obs, joints, due)
            if self.streams["clock"].due(t):
                self.out.clock(stamp)
            if self.camera_stream and self.camera_stream.due(t):
                if not self.renderer.submit(self.episode, stamp, t, env.data):
                    self.camera_dropped += 1
        self.rtf = lock.real_time_factor(time.monotonic(), env.time)
        self.slowed_s += lock.slowed
        self.wall = None
        # whether this episode ran in real time: a machine that cannot hold the stack slows the
        # sim (max_lag) and drops frames, and its episodes are then no real-time result
        self._episode_rt = {"factor": round(env.time / (env.time + lock.slowed), 4) if env.time > 0 else None,
                            "slowed_s": round(lock.slowed, 4),
                            "camera_frames_dropped": self.camera_dropped - dropped0}
        return reason

    def _apply_pending(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
        for arm, (stamp, pos, quat) in pending.items():
            if stamp < self.episode_start - self.cfg.start_delay:
                continue  # a command from before this episode
            try:
                self.env.set_target(arm, pos, quat)
            except ValueError as exc:
                self.out.reject(arm, str(exc))

    def _observe(self, which: tuple) -> list:
        """(arm, reading, joint state or None) of every arm, for the streams ``which``."""
        joints = self.cfg.embodiment == "arm" and "pose" in which
        return [(arm, self.env.observe(arm, tactile="tactile" in which), self.env.joint_state(arm) if joints else None)
                for arm in self.arms]

    def _publish_state(self, stamp: float, which: tuple) -> None:
        for arm, obs, joints in self._observe(which):
            self.out.state(stamp, arm, obs, joints, which)

    def _end_episode(self, reason: str | None) -> None:
        from sim.report import jsonable, plot_force  # noqa: PLC0415

        metrics = jsonable(self.env.metrics())
        metrics["real_time"] = self._episode_rt
        if self.count_chunks:
            with self._lock:
                metrics["policy_chunks"] = self.chunks_this_episode
        self.episode_results.append(metrics)
        if self.renderer is not None:
            self.renderer.end_episode(self.episode)
        if self.out_dir is not None:
            t, f = self.env.force_trace()
            np.savez_compressed(self.out_dir / f"force_{self.episode:03d}.npz", t=t, force=f,
                                band=np.asarray(self.env.force_band, float),
                                perturbation_times=np.asarray(self.env.perturbation_times, float))
            plot_force(self.out_dir / f"force_{self.episode:03d}.png", t, f,
                       self.env.force_band, self.env.perturbation_times,
                       f"{self.cfg.task} episode {self.episode} (seed {self.cfg.seed + self.episode})")
        self.out.event({"event": "end", "episode": self.episode, "reason": reason,
                        "stamp": self.out.now(), "metrics": metrics})
        # The figures that decide success, so a failed episode says why in the log.
        why = ", ".join(f"{k}={metrics[k]:.3g}" for k in ("coverage", "time_in_band", "max_lift", "hold_time",
                                                           "slip_events", "peak_force")
                        if isinstance(metrics.get(k), (int, float)) and not isinstance(metrics.get(k), bool))
        ended = "" if reason in (None, "task_length") else f", ended by {reason}"   # `slowfast sim` reads the rest
        self.out.log("info", f"episode {self.episode} done: success={metrics.get('success')} ({why}{ended})")

    def close_cameras(self, timeout: float) -> int | None:
        """Stop the renderer, letting it finish the episode video. Idempotent. Its exit code
        (a render process) or None; a render process that exits with an error when closed (not
        one that failed before) is reported as a warning."""
        with self._close_lock:
            if self.renderer is None:
                return None
            code = self.renderer.close(timeout=timeout)
        if code not in (0, None) and not self.renderer.failed:
            self.out.log("warning", f"camera render process exited with code {code} when closed")
        return code

    # ------------------------------------------------------------ status (any thread)

    def status(self) -> tuple[dict, list[str]]:
        """(values, problems) for a 1 Hz health report: real-time factor, episode, camera frame
        rate since the last call and dropped frames, RT priority, time slowed, the arm
        controller's counters this episode."""
        wall = self.wall
        if wall is not None:   # computed here, at the report's rate, not on every physics step
            self.rtf = wall.real_time_factor(time.monotonic(), self.env.time)
        values = {"real_time_factor": self.rtf, "episode": self.episode,
                  "camera_frames_dropped": self.camera_dropped, "physics_rt_priority": self.rt_priority,
                  "slowed_down_s": self.slowed_s + (wall.slowed if wall is not None else 0.0)}
        if self.renderer is not None:   # every camera renders each frame
            (t0, n0), now, frames = self._frames_seen, time.monotonic(), self.renderer.frames
            self._frames_seen = (now, frames)
            values.update({f"rate/{cam}/image": (frames - n0) / (now - t0) if now > t0 else 0.0
                           for cam in self.cameras})
        saturated = False
        for a in self.arms:   # physics steps this episode
            for k, v in self.env.controller_status(a).items():
                values[f"controller/{a}/{k}"] = v
                saturated |= k in ("wrench_saturated", "torque_saturated", "near_singular") and v > 0
        problems = [w for w, on in (("camera rendering stopped", self.renderer is not None and self.renderer.failed),
                                    ("sim slower than real time", self.rtf < REAL_TIME_MIN and self.episode >= 0),
                                    ("arm controller saturated or near a singularity", saturated)) if on]
        return values, problems
