"""The synchronous evaluator: a served policy and the simulator stepped in one process.

The same objects the ROS nodes run (:class:`policy.serving.SlowPlanner` around the exported
slow policy, :class:`policy.serving.FastController` around the reactive executor, the
decoder runtime and the safety filter), fed from :class:`sim.SimEnv` in simulated time, so
an episode costs what the models cost and nothing waits on a clock: faster than real time
and deterministic per seed. What the ROS stack adds in time is modelled (:class:`ServingTiming`):

* sensor readings (pose, wrench, tactile) are taken at ``sensor_hz`` and the camera at
  ``camera_hz`` (the sim node's rates), each stamped with its capture time;
* the slow policy's cycles follow :class:`policy.serving.SlowPlanner`'s schedule (polled at
  its ``POLL_HZ``, the first one as soon as the observation history of the episode is
  complete); its observation is the newest reading at the cycle's start, and its chunk
  reaches the fast loop ``latency_s`` later (the inference time plus transport);
* the fast loop ticks at ``control_hz`` with the newest readings.

Only the camera frames that the next slow cycle may look up are rendered, which is most of
the speed-up over the real-time stack.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from policy.force_loop import ForceLoopConfig


@dataclass
class ServingTiming:
    """The nodes' settings the evaluator reproduces (``slowfast evaluate`` fills them from the
    nodes' parameter files: they have no second default here) and the modelled latency."""

    control_hz: float             # rdp_fast.control_hz
    rate_hz: float                # rdp_slow.rate_hz
    sensor_hz: float              # sim_node pose/wrench rates
    camera_hz: float              # sim_node.camera_hz
    camera_width: int             # sim_node.camera_width
    camera_height: int            # sim_node.camera_height
    blend_s: float                # rdp_fast.blend_s
    image_tolerance: float        # rdp_slow.image_tolerance
    chunk_pose_tolerance: float   # rdp_fast.chunk_pose_tolerance
    handover: str                 # rdp_slow.handover: "blend" | "inpaint" (policy.rdp.handover)
    inpaint_soft_s: float         # rdp_slow.inpaint_soft_s
    embodiment: str               # sim_node.embodiment: "floating" | "arm" (the robot the episodes run on)
    splice: bool                  # rdp_fast.splice
    force: ForceLoopConfig = field(default_factory=ForceLoopConfig)   # rdp_fast.force (off by default)
    latency_s: float = 0.06       # cycle start -> chunk in the fast loop (inference + transport)
    transport_s: float = 0.0      # the part of latency_s after the inference (the slow side is free again)

    def __post_init__(self):
        for name, lo, hi in (("control_hz", 1.0, 1000.0), ("rate_hz", 0.1, 100.0), ("latency_s", 0.0, 5.0),
                             ("sensor_hz", 1.0, 1000.0), ("camera_hz", 1.0, 1000.0)):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and lo <= v <= hi):
                raise ValueError(f"{name}: {v!r} outside [{lo}, {hi}]")
        if not 0.0 <= self.transport_s <= self.latency_s:
            raise ValueError(f"transport_s: {self.transport_s!r} outside [0, latency_s = {self.latency_s}]")


class PolicyEvaluator:
    """Episodes of one served policy on one task.

    ``export_dir``: a folder written by ``slowfast export`` (its decoder serves latent chunks);
    ``slow``: the slow policy (default: the export's :class:`~policy.rdp.runtime.SlowPolicyRuntime`;
    an oracle replay passes its own); ``safety``: the :class:`~policy.safety.SafetyConfig`
    ``rdp_fast`` runs with."""

    def __init__(self, export_dir, task: str, safety, timing: ServingTiming, perturb: bool = True,
                 slow=None, episode_seconds: float | None = None, seed: int = 0):
        from slowfast_data.fileio import read_json
        from policy.rdp.runtime import DecoderRuntime, SlowPolicyRuntime
        from policy.serving import ArmHistory, ImageHistory, SlowPlanner

        from .config import SimConfig
        from .env import SimEnv

        self.timing = t = timing
        meta_path = Path(export_dir) / "runtime.json"
        if not meta_path.is_file():
            raise ValueError(f"{export_dir}: no runtime.json (not a `slowfast export` folder)")
        self.meta = read_json(meta_path)
        self.slow = slow if slow is not None else SlowPolicyRuntime(export_dir, threads=1, seed=seed)
        self.decoder = DecoderRuntime(export_dir, threads=1) if "decoder_step" in self.meta.get("files", {}) else None
        self.planner = SlowPlanner(self.slow, t.rate_hz, t.image_tolerance, handover=t.handover,
                                   decoder=self.decoder, inpaint_soft_s=t.inpaint_soft_s)
        self.planner.modelled_latency_s = t.latency_s   # what the planner would measure
        self.planner.transport_s = t.transport_s
        kw = dict(task=task, embodiment=t.embodiment, perturb=perturb, camera_width=t.camera_width,
                  camera_height=t.camera_height, render=bool(self.slow.cameras))
        if episode_seconds:
            kw["episode_seconds"] = episode_seconds
        self.env = SimEnv(SimConfig(**kw))
        arms = list(self.meta["shapes"]["arms"])
        if list(self.env.arms) != arms:
            raise ValueError(f"{export_dir}: the model drives arms {arms}, the {task} scene has {list(self.env.arms)}")
        self.safety = safety
        self.history = ArmHistory(self.env.arms, seconds=3.0)
        self.images = ImageHistory(self.slow.cameras)
        self.controller = self._controller()   # restarted at each episode, as rdp_fast at an episode start
        self.task = task

    def close(self) -> None:
        self.env.close()

    def _controller(self):
        from policy.reactive import ReactiveExecutor
        from policy.safety import SafetyFilter
        from policy.serving import FastController

        m = self.meta
        ex = ReactiveExecutor(self.decoder, int(m["horizon"]), 1.0 / float(m["fps"]), self.timing.blend_s,
                              num_arms=len(self.env.arms))
        filters = {a: SafetyFilter(self.safety) for a in self.env.arms}
        return FastController(ex, filters, self.planner.contact_kind, int(m["shapes"]["contact_raw_dim"]),
                              self.timing.chunk_pose_tolerance, self.timing.force, splice=self.timing.splice)

    def run(self, seed: int) -> dict:
        """One episode on ``seed``: the task's metrics (sim/metrics.py) plus serving counts."""
        from policy.serving import ArmSnapshot

        t, env, planner = self.timing, self.env, self.planner
        env.reset(seed=seed)
        if hasattr(self.slow, "begin_episode"):
            self.slow.begin_episode(seed)
        self.history.clear()
        self.images.clear()
        ms = env.dt
        n_total = int(round(env.episode_seconds / ms))
        sensor_every = max(1, int(round(1.0 / (t.sensor_hz * ms))))
        ctl_every = max(1, int(round(1.0 / (t.control_hz * ms))))
        poll_every = max(1, int(round(1.0 / (planner.POLL_HZ * ms))))
        latency_steps = int(round(t.latency_s / ms))
        cam_steps = {int(round(k / (t.camera_hz * ms))) for k in range(int(n_total * ms * t.camera_hz) + 1)}
        # a frame is rendered only when a cycle may look it up: within the observation window
        # (plus the image tolerance) before the next due cycle
        window = (planner.obs_times(0.0)[-1] - planner.obs_times(0.0)[0]) + t.image_tolerance + 2 * poll_every * ms
        base = set(range(0, n_total, sensor_every)) | set(range(0, n_total, ctl_every)) | set(range(0, n_total, poll_every))
        if self.slow.cameras:
            base |= cam_steps
        events = sorted(s for s in base if s < n_total)
        planner.restart()
        controller = self.controller
        controller.executor.handover_jumps.clear()   # this episode's seams only
        controller.executor.handover_turns.clear()
        if controller.splicer is not None:
            controller.splicer.times.clear()           # ... and splice times
        before = {a: dict(sf.counts) for a, sf in controller.filters.items()}   # the filters count for good
        tactile = planner.contact_kind == "tactile"
        snap = {}
        deliveries: list[tuple[int, tuple]] = []
        stats = {"chunks": 0, "skipped": {}, "rejected": {}, "rendered": 0, "targets_refused": 0}
        last_sensor = -1.0
        step = 0
        for nxt in events:   # a chunk in flight is taken by the first control tick after it lands
            if nxt > step:
                env.step(nxt - step)
                step = nxt
            now = step * ms
            if step % sensor_every == 0:
                for a in env.arms:
                    s = env.observe(a, tactile=tactile)
                    snap[a] = ArmSnapshot(pose_stamp=now, tcp_pos=s.tcp_pos, tcp_quat=s.tcp_quat, tcp_linvel=s.tcp_linvel,
                                          tcp_angvel=s.tcp_angvel, wrench_stamp=now, wrench=s.wrench,
                                          tactile_stamp=now, tactile=s.tactile)
                    self.history.add_state(a, now, s, tactile)
                if step == 0:
                    controller.restart(snap)
                last_sensor = now
            if step in cam_steps and self.slow.cameras and now >= planner.next_due - window:
                for cam in self.slow.cameras:
                    self.images.add(cam, now, env.render(cam))
                stats["rendered"] += 1
            if step % poll_every == 0 and planner.due(now):
                chunk, why = planner.plan(now, last_sensor, self.history, self.images, episode_time=last_sensor)
                if why:
                    stats["skipped"][why] = stats["skipped"].get(why, 0) + 1
                else:
                    deliveries.append((step + max(latency_steps, 1), (last_sensor, planner.kind, chunk)))
                    stats["chunks"] += 1
            if step % ctl_every == 0:
                pending = None
                while deliveries and deliveries[0][0] <= step:
                    pending = deliveries.pop(0)[1]   # the node keeps only the newest pending chunk
                res = controller.tick(now, snap, pending, None, self.history)
                if res.rejected:
                    stats["rejected"][res.rejected] = stats["rejected"].get(res.rejected, 0) + 1
                for a, (pos, quat) in res.commands.items():
                    try:
                        env.set_target(a, pos, quat)
                    except ValueError:   # as sim_node: the target is refused, the previous one stays
                        stats["targets_refused"] += 1
        if n_total > step:
            env.step(n_total - step)
        metrics = env.metrics()
        seams = list(controller.executor.handover_jumps)
        metrics["handover_jump_m"] = {"max": float(max(seams)) if seams else None,
                                      "p50": float(np.median(seams)) if seams else None, "count": len(seams)}
        turns = np.degrees(list(controller.executor.handover_turns))
        metrics["handover_turn_deg"] = {"max": float(turns.max()) if turns.size else None,
                                        "p50": float(np.median(turns)) if turns.size else None}
        spliced = list(controller.splicer.times) if controller.splicer is not None else []
        metrics["splice_s"] = {"max": float(max(spliced)) if spliced else None,
                               "p50": float(np.median(spliced)) if spliced else None, "count": len(spliced)}
        metrics.update({"seed": int(seed), "perturbed": bool(env.cfg.perturb), "chunks": stats["chunks"],
                        "skipped": stats["skipped"], "chunks_rejected": stats["rejected"],
                        "frames_rendered": stats["rendered"], "targets_refused": stats["targets_refused"],
                        "inpaint_pull_s": planner.inpaint_pull_s(),
                        "safety": {a: _episode_report(sf, before[a]) for a, sf in controller.filters.items()}})
        return metrics


def _episode_report(sf, before: dict) -> dict:
    """The filter's report with this episode's interventions only."""
    rep = sf.report()
    for reason, n in before.items():
        rep[f"interventions/{reason}"] -= n
    return rep


def evaluate(export_dir, task: str, seeds, safety, timing: ServingTiming, perturb: bool = True,
             slow_factory=None, episode_seconds: float | None = None, progress=None) -> list[dict]:
    """Episodes on ``seeds`` in this process; ``slow_factory()`` builds an oracle replay."""
    ev = PolicyEvaluator(export_dir, task, safety, timing, perturb,
                         slow=slow_factory() if slow_factory else None, episode_seconds=episode_seconds)
    out = []
    try:
        for s in seeds:
            out.append(ev.run(int(s)))
            if progress is not None:
                progress(out[-1])
    finally:
        ev.close()
    return out
