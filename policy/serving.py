"""Serving a chunked policy: the per-cycle work of ``rdp_slow`` and the per-tick work of
``rdp_fast``, without ROS.

The nodes and the synchronous evaluator (:mod:`sim.policy_eval`) run exactly this code; they
differ only in where the readings come from (topics, or the simulator stepped in the same
process) and in what drives time (the wall/ROS clock, or simulated time).

* :class:`ArmSnapshot`, :class:`StampedBuffer`, :class:`ArmHistory`, :class:`ImageHistory`:
  the measured state of the arms and cameras by capture stamp.
* :class:`SlowPlanner`: from the newest observation stamp, the model's observation history
  (poses, contact readings and images at the model's frame times) and one chunk.
* :class:`FastController`: one control tick: the freshest contact reading into the reactive
  executor, a new chunk (with its start pose looked up by its observation stamp) submitted,
  the executor's target through each arm's safety filter; a clock jump drops every chunk.
* Around them, what the nodes used to hold: :func:`load_slow_planner` and :class:`SlowCycle`
  (rdp_slow: which observation a cycle plans from, skips, diagnostics);
  :class:`FastLoopConfig`, :func:`load_fast_export`, :class:`ChunkInbox` and
  :func:`fast_diagnostics` (rdp_fast: settings, export check, what its callbacks store,
  diagnostics values).
"""
from __future__ import annotations

import os
import signal
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hardware.realtime import MODES, leave_realtime
from policy.force_loop import ForceLoop, ForceLoopConfig
from policy.rdp.contract import ObservationWindow, contact_kind, contact_vector
from policy.rdp.handover import HANDOVERS, Issued, build_guide, splice_latent
from policy.reactive import Chunk, StampedBuffer
from policy.safety import safety_report
from slowfast_data.fileio import read_json
from slowfast_data.features import per_arm, pose_vector
from slowfast_data.fields import described
from slowfast_data.geometry import quat_to_matrix_one


# ------------------------------------------------------------------------------ state


@dataclass
class ArmSnapshot:
    """What a controller sees of one arm; stamps are capture times (seconds)."""

    pose_stamp: float = float("nan")
    tcp_pos: np.ndarray = field(default_factory=lambda: np.full(3, np.nan))
    tcp_quat: np.ndarray = field(default_factory=lambda: np.array([0.0, 0.0, 0.0, 1.0]))
    tcp_linvel: np.ndarray = field(default_factory=lambda: np.zeros(3))
    tcp_angvel: np.ndarray = field(default_factory=lambda: np.zeros(3))
    wrench_stamp: float = float("nan")
    wrench: np.ndarray = field(default_factory=lambda: np.full(6, np.nan))
    tactile_stamp: float = float("nan")
    tactile: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))

    @property
    def complete(self) -> bool:
        return bool(np.isfinite([self.pose_stamp, self.wrench_stamp, self.tactile_stamp]).all())

    @property
    def newest_stamp(self) -> float:
        return float(np.nanmax([self.pose_stamp, self.wrench_stamp, self.tactile_stamp]))

    @property
    def oldest_stamp(self) -> float:
        return float(min(self.pose_stamp, self.wrench_stamp, self.tactile_stamp))


KINDS = ("pose", "wrench", "tactile")


class MarkerFiller:
    """Lost tactile markers filled as a policy needs its input whole. A marker tracker
    reports a marker it lost as a NaN row (``gelsight_node`` does); one lost marker must not
    stop a tactile policy. A lost marker takes its last valid row when that is at most
    ``hold_s`` old, else its last position with the mean displacement of its ``neighbours``
    nearest valid markers; a field with fewer than ``min_valid`` of its markers valid (or a
    marker never seen) is refused (None) and the arm is held. ``counts`` says how often."""

    def __init__(self, hold_s: float = 0.1, min_valid: float = 0.5, neighbours: int = 3):
        self.hold_s, self.min_valid, self.neighbours = float(hold_s), float(min_valid), int(neighbours)
        self.last: np.ndarray | None = None          # (N, 4) last valid row of each marker
        self.last_t: np.ndarray | None = None        # (N,) its stamp (-inf: never seen)
        self.counts = {"filled_last": 0, "filled_neighbours": 0, "refused_too_few": 0}
        self._cache = (None, None)

    def reset(self) -> None:
        self.last = self.last_t = None
        self._cache = (None, None)

    def fill(self, stamp: float, field) -> np.ndarray | None:
        """The field of ``stamp`` filled, or None; the same stamp twice is filled (and counted) once."""
        if self._cache[0] == stamp:
            return self._cache[1]
        out = self._fill(stamp, field)
        self._cache = (stamp, out)
        return out

    def _fill(self, stamp: float, field) -> np.ndarray | None:
        f = np.asarray(field, np.float32).reshape(-1, 4)
        valid = np.isfinite(f).all(1)
        if valid.all():
            self.last, self.last_t = f.copy(), np.full(len(f), stamp)
            return f
        if self.last is None or len(self.last) != len(f):
            self.last, self.last_t = np.full_like(f, np.nan), np.full(len(f), -np.inf)
        if valid.mean() < self.min_valid:
            self.counts["refused_too_few"] += 1
            return None
        out = f.copy()
        self.last[valid], self.last_t[valid] = f[valid], stamp
        lost = np.flatnonzero(~valid)
        recent = lost[(stamp - self.last_t[lost] <= self.hold_s) & np.isfinite(self.last[lost]).all(1)]
        out[recent] = self.last[recent]
        self.counts["filled_last"] += len(recent)
        stale = np.setdiff1d(lost, recent)
        if len(stale):
            if not np.isfinite(self.last[stale, :2]).all():
                self.counts["refused_too_few"] += 1   # a marker never seen: no position to fill
                return None
            pos = f[valid, :2]
            d = np.linalg.norm(self.last[stale, None, :2] - pos[None], axis=-1)
            near = np.argsort(d, axis=1)[:, :self.neighbours]
            out[stale, :2] = self.last[stale, :2]
            out[stale, 2:] = f[valid, 2:][near].mean(1)
            self.counts["filled_neighbours"] += len(stale)
        return out


class ArmHistory:
    """Per arm, the recent poses ((7,) position + quaternion x, y, z, w), wrenches and tactile
    fields by capture stamp; lost tactile markers are filled (:class:`MarkerFiller`, one per
    arm) and a field it refuses is not kept. Not locked (a node guards it with its own lock)."""

    def __init__(self, arms, seconds: float = 3.0):
        self.arms = tuple(arms)
        self._b = {(a, k): StampedBuffer(seconds) for a in self.arms for k in KINDS}
        self.fillers = {a: MarkerFiller() for a in self.arms}

    def add_state(self, arm: str, stamp: float, state, tactile: bool = True) -> None:
        """One arm's measured state (anything with ``tcp_pos``, ``tcp_quat``, ``wrench`` and
        ``tactile``, e.g. :class:`sim.types.ArmState`), all captured at ``stamp``."""
        self.add(arm, "pose", stamp, pose_vector(state.tcp_pos, state.tcp_quat))
        self.add(arm, "wrench", stamp, state.wrench)
        if tactile:
            self.add(arm, "tactile", stamp, state.tactile)

    def add(self, arm: str, kind: str, stamp: float, value) -> None:
        if kind == "tactile":
            value = self.fillers[arm].fill(stamp, value)
            if value is None:
                return
        self._b[(arm, kind)].add(stamp, value)

    def at(self, kind: str, stamp: float, tolerance: float) -> list | None:
        """Per arm, the ``kind`` reading nearest to ``stamp`` within ``tolerance`` s; None
        if any arm has none."""
        out = []
        for a in self.arms:
            hit = self._b[(a, kind)].at(stamp, tolerance)
            if hit is None:
                return None
            out.append(hit[1])
        return out

    def before(self, kind: str, stamp: float) -> list | None:
        """Per arm, the newest ``kind`` reading captured at or before ``stamp``; None if any
        arm has none."""
        out = [self._b[(a, kind)].before(stamp) for a in self.arms]
        return None if any(v is None for v in out) else out

    def clear(self) -> None:
        for b in self._b.values():
            b.clear()
        for f in self.fillers.values():
            f.reset()


class ImageHistory:
    """The last ``seconds`` of images of each camera, by capture stamp (thread-safe)."""

    def __init__(self, cameras, seconds: float = 3.0):
        self._lock = threading.Lock()
        self._b = {c: StampedBuffer(seconds) for c in cameras}

    def add(self, cam: str, stamp: float, rgb: np.ndarray) -> None:
        with self._lock:
            self._b[cam].add(stamp, rgb)

    def at(self, cam: str, stamp: float, tolerance: float) -> np.ndarray | None:
        with self._lock:
            hit = self._b[cam].at(stamp, tolerance)
        return None if hit is None else hit[1]

    def clear(self) -> None:
        with self._lock:
            for b in self._b.values():
                b.clear()


# ------------------------------------------------------------------------------ slow side


class SlowPlanner:
    """One cycle of the slow policy: observation history at the model's frame times ending at
    ``t_obs`` (the newest TCP pose's capture time), then one chunk.

    ``policy`` is a :class:`~policy.rdp.runtime.SlowPolicyRuntime` (or anything with its
    ``meta``, ``cameras``, ``n_obs``, ``history`` and ``predict``); a policy with
    ``wants_episode_time = True`` (the oracle replay) also gets the observation's time since
    the episode start.

    Schedule: a cycle is due every ``1 / rate_hz`` s after the start of the last cycle that
    produced a chunk, and at once after :meth:`restart` (an episode start): the first chunk
    of an episode comes as soon as the observation history is complete, not up to a period
    later at whatever phase the loop had (a wipe policy held the arm for up to 0.7 s of an
    8 s episode that way). The caller polls :meth:`due` at :attr:`POLL_HZ`; a skipped cycle
    is retried at the next poll.

    Latency-aware: the planner keeps the latencies it observed (:meth:`observe_latency`; the
    wall time of each model call unless the caller knows better, e.g. the evaluator's
    modelled latency) and starts a cycle early enough that its chunk arrives, at the
    latency's 90th percentile, one row before the chunk it issued last runs out, whatever
    ``rate_hz`` says.

    Handover ``"inpaint"`` (:mod:`policy.rdp.handover`): each chunk is generated with the
    steps that will execute from the previous chunk while it is computed frozen to them, and
    the rest of the overlap pulled towards them (Real-Time Chunking); a latent chunk needs
    ``decoder`` (the export's :class:`~policy.rdp.runtime.DecoderRuntime`, whose tokenizer
    encoder makes the frozen latent rows). ``"blend"`` leaves the chunks independent (the
    fast loop blends them).
    """

    POLL_HZ = 50.0
    LATENCY_WINDOW = 32

    def __init__(self, policy, rate_hz: float, image_tolerance: float = 0.05, num_inference_steps: int | None = None,
                 handover: str = "blend", decoder=None, inpaint_soft_s: float | None = None):
        meta = policy.meta
        self.policy = policy
        self.kind = "latent" if meta["model_type"] in ("rdp_ldp", "rdp_tokenizer") else "action"
        # the policy's history lengths (read from its runtime.json), the export's stride and rate
        self.window = ObservationWindow(int(policy.n_obs), int(meta.get("obs_stride", 1)), int(policy.history),
                                        float(meta["fps"]))
        self.step_dt = self.window.step_dt
        self.compression = int(meta.get("compression", 1)) if self.kind == "latent" else 1
        self.row_dt = self.step_dt * self.compression
        self.horizon = int(meta["horizon"])
        self.contact_kind = contact_kind(meta)
        self.image_tolerance = image_tolerance
        self.num_inference_steps = num_inference_steps or None
        if handover not in HANDOVERS:
            raise ValueError(f"handover: {handover!r} is not one of {', '.join(HANDOVERS)}")
        if handover == "inpaint" and self.kind == "latent" and decoder is None:
            raise ValueError("handover 'inpaint' of a latent chunk needs the export's decoder")
        self.handover, self.decoder = handover, decoder
        # how far past the frozen steps the pull reaches at rate_hz (None: the whole overlap)
        self.soft_s = None if inpaint_soft_s is None else float(inpaint_soft_s)
        self.latency_s = float("nan")   # wall time of the last model call
        self.latencies: deque[float] = deque(maxlen=self.LATENCY_WINDOW)
        self.modelled_latency_s: float | None = None   # set: observe this instead of the wall time
        # of a latency, the part after the inference (transport to the fast loop): the planner
        # may start the next cycle meanwhile (cycles then overlap, each guided by the last issued)
        self.transport_s = 0.0
        self.period = 1.0 / float(rate_hz)
        self.next_due = -np.inf
        self.not_before = -np.inf       # no observation before the episode's start (restart)
        self.issued = None              # the last chunk issued (policy.rdp.handover.Issued)
        self.guided = 0                 # chunks generated with a guide

    def restart(self, not_before: float = -np.inf) -> None:
        """A new episode: the next cycle is due at once; nothing to agree with. ``not_before``:
        the episode's start stamp, when readings come before it (a sim's hold at the home pose,
        its physics not stepping): no observation window may reach back before it, or the
        chunk's steps would run on through the hold and the arm would start the episode that
        far into its chunk."""
        self.next_due = -np.inf
        self.issued = None
        self.not_before = float(not_before)

    def observe_latency(self, seconds: float) -> None:
        if np.isfinite(seconds) and seconds >= 0:
            self.latencies.append(float(seconds))

    def latency_estimate(self) -> float:
        """The 90th percentile of the recent cycle latencies (0 before the first)."""
        return float(np.percentile(self.latencies, 90)) if self.latencies else 0.0

    def due(self, now: float) -> bool:
        return now >= self.next_due - 1e-9

    def obs_times(self, t_obs: float) -> list[float]:
        return self.window.obs_times(t_obs)

    def observation(self, t_obs: float, history: ArmHistory, images: ImageHistory | None):
        """The model's observation at ``t_obs`` (the window of :mod:`policy.rdp.contract`):
        ((frames {camera: (n_obs, H, W, 3)} or None, tcp_pose (n_obs, A*7), contact (Ch, Craw)
        float32), None), or (None, why there is none)."""
        tol = max(self.step_dt, 0.01)
        times = self.window.obs_times(t_obs)
        poses = [history.at("pose", t, tol) for t in times]
        contacts = [history.at(self.contact_kind, t, tol) for t in self.window.contact_times(t_obs)]
        if any(x is None for x in poses) or any(x is None for x in contacts):
            return None, "history_incomplete"
        frames = None
        if self.policy.cameras:
            frames = {}
            for cam in self.policy.cameras:
                seq = [images.at(cam, t, self.image_tolerance) if images is not None else None for t in times]
                if any(f is None for f in seq):
                    return None, "no_image_at_stamp"
                frames[cam] = np.stack(seq)
        tcp = np.stack([per_arm(p) for p in poses]).astype(np.float32)
        contact = np.stack([per_arm(cs) for cs in contacts]).astype(np.float32)
        return (frames, tcp, contact), None

    def plan(self, now: float, t_obs: float, history: ArmHistory, images: ImageHistory | None,
             episode_time: float | None = None) -> tuple[np.ndarray | None, str | None]:
        """The cycle started at ``now`` on the observation of ``t_obs``: (chunk, None), or
        (None, why the cycle was skipped). A chunk makes the next cycle due a period after ``now``."""
        if min(self.window.obs_times(t_obs)[0], self.window.contact_times(t_obs)[0]) < self.not_before - 1e-9:
            return None, "before_episode_start"
        obs, why = self.observation(t_obs, history, images)
        if obs is None:
            return None, why
        frames, tcp, contact = obs
        kw = {"num_inference_steps": self.num_inference_steps}
        if getattr(self.policy, "wants_episode_time", False):
            kw["episode_time"] = episode_time
        t0 = time.perf_counter()
        start_pose = tcp[-1].astype(np.float64)
        guide = self._guide(now, t_obs, start_pose, history)
        if guide is not None:
            kw["guide"] = guide
        chunk = self.policy.predict(frames, tcp, contact, **kw)
        self.latency_s = time.perf_counter() - t0
        self.observe_latency(self.latency_s if self.modelled_latency_s is None else self.modelled_latency_s)
        if not np.isfinite(chunk).all():
            return None, "nonfinite_chunk"
        self.guided += guide is not None
        self.issued = Issued(self.kind, np.asarray(chunk, np.float32), float(t_obs), start_pose)
        # due a period after this cycle, or earlier: so that the next chunk lands (at the
        # latency's 90th percentile, polled at POLL_HZ) a row before this one runs out
        deadline = t_obs + (self.horizon - 1) * self.step_dt - self.row_dt - self.latency_estimate() - 1.0 / self.POLL_HZ
        # ... but never while this cycle's chunk is still being computed (one inference at a
        # time, as in the node; a modelled latency keeps the evaluator's planner busy as long,
        # less its transport part)
        self.next_due = max(min(now + self.period, deadline), now + max(self.latencies[-1] - self.transport_s, 0.0))
        return chunk, None

    def _guide(self, now: float, t_obs: float, start_pose: np.ndarray, history: ArmHistory):
        """Inpainting guide from the last issued chunk (None: blend, or nothing to agree with)."""
        if self.handover != "inpaint" or self.issued is None or self.issued.kind != self.kind:
            return None
        latest = None
        contact_before = None
        if self.kind == "latent":
            def contact_before(stamp):
                parts = history.before(self.contact_kind, stamp)
                return None if parts is None else per_arm(parts)
            latest = contact_before(t_obs)
        arrival = now + self.latency_estimate()
        return build_guide(self.issued, t_obs, start_pose, arrival, self.step_dt, self.horizon,
                           self.compression, self.decoder, contact_before, latest, self.soft_steps())

    def soft_steps(self) -> int | None:
        """Steps past the frozen ones the inpainting pull reaches: ``inpaint_soft_s`` at
        ``rate_hz``, stretched by the factor the cycle is stretched when the inference is longer
        than a period (the slow side busy, the next chunk that much later). Each chunk then
        keeps close to the previous one over the same share of the time it executes: with
        +0.3 s of inference time the fixed 0.16 s wiped 55/60 where the stretched pull wiped
        57-58/60, and at the asked rate a wider pull costs success (0.6 s: 52/60 against 60/60;
        docs/results.md)."""
        if self.soft_s is None:
            return None
        cycle = max(self.period, self.latency_estimate() - self.transport_s)
        return int(round(self.soft_s * cycle / self.period / self.step_dt))

    def inpaint_pull_s(self) -> float | None:
        """How far past the frozen steps the next chunk will be pulled (s); None: no pull
        (blend) or the whole overlap."""
        steps = self.soft_steps() if self.handover == "inpaint" else None
        return None if steps is None else steps * self.step_dt


def load_slow_planner(export_dir: str, arms: list, rate_hz: float, *, image_tolerance: float = 0.05,
                      num_inference_steps: int | None = None, threads: int = 1, seed: int = 0,
                      handover: str = "blend", inpaint_soft_s: float = 0.16, warn=None) -> tuple[SlowPlanner, float]:
    """The slow policy of ``export_dir`` loaded, warmed up and checked for ``arms``, in a
    :class:`SlowPlanner` (with the decoder an 'inpaint' handover of a latent policy needs);
    and the warm-up's seconds. ``warn(text)`` hears of an export too old to inpaint exactly."""
    from policy.rdp.runtime import SlowPolicyRuntime  # noqa: PLC0415 (onnxruntime)

    policy = SlowPolicyRuntime(export_dir, threads=threads, seed=seed)
    warm_s = policy.warmup()
    if policy.num_arms != len(arms):
        raise ValueError(f"arms: the model drives {policy.num_arms} arm(s), got {len(arms)} ({arms})")
    decoder = None
    if handover == "inpaint" and policy.meta["model_type"] == "rdp_ldp":
        from policy.rdp.runtime import DecoderRuntime  # noqa: PLC0415
        decoder = DecoderRuntime(export_dir)
        if not decoder.has_encoder and warn is not None:
            warn(f"{export_dir} has no action_encoder.onnx (an older export): "
                 "inpainting fits the frozen rows from the previous latent, shifted")
    planner = SlowPlanner(policy, rate_hz, image_tolerance, num_inference_steps, handover=handover, decoder=decoder,
                          inpaint_soft_s=inpaint_soft_s)
    return planner, warm_s


#: seconds without a chunk, while active, after which rdp_slow warns and says why
STARVED_S = 3.0


class SlowCycle:
    """rdp_slow's bookkeeping around a :class:`SlowPlanner`: whether an observation is worth a
    cycle (all inputs in, fresh, newer than the last one planned from), what was skipped and
    why, the latency and age of the chunks published, and its diagnostics. Kept across
    reconfigurations (the planner comes with each call)."""

    def __init__(self, max_obs_age: float, window: int = 200):
        self.max_obs_age = max_obs_age
        self.latency_ms: deque[float] = deque(maxlen=window)
        self.obs_age_ms: deque[float] = deque(maxlen=window)
        self.published = 0
        self.nonfinite_streak = 0
        self.skipped: dict[str, int] = {}
        self.last_obs = -np.inf
        self._since_chunk = (np.inf, {})     # (time of the last chunk or activation, skips then)

    def skip(self, why: str) -> None:
        self.skipped[why] = self.skipped.get(why, 0) + 1

    def activate(self, now: float) -> None:
        """Planning starts at ``now``: no observation made before it goes into a chunk."""
        self.last_obs = max(self.last_obs, now)
        self._since_chunk = (now, dict(self.skipped))

    def plan(self, now: float, snap: dict[str, ArmSnapshot], planner: SlowPlanner, history: ArmHistory,
             images: ImageHistory | None) -> tuple[float, np.ndarray | None, str | None]:
        """One due cycle: (t_obs, chunk, None), or (t_obs, None, why) with the skip counted; a
        "nonfinite_chunk" (a broken model) also counts in :attr:`nonfinite_streak` until a good
        chunk comes."""
        if any(not s.complete for s in snap.values()):
            self.skip("waiting_for_inputs")
            return float("nan"), None, "waiting_for_inputs"
        t_obs = min(s.pose_stamp for s in snap.values())
        why = None
        if now - t_obs > self.max_obs_age:
            why = "stale_observation"
        elif t_obs <= self.last_obs:
            why = "no_new_observation"   # (or one made before the activation)
        if why:
            self.skip(why)
            return t_obs, None, why
        chunk, why = planner.plan(now, t_obs, history, images)
        if why:
            self.skip(why)
            if why == "nonfinite_chunk":
                self.nonfinite_streak += 1
            return t_obs, None, why
        self.latency_ms.append(planner.latency_s * 1e3)
        self.nonfinite_streak = 0
        return t_obs, chunk, None

    def published_chunk(self, t_obs: float, now: float) -> None:
        """The chunk planned from ``t_obs`` went out at ``now``."""
        self.obs_age_ms.append((now - t_obs) * 1e3)
        self.last_obs = t_obs
        self._since_chunk = (now, dict(self.skipped))
        self.published += 1

    def diagnostics(self, now: float, active: bool, planner: SlowPlanner, handover: str, rate_hz: float,
                    failure: BaseException | None = None) -> tuple[dict, str, str, str | None]:
        """(values, level, message, starved): ``starved`` says, when planning yields no chunk
        for :data:`STARVED_S`, why (the skips since the last chunk), for the log."""
        lat = np.array(self.latency_ms) if self.latency_ms else np.array([np.nan])
        age = np.array(self.obs_age_ms) if self.obs_age_ms else np.array([np.nan])
        values = {"rate_hz": rate_hz, "chunks_published": self.published,
                  "inference_ms_p50": float(np.percentile(lat, 50)), "inference_ms_p99": float(np.percentile(lat, 99)),
                  "chunk_age_at_publish_ms_p50": float(np.percentile(age, 50)),
                  "chunk_age_at_publish_ms_p99": float(np.percentile(age, 99)),
                  "handover": handover, "chunks_inpainted": planner.guided,
                  "latency_estimate_ms": planner.latency_estimate() * 1e3, "active": active}
        pull = planner.inpaint_pull_s()
        if pull is not None:
            values["inpaint_pull_ms"] = pull * 1e3
        values.update({f"skipped/{k}": v for k, v in self.skipped.items()})
        level, message = ("ok", "") if active else ("warn", "inactive: not planning")
        starved = None
        quiet = now - self._since_chunk[0]
        if active and quiet > STARVED_S:
            # Planning but nothing comes out: say why, where an operator looks (log, /diagnostics).
            since = {k: v - self._since_chunk[1].get(k, 0) for k, v in self.skipped.items()}
            why = ", ".join(f"{k} {v}" for k, v in sorted(since.items(), key=lambda kv: -kv[1]) if v) or "no cycle due"
            level, message = "warn", f"no chunk for {quiet:.0f} s (skipped: {why})"
            starved = message
        if self.nonfinite_streak:
            level, message = "error", f"model output non-finite ({self.nonfinite_streak} chunks in a row dropped)"
        if failure is not None:
            level, message = "error", "planning loop failed"
            values["failure"] = repr(failure)
        return values, level, message, starved


# ------------------------------------------------------------------------------ fast side


def sync_estop(filters: dict, estop: bool | None, snap: dict[str, ArmSnapshot]) -> None:
    """Apply the latest e-stop value: engage is latched; a False releases and the filters
    restart from where each arm is."""
    for arm, sf in filters.items():
        if estop and not sf.estopped:
            sf.set_estop(True)
        elif estop is False and sf.estopped:
            sf.set_estop(False, snap[arm].tcp_pos, snap[arm].tcp_quat)


def filter_command(sf, now: float, s: ArmSnapshot, cmd_pos, cmd_quat, cmd_stamp: float | None):
    """One safety-filter tick for one arm from its snapshot: the wrench is rotated from the
    tool frame into the world frame of the command. Returns (pos, quat)."""
    force = s.wrench[:3]
    if np.isfinite(s.wrench).all() and np.isfinite(s.tcp_quat).all():
        force = quat_to_matrix_one(s.tcp_quat) @ force
    stamp = s.wrench_stamp if np.isfinite(s.wrench_stamp) else None
    return sf.filter(now, cmd_pos, cmd_quat, cmd_stamp, s.tcp_pos, s.tcp_quat, force, stamp)


@dataclass
class TickResult:
    commands: dict            # {arm: (pos (3,), quat (4,))} after the safety filter
    produced: bool            # the executor produced a target (False: the filter held)
    contact_stamp: float
    decode_s: float | None    # wall time of the executor's tick
    rejected: str | None      # why a submitted chunk was rejected
    executor_s: float = 0.0   # wall time from the tick's start to the safety filters (contact, chunk, decode)
    safety_s: float = 0.0     # wall time of the safety filters


class Splicer:
    """Refits each arriving latent chunk against the executing one before the fast loop takes
    it over (:func:`policy.rdp.handover.splice_latent`), so the handover has no seam even when
    the contact changed while the chunk was computed.

    Without ``export_dir`` (the synchronous evaluator): :meth:`run` splices in the caller.
    With it (rdp_fast): :meth:`request` hands the job to a helper thread and returns at once;
    the fit itself runs in a child process at normal scheduling that loads the export's
    decoder (a fit is ~500 small decoder calls, 10-50 ms: in the fast loop's process its Python
    would hold the GIL the control thread needs, and the 200 Hz loop's period error p99 went
    from 1.1 to 4.0 ms). The control thread keeps executing the old chunk and collects the
    spliced one with :meth:`take` on a later tick; the fit covers the steps from the request to
    the expected take. A request made before the last :meth:`forget` (an episode start, a
    clock jump) is dropped when it finishes. :meth:`close` stops the child."""

    def __init__(self, decoder, step_dt: float, horizon: int, export_dir: str | None = None):
        self.decoder, self.step_dt, self.horizon = decoder, float(step_dt), int(horizon)
        self.times: deque[float] = deque(maxlen=256)   # seconds per splice (the fit alone)
        self.spliced = 0
        self.unspliced = 0       # the executing chunk did not reach the new one's handover
        self.failed = 0          # the fit raised: the chunk went over as it came (last_error says why)
        self.last_error = ""
        self.threaded = export_dir is not None
        self._generation = 0
        self._job = self._result = None
        self._cond = threading.Condition()
        self._thread = self._proc = self._conn = None
        if self.threaded:
            import multiprocessing  # noqa: PLC0415

            ctx = multiprocessing.get_context("spawn")    # a fresh interpreter: no locks held by copied threads
            self._conn, child = ctx.Pipe()
            self._proc = ctx.Process(target=_splice_process, args=(child, str(export_dir), self.step_dt, self.horizon),
                                     name="rdp-splice", daemon=True)
            self._proc.start()
            child.close()
            self._thread = threading.Thread(target=self._work, name="splice", daemon=True)
            self._thread.start()

    def expected_s(self) -> float:
        """How long a splice is expected to take: the 90th percentile of the recent ones (20 ms
        before any)."""
        return float(np.percentile(self.times, 90)) if self.times else 0.02

    def run(self, new: Chunk, old: Chunk, t: float, history: StampedBuffer, latest,
            t_from: float | None = None) -> tuple[Chunk, bool]:
        """(``new`` spliced onto ``old`` for a handover at ``t`` (or from ``t_from`` to ``t``;
        ``history``: the contact readings; ``latest``: the newest), True), or (``new`` itself,
        False) when ``old`` does not reach it."""
        t0 = time.perf_counter()
        got = splice_latent(self.decoder, new, old, t, self.step_dt, self.horizon, history.before, latest,
                            t_from=t_from)
        return self._done(new, None if got is None else got[0], time.perf_counter() - t0)

    def _done(self, new: Chunk, latent, seconds: float) -> tuple[Chunk, bool]:
        self.times.append(seconds)
        if latent is None:
            self.unspliced += 1
            return new, False
        self.spliced += 1
        return Chunk(new.kind, latent, new.obs_stamp, new.start_pose), True

    def request(self, new: Chunk, old: Chunk, t: float, history: StampedBuffer, latest) -> None:
        """Splice off the caller's thread; a pending job not yet started is replaced. Takes
        from ``history`` only the readings the fit can need (from just before the old chunk's
        observation), copied in C: the caller's loop does not pay for the rest."""
        readings = history.since(old.obs_stamp - 2 * self.step_dt)
        with self._cond:
            self._job = (self._generation, new, old, t, readings, latest)
            self._cond.notify()

    def take(self) -> tuple[Chunk, bool] | None:
        """(The chunk, whether it was spliced), once (None while none is ready)."""
        if self._result is None:
            return None
        with self._cond:
            res, self._result = self._result, None
        return res

    def forget(self) -> None:
        with self._cond:
            self._generation += 1
            self._job = self._result = None

    def close(self) -> None:
        if self._thread is not None:
            with self._cond:
                self._job = "stop"
                self._cond.notify()
            self._thread.join(2.0)
            self._thread = None
        if self._proc is not None:
            self._conn.close()            # the child sees the pipe end and exits
            self._proc.join(2.0)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join(1.0)
            self._proc = None

    def _work(self) -> None:
        while True:
            with self._cond:
                while self._job is None:
                    self._cond.wait()
                job, self._job = self._job, None
            if job == "stop":
                return
            # This thread keeps the priority the control loop gave the process's other threads
            # (raise_other_threads): it holds the GIL while it pickles a job, and an ordinary
            # thread preempted there would stall the control thread for a time slice. Its own
            # work is small; the fit is in the child.
            gen, new, old, t, (stamps, values), latest = job
            # One array, not a list of per-reading ones: pickling is a single C call that holds
            # the GIL throughout, ~5 us per array (3 ms for the 600 wrench readings at 1 kHz,
            # which stalled the control thread 8 times a second); a stacked copy pickles in ~0.1 ms.
            stamps, values = np.asarray(stamps, dtype=float), (np.stack(values) if values else np.empty((0, 0)))
            try:   # the handover comes when the splice is done: from t to ~t + expected
                self._conn.send((new, old, t + 1.5 * self.expected_s(), t, stamps, values, latest))
                latent, seconds, error = self._conn.recv()
            except (EOFError, OSError, BrokenPipeError) as exc:
                latent, seconds, error = None, 0.0, f"splice process gone: {exc!r}"
            if error:
                self.failed += 1
                self.last_error = error
                out = new, False
            else:
                out = self._done(new, latent, seconds)
            with self._cond:
                if gen == self._generation:
                    self._result = out


def _splice_process(conn, export_dir: str, step_dt: float, horizon: int) -> None:
    """The child of a threaded :class:`Splicer`: fits until its pipe closes."""
    # a Ctrl-C reaches the node's whole process group: the parent ends this child by closing
    # the pipe, and the child must not print a KeyboardInterrupt traceback into the node's log
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    leave_realtime()   # a parent thread raised to SCHED_FIFO must not pass it on
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from policy.rdp.runtime import DecoderRuntime  # noqa: PLC0415 (onnxruntime)

    decoder = DecoderRuntime(export_dir, threads=1)
    while True:
        try:
            new, old, t, t_from, stamps, values, latest = conn.recv()
        except (EOFError, OSError):
            return
        history = StampedBuffer.of(stamps, values)
        t0 = time.perf_counter()
        try:
            got = splice_latent(decoder, new, old, t, step_dt, horizon, history.before, latest, t_from=t_from)
            reply = (None if got is None else got[0], time.perf_counter() - t0, "")
        except Exception as exc:  # noqa: BLE001 - the chunk goes over unspliced, and the reason is kept
            reply = (None, time.perf_counter() - t0, f"{type(exc).__name__}: {exc}")
        try:
            conn.send(reply)
        except (EOFError, OSError):
            return


class FastController:
    """One tick of the fast loop: ``executor`` (a :class:`~policy.reactive.ReactiveExecutor`),
    each arm's :class:`~policy.force_loop.ForceLoop` when ``force`` turns it on, then one
    :class:`~policy.safety.SafetyFilter` per arm, fed by arm snapshots. ``splice``: refit
    each arriving latent chunk against the executing one (:class:`Splicer`; with
    ``splice_export``, the export folder, off the control thread in a child process, for a
    real-time loop)."""

    def __init__(self, executor, filters: dict, contact_kind: str, contact_dim: int,
                 chunk_pose_tolerance: float = 0.01, force: ForceLoopConfig | None = None,
                 splice: bool = False, splice_export: str | None = None):
        self.executor, self.filters = executor, filters
        self.splicer = (Splicer(executor.decoder, executor.step_dt, executor.horizon, splice_export)
                        if splice and executor.decoder is not None else None)
        self.contact_kind, self.contact_dim = contact_kind, contact_dim
        self.chunk_pose_tolerance = chunk_pose_tolerance
        self.force_loops = {arm: ForceLoop(force) for arm in filters} if force is not None and force.enabled else {}
        self.markers = {arm: MarkerFiller() for arm in filters}
        self._last_now: float | None = None
        self.clock_jumps = 0

    def close(self) -> None:
        """Stop what runs beside the ticks (the splice's child process)."""
        if self.splicer is not None:
            self.splicer.close()

    def clock_jumped(self, now: float) -> bool:
        """Whether the clock went backwards or leapt (> 0.5 s) since the last call: every
        chunk's alignment is then void, so they are dropped (the executor is reset) and the
        safety filters hold, no target coming, until a new chunk arrives."""
        last, self._last_now = self._last_now, now
        if last is not None and not (0.0 <= now - last <= 0.5):
            self.clock_jumps += 1
            self.executor.reset()
            if self.splicer is not None:
                self.splicer.forget()
            return True
        return False

    def restart(self, snap: dict[str, ArmSnapshot], not_before: float = -np.inf) -> None:
        """A new episode (or a clock jump): forget every chunk, restart the filters from
        where the arms are. ``not_before``: the episode's start stamp (chunks planned before it
        are refused, see :meth:`policy.reactive.ChunkExecutor.reset`)."""
        self.executor.reset(not_before)
        if self.splicer is not None:
            self.splicer.forget()
        for loop in self.force_loops.values():
            loop.reset()
        for arm, sf in self.filters.items():
            sf.reset(snap[arm].tcp_pos, snap[arm].tcp_quat)
            self.markers[arm].reset()

    def contact(self, snap: dict[str, ArmSnapshot]) -> tuple[np.ndarray, float]:
        """The model's contact input from the arms' snapshots and its stamp; a tactile field
        with lost markers is filled (a field :class:`MarkerFiller` refuses is all NaN: held)."""
        if self.contact_kind == "tactile":
            parts = []
            for arm, s in snap.items():
                f = self.markers[arm].fill(s.tactile_stamp, s.tactile) if s.tactile.size else None
                parts.append(np.asarray(f if f is not None else np.full(s.tactile.shape, np.nan)).reshape(-1))
            stamp = min(s.tactile_stamp for s in snap.values())
        else:
            parts = [s.wrench for s in snap.values()]
            stamp = min(s.wrench_stamp for s in snap.values())
        # a new array each tick: the executor keeps it in its contact history
        return contact_vector(parts), stamp

    def tick(self, now: float, snap: dict[str, ArmSnapshot], pending=None, estop: bool | None = None,
             history: ArmHistory | None = None) -> TickResult:
        """``pending``: a new chunk (obs_stamp, kind, data) or None; ``history`` gives its
        start pose by its stamp."""
        t_start = time.perf_counter()
        sync_estop(self.filters, estop, snap)
        contact, contact_stamp = self.contact(snap)
        contact_ok = (np.isfinite(contact_stamp) and contact.shape[0] == self.contact_dim
                      and np.isfinite(contact).all())
        if contact_ok:
            self.executor.add_contact(contact_stamp, contact)
        rejected = None
        splicer = self.splicer
        if splicer is not None and splicer.threaded:
            ready = splicer.take()
            if ready is not None:    # a spliced chunk meets the old one: taken over without a blend
                rejected = self.executor.submit(ready[0], now, blend=not ready[1])
        if pending is not None:
            stamp, kind, data = pending
            poses = history.at("pose", stamp, self.chunk_pose_tolerance) if history is not None else None
            if poses is None:
                rejected = self.executor.reject("no_pose_at_stamp")
            else:
                chunk, spliced = Chunk(kind, data, stamp, np.concatenate(poses)), False
                current = self.executor.current
                if splicer is not None and kind == "latent" and current is not None and contact_ok \
                        and stamp > current.chunk.obs_stamp:
                    if splicer.threaded:    # submitted from a later tick, when spliced
                        splicer.request(chunk, current.chunk, now, self.executor.history, contact)
                        chunk = None
                    else:
                        chunk, spliced = splicer.run(chunk, current.chunk, now, self.executor.history, contact)
                if chunk is not None:
                    rejected = self.executor.submit(chunk, now, blend=not spliced)
        target, decode_s = None, None
        t0 = time.perf_counter()
        if contact_ok:
            target = self.executor.tick(now, contact)
            if target is not None and self.force_loops:
                target = target.copy()       # the executor's own array stays as it decoded it
                for i, (arm, s) in enumerate(snap.items()):
                    target[7 * i:7 * i + 3] += self.force_loops[arm].step(now, s.wrench, s.tcp_quat)
            t1 = time.perf_counter()
            decode_s = t1 - t0
            t0 = t1
        executor_s = t0 - t_start
        commands = {}
        for i, (arm, s) in enumerate(snap.items()):
            cmd_pos = cmd_quat = None
            if target is not None:
                cmd_pos, cmd_quat = target[7 * i:7 * i + 3], target[7 * i + 3:7 * i + 7]
            commands[arm] = filter_command(self.filters[arm], now, s, cmd_pos, cmd_quat,
                                           now if target is not None else None)
        return TickResult(commands, target is not None, contact_stamp, decode_s, rejected,
                          executor_s, time.perf_counter() - t0)


@dataclass
class FastLoopConfig:
    """The fast loop's own settings (rdp_fast's parameters of the same names): the export it
    runs, the executor's, and the control thread's (:class:`hardware.realtime.TickLoop`)."""

    export_dir: str = described("", "folder written by `slowfast export` (decoder_step.onnx + runtime.json)")
    blend_s: float = described(0.1, "handover blend window (s)")
    chunk_pose_tolerance: float = described(0.01, "max |stamp difference| when looking up a chunk's start pose (s)")
    decoder_threads: int = described(1, "onnxruntime intra-op threads for the decoder step")
    rt_priority: int = described(0, "SCHED_FIFO priority of the control thread, 1..98 (0 = normal scheduling; "
                                    "needs CAP_SYS_NICE or an rtprio limit, e.g. a PREEMPT_RT robot PC)")
    cpu: int = described(-1, "core the control thread is pinned to (-1 = none)")
    lock_memory: bool = described(True, "with rt_priority or cpu set: mlockall(MCL_CURRENT|MCL_FUTURE), no page "
                                        "fault in a tick (needs CAP_IPC_LOCK or an unlimited memlock limit)")
    tick_source: str = described("auto", "what starts a tick: 'sensor' (each reading of the contact topic the policy "
                                         "reads), 'clock' (control_hz, freshest reading), 'locked' (the clock, "
                                         "moved onto the sensor's phase: each tick just after a reading arrives), "
                                         "'auto' (sensor while it delivers >= 95 % of control_hz, else clock)")
    tick_deadline: float = described(-1.0, "ticking on the sensor: a reading later than this (s) past when it "
                                           "should arrive is not waited for: the loop ticks with the freshest "
                                           "readings and the late one refreshes the next tick (-1 = wait for every "
                                           "reading: the freshest data; a deadline evens the command's timing and "
                                           "costs a period of staleness on the late ticks)")
    force: ForceLoopConfig = described(ForceLoopConfig(), "the integral force loop under the policy's targets "
                                                          "(policy.force_loop; force.ref 0 = off)")
    splice: bool = described(True, "refit each arriving latent chunk's first rows so that, decoded with the contacts "
                                   "that actually arrived, it continues the executing chunk at the handover "
                                   "(policy.rdp.handover.splice_latent; in a child process, off the control "
                                   "thread)")

    def __post_init__(self):
        if not self.export_dir:
            raise ValueError("export_dir: required (a folder written by `slowfast export`)")
        if self.tick_source not in MODES:
            raise ValueError(f"tick_source: {self.tick_source!r} is not one of {', '.join(MODES)}")
        if not (0 <= self.rt_priority <= 98):
            raise ValueError(f"rt_priority: {self.rt_priority} outside 0..98")
        if self.cpu < -1:
            raise ValueError(f"cpu: {self.cpu} is not a core index (or -1 for none)")


@dataclass
class FastExport:
    """What the fast side needs from a folder written by ``slowfast export``, checked."""

    meta: dict
    contact_kind: str
    model_type: str
    decoder: object | None    # a policy.rdp.runtime.DecoderRuntime; None: open loop (the DP baseline)
    fps: float
    horizon: int
    contact_dim: int


def load_fast_export(export_dir: str, arms: list, decoder_threads: int = 1) -> FastExport:
    """Read and check ``export_dir/runtime.json`` for ``arms`` (in the model's arm order) and
    load its decoder step; a ValueError names what is wrong."""
    meta_path = Path(export_dir) / "runtime.json"
    if not meta_path.is_file():
        raise ValueError(f"export_dir: {export_dir} has no runtime.json (run `slowfast export CKPT --out DIR`)")
    meta = read_json(meta_path)
    shapes = meta.get("shapes", {})
    if int(shapes.get("num_arms", 0)) != len(arms):
        raise ValueError(f"arms: the model drives {shapes.get('num_arms')} arm(s), got {len(arms)} ({arms})")
    kind = contact_kind(meta)
    model_type = meta["model_type"]
    decoder = None
    if "decoder_step" in meta.get("files", {}):
        from policy.rdp.runtime import DecoderRuntime  # noqa: PLC0415 (onnxruntime)
        decoder = DecoderRuntime(export_dir, threads=decoder_threads)
    elif model_type != "dp":
        raise ValueError(f"export_dir: a {model_type!r} export has no decoder_step.onnx")
    fps = float(meta.get("fps") or 0.0)
    if fps <= 0:
        raise ValueError(f"export_dir: runtime.json gives no dataset fps ({meta.get('fps')!r})")
    return FastExport(meta, kind, model_type, decoder, fps, int(meta["horizon"]), int(shapes["contact_raw_dim"]))


class ChunkInbox:
    """What the fast loop's callbacks store for its control thread, under ``lock``: the newest
    chunk not yet taken (``chunk``: (obs_stamp, kind, data)) and the newest e-stop value; and
    how many chunks came (``received``) or were refused as malformed (``malformed``). The
    thread takes ``chunk`` (setting it to None) and reads ``estop`` under the lock itself: no
    call, no allocation in the tick."""

    def __init__(self):
        self.lock = threading.Lock()
        self.chunk = None
        self.estop: bool | None = None
        self.received = 0
        self.malformed = 0

    def put(self, chunk) -> None:
        with self.lock:
            self.chunk = chunk
            self.received += 1

    def set_estop(self, engaged: bool) -> None:
        with self.lock:
            self.estop = engaged


def fast_diagnostics(values: dict, times, controller: FastController, inbox: ChunkInbox,
                     sensor_rejected: int = 0, failure: BaseException | None = None) -> tuple[dict, str]:
    """The fast loop's diagnostics values and level ("ok", "warn": an arm's filter holding,
    "error": the loop failed) from its loop's ``report()`` (``values``, changed in place),
    its phase ``times`` (a :class:`hardware.realtime.PhaseTimes`), the controller, the chunk
    inbox and the count of sensor messages the inputs rejected."""
    c2c = times.percentiles("contact_to_command", scale=1e3)
    dec = times.percentiles("decode", scale=1e6)
    del values["tick_ms/contact_to_command_p50"], values["tick_ms/contact_to_command_p99"]
    arrival = values.pop("tick_ms/arrival_to_tick_p50"), values.pop("tick_ms/arrival_to_tick_p99")
    values["arrival_to_tick_ms_p50"], values["arrival_to_tick_ms_p99"] = arrival
    executor = controller.executor
    values.update({"contact_to_command_ms_p50": c2c[0], "contact_to_command_ms_p99": c2c[1],
                   "tick_us_p50": dec[0], "tick_us_p99": dec[1],   # the executor's decode, as before
                   "step_index": executor.last_step_index, "chunks_received": inbox.received,
                   "chunks_malformed": inbox.malformed, "clock_jumps": controller.clock_jumps,
                   "sensor_messages_rejected": sensor_rejected})
    values.update({f"chunks_rejected/{k}": v for k, v in executor.rejected.items()})
    sp = controller.splicer
    if sp is not None:       # handover splices (Splicer): how many, how long, why not
        ms = np.percentile(np.asarray(sp.times), (50, 99)) * 1e3 if sp.times else (float("nan"),) * 2
        values.update({"splice/spliced": sp.spliced, "splice/unspliced": sp.unspliced, "splice/failed": sp.failed,
                       "splice/ms_p50": float(ms[0]), "splice/ms_p99": float(ms[1])})
        if sp.last_error:
            values["splice/last_error"] = sp.last_error
    if controller.contact_kind == "tactile":    # lost markers filled or fields refused (held)
        for arm, mf in controller.markers.items():
            values.update({f"tactile_markers/{arm}/{k}": v for k, v in mf.counts.items()})
    safety_values, holding = safety_report(controller.filters)
    values.update(safety_values)
    level = "warn" if holding else "ok"
    if failure is not None:
        level = "error"
        values["failure"] = repr(failure)
    return values, level
