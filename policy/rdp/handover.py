"""Chunk handover without a seam: inpaint the next chunk so it agrees with the executing one.

While the slow policy computes a chunk, the fast loop keeps executing the previous one. The
new chunk starts at its own observation (``t_obs``) but reaches the fast loop only after the
inference latency, at ``t_obs + d`` or later: the steps the arm executes until then come from
the previous chunk, whatever the new one says. Real-Time Chunking (Black et al., 2025)
therefore *freezes* those steps of the new chunk to the previous chunk's and inpaints the
rest, with a weight that decays over the remaining overlap, so the handover has no seam and
the new plan continues the old one instead of jumping to another mode.

This module builds that guide for :meth:`policy.rdp.runtime.SlowPolicyRuntime.predict` from
the chunk the slow side issued last (:class:`Issued`):

* action chunks (the DP baseline): the previous chunk's relative actions at the new chunk's
  step times, moved from the previous start frame to the new one;
* latent chunks (RDP): the previous latent decoded with the contact readings of the steps
  already executed (the latest reading for the rest), moved to the new frame the same way,
  and encoded by the tokenizer's encoder (``action_encoder.onnx``): a latent row covers
  ``compression`` control steps, and is frozen when its first step is.

Weights: 1 up to the handover step ``ceil((t_arrival - t_obs) / step_dt)`` (the steps
executed before the chunk arrives, plus the one the executor interpolates towards); then
Real-Time Chunking's exponential schedule ``c (e^c - 1) / (e - 1)`` with ``c`` falling from 1
to 0 over the rest of the overlap; 0 where the previous chunk has no step.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .geometry import absolute_to_relative, relative_to_absolute

HANDOVERS = ("blend", "inpaint")


@dataclass
class Issued:
    """A chunk as the slow side issued it: rows in the chunk's units (un-normalised)."""

    kind: str              # "latent" | "action"
    data: np.ndarray       # (rows, dim)
    obs_stamp: float       # its observation's capture time (s)
    start_pose: np.ndarray  # (A*7) TCP pose(s) at obs_stamp


def rtc_weights(n: int, frozen: int, overlap: int) -> np.ndarray:
    """(n,) weights: 1 for rows < ``frozen``, Real-Time Chunking's exponential decay over
    rows ``frozen .. overlap-1``, 0 from ``overlap`` on."""
    w = np.zeros(n, np.float32)
    frozen, overlap = max(0, min(frozen, n)), max(0, min(overlap, n))
    w[:frozen] = 1.0
    span = overlap - frozen
    for i in range(frozen, overlap):
        c = 1.0 - (i - frozen + 1) / (span + 1)
        w[i] = c * (math.e ** c - 1.0) / (math.e - 1.0)
    return w


def previous_actions(prev: Issued, step_dt: float, horizon: int, decoder=None, contact_before=None,
                     latest_contact=None) -> np.ndarray:
    """The previous chunk as (horizon, A*9) relative actions in its own start frame, one row
    per control step; a latent chunk decoded step by step with ``contact_before(stamp)`` (the
    reading at or before a step's time, None when there is none) or ``latest_contact``."""
    if prev.kind == "action":
        return np.asarray(prev.data, np.float32)
    if decoder is None:
        raise ValueError("inpainting a latent chunk needs the tokenizer decoder")
    state, rows = None, []
    for k in range(horizon):
        c = contact_before(prev.obs_stamp + k * step_dt) if contact_before is not None else None
        c = latest_contact if c is None else c
        a, state = decoder.step(prev.data, k, c, state)
        rows.append(a)
    return np.stack(rows).astype(np.float32)


def action_guide(prev_rel: np.ndarray, prev_obs: float, prev_start, t_obs: float, start_pose,
                 step_dt: float) -> tuple[np.ndarray, int]:
    """The previous chunk's steps at the new chunk's step times ``t_obs + k * step_dt``, relative
    to ``start_pose``: (horizon, A*9) (rows past the previous chunk repeat its last covered step)
    and how many rows it covers."""
    h = len(prev_rel)
    s = (t_obs - prev_obs) / step_dt + np.arange(h)      # fractional index into the previous chunk
    covered = int(np.count_nonzero(s <= h - 1 + 1e-9))
    if covered == 0:
        return np.zeros_like(prev_rel), 0
    s = np.clip(s, 0.0, h - 1)
    k0 = np.floor(s).astype(int)
    k1 = np.minimum(k0 + 1, h - 1)
    f = (s - k0)[:, None]
    rel = (1.0 - f) * prev_rel[k0] + f * prev_rel[k1]      # interpolated as the executor does
    rel[covered:] = rel[covered - 1]
    absolute = relative_to_absolute(rel, np.asarray(prev_start, np.float64))
    return absolute_to_relative(absolute, np.asarray(start_pose, np.float64)), covered


def handover_step(t_obs: float, t_arrival: float, step_dt: float) -> int:
    """Control steps of the new chunk executed from the previous one: the executor starts
    the new chunk at ``(t_arrival - t_obs) / step_dt`` and interpolates towards the next step."""
    return max(0, int(math.ceil((t_arrival - t_obs) / step_dt - 1e-9))) + 1


def build_guide(prev: Issued, t_obs: float, start_pose, t_arrival: float, step_dt: float, horizon: int,
                compression: int = 1, decoder=None, contact_before=None, latest_contact=None):
    """The guide (values, weights) for the chunk observed at ``t_obs`` with start pose
    ``start_pose`` and expected in the fast loop at ``t_arrival``; None when the previous chunk
    does not reach the new one's time (nothing to agree with)."""
    rel = previous_actions(prev, step_dt, horizon, decoder, contact_before, latest_contact)
    new_rel, covered = action_guide(rel, prev.obs_stamp, prev.start_pose, t_obs, start_pose, step_dt)
    if covered == 0:
        return None
    frozen = min(handover_step(t_obs, t_arrival, step_dt), covered)
    if prev.kind == "action":
        return new_rel, rtc_weights(horizon, frozen, covered)
    latent = decoder.encode(new_rel)
    rows = latent.shape[0]
    # a latent row is frozen when its first step is, and in the overlap while all its steps are
    frozen_rows = -(-frozen // compression)
    overlap_rows = covered // compression
    return latent, rtc_weights(rows, min(frozen_rows, rows), max(min(overlap_rows, rows), frozen_rows))
