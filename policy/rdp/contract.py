"""The policy's I/O contract: what a Reactive Diffusion Policy (or the DP baseline) reads and
writes, defined once. Data generation (:mod:`sim.datagen`), bag conversion
(the teleop app's converter), training samples (:mod:`policy.rdp.dataset`), the export
(runtime.json), both RDP nodes and the evaluator (through :mod:`policy.serving`) and the
CLI's check of a policy against the sim all use it.

Contact vector (the decoder's per-step input, and the slow policy's contact history): the
arms' readings, each flattened row-major, concatenated in the model's arm order
(:func:`slowfast_data.features.per_arm`): ``"wrench"`` A*6 (fx, fy, fz, tx, ty, tz, tool
frame) or ``"tactile"`` A*N*4 (x, y, dx, dy per marker). Its dataset feature is
:data:`CONTACT_FEATURES`\\ [kind]; a frame's features come from the arm states by
:func:`frame_features`.

Observation window (:class:`ObservationWindow`): ``n_obs`` TCP poses (and camera images)
``stride`` frames apart and ``history`` contact readings one frame apart, oldest first, all
ending at the observation frame (the chunk start). In training these are rows of the
episode (clamped to it); at run time, stamps ``t_obs + offset / fps``.

Action: a chunk of ``horizon`` target poses, each relative to the TCP pose at the chunk
start (position in the start TCP frame + 6-D rotation, :data:`ACTION_WIDTH` per arm,
:func:`slowfast_data.geometry.absolute_to_relative`); :func:`relative_chunk` cuts one.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from slowfast_data.features import (MARKER_WIDTH, POSE_KEY, TACTILE_KEY, WRENCH_KEY, WRENCH_WIDTH, per_arm,
                                    pose_vector)
from slowfast_data.geometry import REL_DIM, absolute_to_relative
from slowfast_data.nominal import chunk_source

CONTACT_KINDS = ("wrench", "tactile")
#: the dataset feature each contact kind reads
CONTACT_FEATURES = {"wrench": WRENCH_KEY, "tactile": TACTILE_KEY}
#: values per arm of a relative action (and of the proprioception the model sees)
ACTION_WIDTH = REL_DIM


def contact_kind(meta: Mapping) -> str:
    """The contact kind of an export's runtime.json (``"wrench"`` when it names none)."""
    return "tactile" if meta.get("contact", "wrench") == "tactile" else "wrench"


def contact_width(kind: str, num_arms: int, markers: int) -> int:
    """Length of the raw contact vector of ``num_arms`` arms (``markers`` tactile markers each)."""
    if kind not in CONTACT_KINDS:
        raise ValueError(f"contact: {kind!r} is not one of {', '.join(CONTACT_KINDS)}")
    return num_arms * (WRENCH_WIDTH if kind == "wrench" else markers * MARKER_WIDTH)


def contact_vector(readings: Sequence) -> np.ndarray:
    """One contact vector (float32, a new array) from the arms' readings, in arm order."""
    if len(readings) == 1:       # the fast loop's common case: no concatenation
        return np.array(readings[0], np.float32).reshape(-1)
    return per_arm(readings).astype(np.float32)


def frame_features(states: Mapping, arms: Sequence[str], frames: int | None = None) -> dict[str, np.ndarray]:
    """A dataset frame's observation features from each arm's measured state (anything with
    ``tcp_pos``, ``tcp_quat``, ``wrench``, ``tactile``, e.g. :class:`sim.types.ArmState`);
    ``frames``: the states hold that many frames each (leading axis) -> (frames, dim) features."""
    return {POSE_KEY: per_arm([pose_vector(states[a].tcp_pos, states[a].tcp_quat) for a in arms], frames),
            WRENCH_KEY: per_arm([states[a].wrench for a in arms], frames),
            TACTILE_KEY: per_arm([states[a].tactile for a in arms], frames)}


def window_meta(data) -> dict:
    """What an export records of a :class:`~policy.rdp.config.DataConfig`'s window (its
    runtime.json keys; the runtime reads them back into the serving loop's window)."""
    return {"n_obs_steps": int(data.n_obs_steps), "obs_stride": int(data.obs_stride),
            "contact_history": int(data.contact_history)}


@dataclass(frozen=True)
class ObservationWindow:
    """Which frames an observation holds (see the module doc); ``fps``: the dataset's rate."""

    n_obs: int
    stride: int
    history: int
    fps: float

    @classmethod
    def from_config(cls, data, fps: float) -> "ObservationWindow":
        """From a :class:`~policy.rdp.config.DataConfig` and the dataset's fps."""
        return cls(int(data.n_obs_steps), int(data.obs_stride), int(data.contact_history), float(fps))

    @property
    def step_dt(self) -> float:
        return 1.0 / self.fps

    @property
    def obs_offsets(self) -> np.ndarray:
        """Frame offsets of the poses and images from the observation frame, oldest first."""
        return -self.stride * np.arange(self.n_obs)[::-1]

    @property
    def contact_offsets(self) -> np.ndarray:
        """Frame offsets of the contact history from the observation frame, oldest first."""
        return -np.arange(self.history)[::-1]

    def obs_times(self, t_obs: float) -> list[float]:
        """Stamps of the poses and images of the observation at ``t_obs``, oldest first."""
        return self._times(t_obs, self.obs_offsets)

    def contact_times(self, t_obs: float) -> list[float]:
        """Stamps of the contact history of the observation at ``t_obs``, oldest first."""
        return self._times(t_obs, self.contact_offsets)

    def _times(self, t_obs: float, offsets: np.ndarray) -> list[float]:
        step_dt = self.step_dt
        return [t_obs + int(o) * step_dt for o in offsets]


def episode_rows(i: int, offsets: np.ndarray, start: int, end: int) -> np.ndarray:
    """Rows ``i + offsets`` of an episode occupying rows [start, end): before its start the
    first row repeats, after its end the last."""
    return np.clip(i + offsets, start, end - 1)


def relative_chunk(actions: np.ndarray, poses: np.ndarray, i: int, horizon: int, start: int, end: int) -> np.ndarray:
    """The action chunk at row ``i`` (the training target, un-normalised): the actions of rows
    i .. i+horizon-1 relative to the TCP pose of row i, (horizon, A*9)."""
    return absolute_to_relative(actions[episode_rows(i, np.arange(horizon), start, end)], poses[i])


def plan_chunk(actions: np.ndarray, poses: np.ndarray, frame: int, horizon: int, fps: float,
               nominal: tuple | None = None) -> np.ndarray:
    """The chunk a reacting decoder's latent stands for, at ``frame`` of one episode
    (episode-local ``actions``/``poses``): the recorded chunk, or, where a perturbation the
    chunk's start could not see falls inside it, the same chunk cut from the episode's
    ``nominal`` actions ((times, actions) of :mod:`slowfast_data.nominal`), the plan without
    the demonstrator's reaction. (horizon, A*9), un-normalised."""
    n = len(actions)
    source = chunk_source(*nominal, frame, horizon, fps) if nominal is not None else None
    return relative_chunk(actions if source is None else source[:n], poses, frame, horizon, 0, n)
