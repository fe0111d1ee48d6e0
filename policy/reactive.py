"""The reactive executor: chunks from the slow policy in, one target pose per control tick out.

This is the algorithm of the fast loop, without ROS. Every tick it

1. finds the chunk step that corresponds to *now* by the chunk's observation stamp
   (``s = (now - obs_stamp) / step_dt``; steps in the past are never executed);
2. for a latent chunk (Reactive Diffusion Policy) runs the tokenizer decoder with the
   freshest contact reading; for an action chunk (Diffusion Policy baseline) reads the
   chunk open loop;
3. interpolates between step ``k`` and ``k+1`` at the fractional position, so the command is
   smooth at any control rate (the decoder was trained at the dataset rate, ``step_dt``);
4. during a handover blends from the previous chunk's command to the new one over
   ``blend_s`` (position linearly, rotation by slerp), so the command does not jump; a
   chunk spliced to meet the previous one (``policy.serving.Splicer``) takes over at once.

Decoder state: the GRU state is committed once per chunk step (at the dataset rate), and
each tick evaluates steps ``k`` and ``k+1`` from the committed state with the freshest
contact. That is two O(1) decoder calls per tick, whatever the step index; the published
system re-runs the decoder over the whole prefix at every tick. A chunk entered late (its
observation is already ``k0`` steps old when it arrives) is rolled forward over the missed
steps once, with the contact readings recorded at those times.
"""
from __future__ import annotations

import bisect
from collections import deque
from itertools import islice
from dataclasses import dataclass

import numpy as np

from slowfast_data.geometry import quat_angle, quat_to_matrix_one, rel_to_abs_one



@dataclass
class Chunk:
    """A chunk from the slow policy.

    kind        "latent" (rows: latent steps, each covering ``compression`` control steps)
                or "action" (rows: relative actions (A*9) per control step)
    data        (rows, dim) float32
    obs_stamp   capture time of the observation the chunk was computed from (s)
    start_pose  (A*7) TCP pose(s) at ``obs_stamp``, world frame, quaternion x, y, z, w
    """

    kind: str
    data: np.ndarray
    obs_stamp: float
    start_pose: np.ndarray


def _slerp(q0: np.ndarray, q1: np.ndarray, w: float) -> np.ndarray:
    d = float(np.dot(q0, q1))
    if d < 0.0:
        q1, d = -q1, -d
    if d > 0.9995:
        q = q0 + w * (q1 - q0)
        return q / np.linalg.norm(q)
    th = np.arccos(d)
    return (np.sin((1 - w) * th) * q0 + np.sin(w * th) * q1) / np.sin(th)


def blend_poses(a: np.ndarray, b: np.ndarray, w: float) -> np.ndarray:
    """(A*7) poses: position lerp, quaternion slerp, weight w of ``b``."""
    a, b = a.reshape(-1, 7), b.reshape(-1, 7)
    out = np.empty_like(a)
    out[:, :3] = (1 - w) * a[:, :3] + w * b[:, :3]
    for i in range(len(a)):
        out[i, 3:] = _slerp(a[i, 3:], b[i, 3:], w)
    return out.reshape(-1)


class StampedBuffer:
    """The last ``seconds`` of readings by capture stamp, sorted; lookups by stamp. Not locked.

    Used for the contact readings a late chunk is rolled forward with, and (policy.serving)
    for every arm and camera history of the serving loops."""

    def __init__(self, seconds: float = 3.0):
        self.seconds = seconds
        self.t: deque[float] = deque()
        self.v: deque = deque()

    def add(self, stamp: float, value) -> None:
        if self.t and stamp <= self.t[-1]:
            return  # out of order or repeated: keep the buffer sorted
        self.t.append(stamp)
        self.v.append(value)
        while self.t and self.t[-1] - self.t[0] > self.seconds:
            self.t.popleft()
            self.v.popleft()

    def clear(self) -> None:
        self.t.clear()
        self.v.clear()

    def since(self, stamp: float) -> tuple[list, list]:
        """(stamps, values) of the readings from ``stamp`` on, copied (C-speed slices: another
        thread may use them while this one goes on; the values are never changed in place)."""
        i = bisect.bisect_left(self.t, stamp)
        return list(islice(self.t, i, None)), list(islice(self.v, i, None))

    @classmethod
    def of(cls, stamps, values) -> "StampedBuffer":
        """A buffer holding ``stamps`` (sorted) and ``values``, whatever their span."""
        out = cls(seconds=float("inf"))
        out.t, out.v = deque(stamps), deque(values)
        return out

    def at(self, stamp: float, tolerance: float) -> tuple[float, object] | None:
        """The reading nearest to ``stamp`` within ``tolerance`` seconds, else None."""
        if not self.t:
            return None
        i = bisect.bisect_left(self.t, stamp)
        best = min((j for j in (i - 1, i) if 0 <= j < len(self.t)), key=lambda j: abs(self.t[j] - stamp))
        if abs(self.t[best] - stamp) > tolerance:
            return None
        return self.t[best], self.v[best]

    def before(self, stamp: float):
        """The newest reading captured at or before ``stamp`` (the oldest one when none is
        that old; None when empty)."""
        if not self.t:
            return None
        i = bisect.bisect_right(self.t, stamp) - 1
        return self.v[max(i, 0)]


class _BoundStep:
    """The two decoder steps of a tick (``k`` from the committed state, ``k+1`` from the
    state that gives) through onnxruntime I/O bindings to buffers kept between ticks: the
    inputs are copied into them, the outputs written in place, no array is made per call
    (``DecoderRuntime.step`` builds five per call, ~45 us against ~16 us). The results are
    those of ``decoder.step``, bit for bit. Only for a decoder with an onnxruntime
    ``session`` (not the torch runtime): :meth:`for_decoder` says None otherwise."""

    def __init__(self, decoder):
        sess = decoder.session
        f32 = np.float32
        self.compression = int(decoder.compression)
        self.z = np.zeros((2, 1, decoder.latent_dim), f32)     # latent row of step k, k+1
        self.t = np.zeros((2, 1, 1), f32)                       # step index k, k+1
        self.c = np.zeros((1, decoder.contact_dim), f32)       # the tick's contact, both steps
        self.s = np.zeros((1, decoder.hidden), f32)            # committed state in
        self.a = np.zeros((2, 1, decoder.action_dim), f32)     # actions out
        self.s_out = np.zeros((2, 1, decoder.hidden), f32)     # states out (k's feeds k+1)
        self.run = sess.run_with_iobinding
        outs = [o.name for o in sess.get_outputs()]
        self.bindings = []
        for i in range(2):
            b = sess.io_binding()
            for name, arr in (("latent", self.z[i]), ("contact", self.c), ("step", self.t[i]),
                              ("state", self.s if i == 0 else self.s_out[0])):
                b.bind_input(name, "cpu", 0, f32, list(arr.shape), arr.ctypes.data)
            for name, arr in zip(outs, (self.a[i], self.s_out[i])):
                b.bind_output(name, "cpu", 0, f32, list(arr.shape), arr.ctypes.data)
            self.bindings.append(b)

    @classmethod
    def for_decoder(cls, decoder):
        if getattr(decoder, "session", None) is None or not hasattr(decoder.session, "io_binding"):
            return None
        return cls(decoder)

    def steps(self, data: np.ndarray, k: int, contact, state) -> tuple[np.ndarray, np.ndarray]:
        """(rel_k, rel_k1): views of buffers overwritten by the next call."""
        for i in range(2):
            self.z[i, 0] = data[(k + i) // self.compression]
            self.t[i, 0, 0] = k + i
        self.c[0] = contact
        self.s[...] = state
        self.run(self.bindings[0])
        self.run(self.bindings[1])
        return self.a[0, 0], self.a[1, 0]


class _Track:
    """One chunk being executed, with its decoder state."""

    def __init__(self, chunk: Chunk, executor: "ReactiveExecutor"):
        self.chunk, self.ex = chunk, executor
        self.k = -1                # the committed step: state is the state *before* step k+1
        self.state = executor.decoder.initial_state() if chunk.kind == "latent" else None
        start = np.asarray(chunk.start_pose, np.float64).reshape(-1, 7)
        self.frames = [(s[:3].copy(), quat_to_matrix_one(s[3:])) for s in start]

    def position(self, now: float) -> float:
        # The epsilon keeps float round-off (10.0 - 9.9 = 0.0999...) from losing a step.
        return (now - self.chunk.obs_stamp) / self.ex.step_dt + 1e-9

    def _rel(self, k: int, contact, state):
        if self.chunk.kind == "latent":
            return self.ex.decoder.step(self.chunk.data, k, contact, state)
        return self.chunk.data[k], None

    def command(self, now: float, contact, history: StampedBuffer) -> np.ndarray | None:
        """Absolute (A*7) target at ``now``, or None when the chunk has run out."""
        s = self.position(now)
        k = int(np.floor(s))
        if k >= self.ex.horizon - 1 or k < 0:
            return None if k >= self.ex.horizon - 1 else self._start_command()
        if self.chunk.kind == "latent":
            # Commit states up to step k (rolling forward over missed steps with the
            # contact recorded at each step's time).
            while self.k < k - 1:
                j = self.k + 1
                c = history.before(self.chunk.obs_stamp + j * self.ex.step_dt)
                c = contact if c is None else c
                _, self.state = self.ex.decoder.step(self.chunk.data, j, c, self.state)
                self.k = j
            bound = self.ex.__dict__.get("_bound_step", False)
            if bound is False:     # made once per executor, on its first latent tick
                bound = self.ex._bound_step = _BoundStep.for_decoder(self.ex.decoder)
            if bound is not None and np.shape(contact) == (bound.c.shape[1],):
                rel_k, rel_k1 = bound.steps(self.chunk.data, k, contact, self.state)
            else:
                rel_k, st = self._rel(k, contact, self.state)
                rel_k1, _ = self._rel(k + 1, contact, st)
        else:
            rel_k, _ = self._rel(k, None, None)
            rel_k1, _ = self._rel(k + 1, None, None)
        # Interpolate in the chunk's relative frame (position and 6-D rotation, which
        # rel_to_abs_one re-orthonormalises), then convert once.
        frac = s - k
        return rel_to_abs_one((1.0 - frac) * np.asarray(rel_k) + frac * np.asarray(rel_k1), self.frames)

    def _start_command(self) -> np.ndarray:
        return np.asarray(self.chunk.start_pose, np.float64)


class ReactiveExecutor:
    """Chunk alignment, handover blending and the per-tick decode.

    decoder      a DecoderRuntime/TorchDecoderRuntime (latent chunks), or None for a
                 Diffusion Policy baseline (action chunks only)
    horizon      control steps per chunk at the dataset rate
    step_dt      the dataset's control period (s) the models were trained at
    blend_s      handover window (s)
    """

    def __init__(self, decoder, horizon: int, step_dt: float, blend_s: float = 0.1,
                 num_arms: int = 1, latent_shape: tuple[int, int] | None = None):
        if horizon < 2:
            raise ValueError(f"horizon: {horizon} must be >= 2")
        if not (1e-4 <= step_dt <= 1.0):
            raise ValueError(f"step_dt: {step_dt} outside [1e-4, 1] s")
        if not (0.0 <= blend_s <= horizon * step_dt):
            raise ValueError(f"blend_s: {blend_s} outside [0, chunk duration {horizon * step_dt:.3f} s]")
        self.decoder, self.horizon, self.step_dt, self.blend_s = decoder, horizon, step_dt, blend_s
        self.num_arms = num_arms
        self.latent_shape = latent_shape or ((decoder.latent_steps, decoder.latent_dim) if decoder else None)
        self.current: _Track | None = None
        self.previous: _Track | None = None
        self.handover_start = -np.inf
        self.history = StampedBuffer()
        self.rejected: dict[str, int] = {}
        self.last_step_index = -1
        self.handover_jumps: deque[float] = deque(maxlen=4096)   # seam at each handover (m, largest arm)
        self.handover_turns: deque[float] = deque(maxlen=4096)   # its rotation (rad, largest arm)
        self._seam_due = False
        self.not_before = -np.inf

    def reset(self, not_before: float = -np.inf) -> None:
        """Forget every chunk and the contact history (a new episode). ``not_before``: the
        episode's start stamp; a chunk planned from observations before it (the last episode's,
        still in flight when this one started) is refused: re-anchored at the new start pose it
        would replay the old episode's motion, and an inpainted successor would carry it on."""
        self.not_before = float(not_before)
        self.current = self.previous = None
        self.handover_start = -np.inf
        self.history = StampedBuffer()
        self.last_step_index = -1
        self._seam_due = False

    def reject(self, why: str) -> str:
        """Count a chunk rejected for ``why`` (also one refused before it reached :meth:`submit`)."""
        self.rejected[why] = self.rejected.get(why, 0) + 1
        return why

    def submit(self, chunk: Chunk, now: float, blend: bool = True) -> str | None:
        """Accept a new chunk (None) or say why it was rejected (counted). ``blend`` False:
        it takes over at once, no blend window (a chunk spliced to meet the executing one,
        :class:`policy.serving.Splicer`, has no seam to smooth; the blend would only hold
        back its plan and decode both chunks meanwhile). The seam is measured either way."""
        data = np.asarray(chunk.data, np.float32)
        if not np.isfinite(data).all() or not np.isfinite(chunk.start_pose).all():
            return self.reject("nonfinite_chunk")
        if chunk.kind == "latent":
            if self.decoder is None:
                return self.reject("latent_chunk_without_decoder")
            if data.shape != tuple(self.latent_shape):
                return self.reject("wrong_shape")
        elif chunk.kind == "action":
            if data.shape != (self.horizon, 9 * self.num_arms):
                return self.reject("wrong_shape")
        else:
            return self.reject("unknown_kind")
        if np.asarray(chunk.start_pose).shape != (7 * self.num_arms,):
            return self.reject("wrong_start_pose")
        if chunk.obs_stamp < self.not_before:
            return self.reject("before_episode_start")
        if self.current is not None and chunk.obs_stamp <= self.current.chunk.obs_stamp:
            return self.reject("older_than_current")
        if (now - chunk.obs_stamp) / self.step_dt >= self.horizon - 1:
            return self.reject("expired")
        if chunk.obs_stamp > now + 0.05:
            return self.reject("from_the_future")
        chunk = Chunk(chunk.kind, data, float(chunk.obs_stamp), np.asarray(chunk.start_pose, np.float64))
        self.previous, self.current = self.current, _Track(chunk, self)
        self.handover_start = now if blend else -np.inf   # no blend: the window is over at once
        self._seam_due = self.previous is not None
        return None

    def add_contact(self, stamp: float, contact: np.ndarray) -> None:
        self.history.add(stamp, np.asarray(contact, np.float32))

    def tick(self, now: float, contact) -> np.ndarray | None:
        """The (A*7) target for ``now`` from the freshest ``contact``; None means hold
        (no chunk, or the chunk ran out before a new one came)."""
        if self.current is None:
            return None
        new = self.current.command(now, contact, self.history)
        self.last_step_index = int(np.floor(self.current.position(now)))
        if new is None:
            return None
        w = 1.0 if self.blend_s <= 0 else (now - self.handover_start) / self.blend_s
        old = None
        if self.previous is not None and (w < 1.0 or self._seam_due):
            old = self.previous.command(now, contact, self.history)
        if self._seam_due:
            # the seam: how far the new chunk's command is from the old one's at the handover
            self._seam_due = False
            if old is not None:
                a, b = np.asarray(new).reshape(-1, 7), np.asarray(old).reshape(-1, 7)
                d = a[:, :3] - b[:, :3]
                self.handover_jumps.append(float(np.sqrt((d * d).sum(1)).max()))
                self.handover_turns.append(float(quat_angle(a[:, 3:], b[:, 3:]).max()))
        if old is not None and w < 1.0:
            return blend_poses(old, new, max(w, 0.0))
        if w >= 1.0:
            self.previous = None
        return new
