"""The navigation sim run in real time, episode after episode, behind callbacks: no ROS.

``nav_sim_node`` serves this over ROS 2; the episodes, their pacing and their scoring live here
so they are tested without rclpy and any transport can drive them. :class:`LiveNavSim` owns two
threads:

* the physics thread integrates the base at ``physics_hz``, locked to the wall clock (a stall
  is not caught up in a burst), with the newest command while it is younger than
  ``cmd_timeout`` (else zero). It hands odometry out at ``odom_hz`` and queues a camera
  snapshot at ``camera_hz``; stamps come from the caller's clock (``Outlets.now``: ROS time);
* the render thread renders the snapshots (``sim.render.SnapshotRenderer``; a frame is dropped
  and counted when it is behind) and hands out colour and depth (metres, clipped as the sensor).

An episode (seed ``seed + k``) is announced, then its instruction is handed out once somebody
listens (``Outlets.listeners``), ``start_delay`` s before it starts; odometry flows meanwhile.
It ends on the agent's STOP (:meth:`LiveNavSim.request_stop` with the episode's instruction) or
after ``episode_seconds``; the executed path is scored against the reference path (NE, SR, OS,
SPL, nDTW) and, with ``out_dir``, written as ``episode_NNN.json`` + ``episode_NNN.png`` + the
camera's ``camera_NNN.mp4``, and all episodes' ``summary.json`` after the last.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import queue
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np

from slowfast_data.fields import described

from ..render import SnapshotRenderer
from ..report import EpisodeVideo
from .env import NavConfig, NavEnv
from .episodes import make_episode
from .metrics import metrics_on_layout, summarize


@dataclasses.dataclass
class LiveNavConfig:
    """How many episodes run, how fast the sim hands out data, and how episodes are scored."""

    seed: int = described(0, "seed of the first episode; episode k uses seed + k (layout and route)")
    episodes: int = described(0, "episodes to run, then exit (0 = run until stopped)")
    episode_seconds: float = described(240.0, "time limit of an episode (s)")
    nav: NavConfig = described(NavConfig(), "the simulated apartment, camera and base (sim.nav.NavConfig)")
    camera_hz: float = described(10.0, "camera rate (Hz)")
    odom_hz: float = described(50.0, "odometry rate (Hz)")
    physics_hz: float = described(100.0, "base integration rate (Hz)")
    cmd_timeout: float = described(0.5, "stop the base when no cmd_vel came for this long (s)")
    out_dir: str = described("", "write per-episode metrics JSON, top-down PNG, camera MP4 and summary.json here "
                                 "('' = none)")
    start_delay: float = described(1.0, "seconds between publishing an episode's instruction and its start")
    success_radius: float = described(3.0, "SR / OS radius (m)")

    def __post_init__(self):
        if self.episodes < 0:
            raise ValueError(f"episodes: {self.episodes} must be >= 0")
        if not (1.0 <= self.episode_seconds <= 36000.0):
            raise ValueError(f"episode_seconds: {self.episode_seconds} outside 1..36000 s")
        if not (0.0 < self.camera_hz <= 60.0):
            raise ValueError(f"camera_hz: {self.camera_hz} outside (0, 60]")
        if not (1.0 <= self.odom_hz <= 500.0):
            raise ValueError(f"odom_hz: {self.odom_hz} outside 1..500")
        if not (self.odom_hz <= self.physics_hz <= 1000.0):
            raise ValueError(f"physics_hz: {self.physics_hz} outside odom_hz..1000")
        if not (0.05 <= self.cmd_timeout <= 10.0):
            raise ValueError(f"cmd_timeout: {self.cmd_timeout} outside 0.05..10 s")
        if not (0.0 <= self.start_delay <= 30.0):
            raise ValueError(f"start_delay: {self.start_delay} outside 0..30 s")
        if not (0.1 <= self.success_radius <= 20.0):
            raise ValueError(f"success_radius: {self.success_radius} outside 0.1..20 m")


@dataclasses.dataclass
class Outlets:
    """Where the sim's data goes (the node: its publishers) and the clock that stamps it."""

    now: Callable[[], float]                                   # stamp of a capture (s)
    odometry: Callable[[float, np.ndarray, np.ndarray], None]  # stamp, pose (x, y, yaw), velocity (v, w)
    frame: Callable[[float, np.ndarray, np.ndarray], None]     # stamp, rgb HxWx3 uint8, depth HxW metres
    episode: Callable[[dict], None]                            # "start" and "end" events
    instruction: Callable[[str], None]                         # an episode's instruction, once
    listeners: Callable[[], int]                               # how many listen to the instruction
    instruction_topic: str = "instruction"                     # its name, for the log


class LiveNavSim:
    def __init__(self, cfg: LiveNavConfig, out: Outlets, log: logging.Logger | None = None):
        self.cfg = cfg
        self.out = out
        self.log = log or logging.getLogger("sim.nav.live")
        self.env = NavEnv(cfg.nav)
        self.out_dir = Path(cfg.out_dir) if cfg.out_dir else None
        self.video = None   # the camera, one MP4 per episode (render thread)
        if self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self.video = EpisodeVideo(self.out_dir, cfg.camera_hz)
        self._lock = threading.Lock()
        self._cmd = (0.0, 0.0)
        self._cmd_time = -1e9
        self._stop_request: int | None = None  # episode id the agent said STOP in
        self.instruction: str | None = None
        self.episode = -1
        self.episode_results: list[dict] = []
        self.camera_dropped = 0
        self._render_q: queue.Queue = queue.Queue(maxsize=2)
        self._stop = threading.Event()
        self.renderer = None
        self._physics: threading.Thread | None = None
        self._render: threading.Thread | None = None

    # ------------------------------------------------------------ inputs (any thread)

    def command(self, v: float, w: float, now: float) -> None:
        """A base command (m/s, rad/s) received at monotonic time ``now``."""
        with self._lock:
            self._cmd = (v, w)
            self._cmd_time = now

    def request_stop(self, instruction) -> None:
        """The agent said STOP; it ends the episode when ``instruction`` is this episode's."""
        if instruction == self.instruction:
            with self._lock:
                self._stop_request = self.episode

    # ------------------------------------------------------------ threads

    def start(self, on_done: Callable[[BaseException | None], None]) -> "LiveNavSim":
        """Start rendering and the episodes; ``on_done(error or None)`` from the physics thread
        once the episodes are over (or failed, or :meth:`close` stopped them)."""
        self._physics = threading.Thread(target=self._physics_loop, args=(on_done,), name="navsim-physics",
                                         daemon=True)
        self._render = threading.Thread(target=self._render_loop, name="navsim-render", daemon=True)
        self._render.start()
        self._physics.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._physics is not None and self._physics.is_alive():
            self._physics.join(timeout=3.0)
        if self._render is not None and self._render.is_alive():
            self._render_q.put(None)
            self._render.join(timeout=3.0)

    def _physics_loop(self, on_done) -> None:
        error = None
        try:
            self.run()
        except Exception as exc:  # noqa: BLE001 - report and stop, never die silently
            self._stop.set()
            error = exc
        self._render_q.put(None)
        on_done(error)

    # ------------------------------------------------------------ episodes (physics thread)

    def run(self) -> None:
        """Run the episodes (until ``episodes`` are done or :meth:`close`), then the summary."""
        cfg = self.cfg
        dt = 1.0 / cfg.physics_hz
        while not self._stop.is_set():
            if cfg.episodes and self.episode + 1 >= cfg.episodes:
                break
            ep = self._start_episode()
            if self._stop.is_set():
                break
            t0 = time.monotonic()
            next_t = t0
            # odometry and camera go out on grids of their stamps' clock: a stall between the
            # loop's clock read and the stamp (the step, the lock) must not bunch two stamps
            next_odom = next_cam = self.out.now()
            last_rec = self.env.pose.copy()
            path = [last_rec.copy()]
            reason = "time_limit"
            while not self._stop.is_set():
                now = time.monotonic()
                if now < next_t:
                    time.sleep(min(next_t - now, 0.005))
                    continue
                next_t += dt
                if now > next_t + 0.1:
                    next_t = now  # far behind (a stall): do not catch up in a burst
                with self._lock:
                    v, w = self._cmd if now - self._cmd_time <= cfg.cmd_timeout else (0.0, 0.0)
                    stop_req = self._stop_request == self.episode
                    self.env.step(v, w, dt)
                pose = self.env.pose
                if np.hypot(*(pose[:2] - last_rec[:2])) >= 0.05:
                    path.append(pose.copy())
                    last_rec = pose.copy()
                stamp = self.out.now()
                if stamp >= next_odom:
                    next_odom = max(next_odom + 1.0 / cfg.odom_hz, stamp + 0.5 / cfg.odom_hz)   # behind: skip, never burst
                    self._odometry(stamp)
                if stamp >= next_cam:
                    next_cam = max(next_cam + 1.0 / cfg.camera_hz, stamp + 0.5 / cfg.camera_hz)
                    self._queue_render(stamp)
                if stop_req:
                    reason = "stop"
                    break
                if now - t0 > cfg.episode_seconds:
                    break
            if self._stop.is_set():
                break
            path.append(self.env.pose.copy())
            self._end_episode(ep, np.array(path), reason, time.monotonic() - t0)
            self._finish_video()
        self.log.info("all episodes done")
        if self.out_dir is not None and self.episode_results:
            summary = summarize(self.episode_results)
            (self.out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
            self.log.info(f"summary: {summary}")

    def _start_episode(self):
        self.episode += 1
        seed = self.cfg.seed + self.episode
        ep = make_episode(seed, self.env.cfg.layout)
        with self._lock:  # the renderer must not read the model while it is replaced
            self.env.reset(ep.layout_seed, ep.start)
            if self.renderer is None or self.renderer.model is not self.env.model:
                self._render_q.put(("renderer", SnapshotRenderer(self.env)))
        self.instruction = ep.instruction
        with self._lock:
            self._stop_request = None
            self._cmd, self._cmd_time = (0.0, 0.0), -1e9
        self.out.episode({
            "event": "start", "episode": self.episode, "seed": seed, "instruction": ep.instruction,
            "goal": list(ep.goal), "goal_name": ep.goal_name, "start": list(ep.start), "shortest": ep.shortest})
        self.log.info(f"episode {self.episode} (seed {seed}): {ep.instruction}")
        # Wait for a listener (the nav node), handing out odometry meanwhile.
        t_end = time.monotonic() + self.cfg.start_delay
        sent = False
        warn_at = time.monotonic() + 5.0
        while not self._stop.is_set() and (not sent or time.monotonic() < t_end):
            if not sent and warn_at is not None and time.monotonic() > warn_at:
                warn_at = None
                self.log.warning(
                    f"episode {self.episode}: nobody subscribes to {self.out.instruction_topic} yet; the episode "
                    "starts when a navigation node (streamvln_nav) listens")
            if not sent and self.out.listeners() > 0:
                time.sleep(0.2)  # the subscriber's discovery completes
                self.out.instruction(ep.instruction)
                sent = True
                t_end = time.monotonic() + self.cfg.start_delay
            self._odometry(self.out.now())
            time.sleep(0.05)
        return ep

    def _end_episode(self, ep, path: np.ndarray, reason: str, seconds: float) -> None:
        m = metrics_on_layout(self.env.layout, path, ep, self.cfg.success_radius)
        m.update({"episode": self.episode, "seed": ep.seed, "end": reason, "seconds": seconds,
                  "bumps": self.env.bumps, "instruction": ep.instruction})
        self.episode_results.append(m)
        if self.out_dir is not None:
            from .report import plot_episode  # noqa: PLC0415 - matplotlib only when writing
            rec = {**m, "episode_spec": ep.to_dict(), "path": np.round(path, 3).tolist()}
            (self.out_dir / f"episode_{self.episode:03d}.json").write_text(json.dumps(rec, indent=2))
            plot_episode(self.out_dir / f"episode_{self.episode:03d}.png", self.env.layout, ep, path, m,
                         f"episode {self.episode} ({reason})")
        self.out.episode({"event": "end", "episode": self.episode, "metrics": m})
        with self._lock:
            self._cmd, self._cmd_time = (0.0, 0.0), -1e9
        self.log.info(f"episode {self.episode} done ({reason}): "
                      + ", ".join(f"{k} {m[k]:.2f}" for k in ("NE", "SR", "SPL", "nDTW")))

    def _odometry(self, stamp: float) -> None:
        self.out.odometry(stamp, self.env.pose, self.env.velocity)

    # ------------------------------------------------------------ rendering

    def _queue_render(self, stamp: float) -> None:
        r = self.renderer
        if r is None or r.model is not self.env.model:
            return
        snap = r.snapshot(self.env.data)
        if snap is None:
            self.camera_dropped += 1
            return
        try:
            self._render_q.put_nowait(("frame", stamp, snap, self.episode))
        except queue.Full:
            r.release(snap)
            self.camera_dropped += 1

    def _finish_video(self) -> None:
        """Close the ended episode's MP4 before going on (its record, and after the last one the
        summary, then stand for a complete video): the render thread closes it after the
        frames queued before this request."""
        if self.video is None or self._render is None or not self._render.is_alive():
            return
        done = threading.Event()
        self._render_q.put(("end", done))
        done.wait(timeout=10.0)

    def _render_loop(self) -> None:
        renderer = None
        while True:
            item = self._render_q.get()
            if item is None:
                break
            if item[0] == "end":
                if self.video is not None:
                    self.video.close()
                item[1].set()
                continue
            if item[0] == "renderer":
                if renderer is not None:
                    renderer.close()
                renderer = self.renderer = item[1]
                continue
            _, stamp, snap, episode = item
            try:
                rgb, depth = renderer.render(snap, "rgbd", depth=True)
            finally:
                renderer.release(snap)
            self.out.frame(stamp, rgb, self.env.clip_depth(depth))
            if self.video is not None:
                self.video.add(episode, stamp, rgb)
        if renderer is not None:
            renderer.close()
        if self.video is not None:
            self.video.close()
