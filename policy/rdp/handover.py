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
  ``compression`` control steps, and is frozen when its first step is. The frozen rows are
  then fitted through the decoder (:func:`fit_latent_prefix`), so that what the executor
  decodes over the frozen steps is the previous chunk's, not the encoder's approximation.
  An export without the encoder (made before it was exported) starts the fit from the
  previous latent shifted by the rows between the two observations; the rest of its overlap
  is then only that shifted latent (frame change ignored).

Weights: 1 up to the handover step ``ceil((t_arrival - t_obs) / step_dt)`` (the steps
executed before the chunk arrives, plus the one the executor interpolates towards); then
Real-Time Chunking's exponential schedule ``c (e^c - 1) / (e - 1)`` with ``c`` falling from 1
to 0 over the rest of the overlap; 0 where the previous chunk has no step.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from slowfast_data.geometry import absolute_to_relative, relative_to_absolute

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


def step_contacts(t0: float, n: int, step_dt: float, contact_before=None, latest_contact=None) -> np.ndarray:
    """(n, Craw) the contact reading a chunk observed at ``t0`` is decoded with at each step:
    the one recorded at or before the step's time, else (the future) ``latest_contact``."""
    out = []
    for k in range(n):
        c = contact_before(t0 + k * step_dt) if contact_before is not None else None
        out.append(np.asarray(latest_contact if c is None else c, np.float32).reshape(-1))
    return np.stack(out)


def previous_actions(prev: Issued, step_dt: float, horizon: int, decoder=None, contact_before=None,
                     latest_contact=None) -> np.ndarray:
    """The previous chunk as (horizon, A*9) relative actions in its own start frame, one row
    per control step; a latent chunk decoded step by step with :func:`step_contacts`."""
    if prev.kind == "action":
        return np.asarray(prev.data, np.float32)
    if decoder is None:
        raise ValueError("inpainting a latent chunk needs the tokenizer decoder")
    contacts = step_contacts(prev.obs_stamp, horizon, step_dt, contact_before, latest_contact)
    return decoder.decode_chunk(prev.data, contacts).astype(np.float32)


#: Scales of the decoder fit's residual: 1 mm of position, 0.01 of a 6-D rotation entry;
#: and the weight of a latent unit's move away from the encoder's latent (0.1 mm's worth:
#: on held-out wipe chunks the fit's error over 9 frozen steps, 2.5 mm median, was the
#: same at 0.1 and 0.02 and 2.6 mm at 1; the encoder alone leaves 3.4 mm).
FIT_SCALE = (1e-3, 1e-2)
PRIOR_WEIGHT = 0.1


def _fit_scale(action_dim: int) -> np.ndarray:
    """(A*9,) the weight of each action entry in a fit: 1 / FIT_SCALE per position, rotation entry."""
    return np.tile(np.r_[np.full(3, 1.0 / FIT_SCALE[0]), np.full(6, 1.0 / FIT_SCALE[1])], action_dim // 9)


def fit_latent_prefix(decoder, latent: np.ndarray, target: np.ndarray, contacts: np.ndarray, rows: int,
                      iterations: int = 3, step_weights: np.ndarray | None = None, retries: int = 0) -> np.ndarray:
    """Latent rows ``0 .. rows-1`` adjusted so the decoder, fed ``contacts``, gives ``target``
    ((n, A*9) relative actions of the first n steps) as closely as it can: a few damped
    Gauss-Newton steps with a finite-difference Jacobian, every perturbed latent decoded in
    one batch. The encoder alone leaves the tokenizer's reconstruction error (mm) in the
    frozen steps; this takes it out where the decoder can express the target.
    ``step_weights`` (n,): how much each step's residual counts (default: all alike).
    ``retries``: a step that makes it no better is retried this many times with ten times the
    damping each (Levenberg-Marquardt), before the fit stops; 0 stops at once."""
    lat = np.array(latent, np.float32)
    n, dz = len(target), lat.shape[1]
    rows = max(0, min(rows, lat.shape[0]))
    if rows == 0 or n == 0:
        return lat
    w = _fit_scale(target.shape[1])
    sw = np.ones(n) if step_weights is None else np.asarray(step_weights, float).reshape(n)
    p = rows * dz

    start = lat[:rows].reshape(-1).copy()

    def residuals(batch: np.ndarray) -> np.ndarray:     # (B, Ls, Dz) -> (B, n * A*9 + p)
        b = len(batch)
        state, out = decoder.initial_state(b), []
        for k in range(n):
            a, state = decoder.step(batch, k, np.repeat(contacts[k][None], b, 0), state)
            out.append((a - target[k]) * (w * sw[k]))
        # stay near the encoder's latent (where the policy's latents live)
        prior = (batch[:, :rows].reshape(b, -1) - start) * PRIOR_WEIGHT
        return np.concatenate([np.stack(out, 1).reshape(b, -1), prior], 1)

    eps = 1e-3
    r0 = residuals(lat[None])[0]
    for _ in range(iterations):
        batch = np.repeat(lat[None], p + 1, 0)
        for j in range(p):
            batch[j + 1, j // dz, j % dz] += eps
        r = residuals(batch)
        r0, jac = r[0], ((r[1:] - r[0]) / eps).T          # (m, p)
        jtj, g = jac.T @ jac, jac.T @ r0
        lam = 1e-3 * float(np.trace(jtj)) / p + 1e-9
        for _ in range(retries + 1):
            delta = np.linalg.solve(jtj + lam * np.eye(p), -g)
            trial = lat.copy()
            trial[:rows] += delta.reshape(rows, dz).astype(np.float32)
            r_trial = residuals(trial[None])[0]
            if r_trial @ r_trial < r0 @ r0:
                break
            lam *= 10.0
        else:
            break                                         # no better: keep what we have
        lat, r0 = trial, r_trial
    return lat


#: Splicing at the fast loop: how much the steps before the handover count against the steps
#: from it on (they only set the decoder's state: the executor runs them from the old chunk),
#: one fit per weight, the first whose handover steps meet ``SPLICE_TOLERANCE`` (in
#: ``FIT_SCALE`` units: 1 = 1 mm or 0.01 of a rotation entry) kept, else the best; each fit a
#: few Levenberg-Marquardt steps. The fit is not convex: on the shipped wipe policy at +0.3 s
#: (20 perturbed seeds, 840 handovers) a weight of 0.03 alone left one seam of 3.7 mm and 0.1
#: alone one of 2.0 mm where another weight met the millimetre; 4 iterations left 1.3 mm on one
#: handover at 8 chunks/s, 8 met it (docs/results.md).
SPLICE_EARLY_WEIGHTS = (0.03, 0.3, 1.0)
SPLICE_TOLERANCE = 0.5
SPLICE_ITERATIONS = 8
SPLICE_RETRIES = 3


def _handover_error(decoder, latent: np.ndarray, target: np.ndarray, contacts: np.ndarray, k_h: int) -> float:
    """The largest scaled residual (``FIT_SCALE`` units) of steps ``k_h ..`` decoded from ``latent``."""
    got = decoder.decode_chunk(latent, contacts)
    d = ((got - target) * _fit_scale(target.shape[1]))[k_h:].reshape(len(target) - k_h, -1, 9)
    return float(max(np.linalg.norm(d[..., :3], axis=-1).max(), np.abs(d[..., 3:]).max()))


def splice_latent(decoder, new, old, t: float, step_dt: float, horizon: int, contact_before, latest_contact,
                  ahead: int = 2, t_from: float | None = None) -> tuple[np.ndarray, int] | None:
    """The arriving latent chunk ``new`` with its first rows refitted so that, decoded with
    the contact readings that actually arrived (``contact_before(stamp)``: the newest reading
    at or before it, None when there is none; ``latest_contact`` for the steps still to
    come), it commands what the executing chunk ``old`` commands, decoded the same way, at
    the step the handover happens at ``t`` and the ``ahead - 1`` after it (from the step at
    ``t_from`` on, when the handover may come earlier than ``t``). Returns (latent, steps
    fitted), or None when ``old`` does not reach ``t``.

    Why: the slow side inpaints the new chunk against the old one decoded with the contact it
    last saw, for the steps that execute during its inference; the decoder is recurrent and
    conditioned on contact, so when the contact changes meanwhile (a surface step) the two
    chunks answer it differently and the handover jumps (48 mm once at +0.3 s). Refitting at
    arrival, with the contacts the executor will decode with, removes that part.
    ``new``/``old``: anything with ``data``, ``obs_stamp`` and ``start_pose`` (a
    :class:`policy.reactive.Chunk`)."""
    k_h = int(math.floor((t - new.obs_stamp) / step_dt + 1e-9))
    if k_h < 0:
        return None

    def contacts_of(t0: float, steps: int) -> np.ndarray:
        """As the executor decodes a chunk observed at ``t0`` at ``t``: the steps before the
        current one with the reading at each step's time (the committed decoder state), the
        current one and the rest with the latest reading."""
        current = t0 + math.floor((t - t0) / step_dt + 1e-9) * step_dt
        return step_contacts(t0, steps, step_dt, lambda s: contact_before(s) if s < current - 1e-9 else None,
                             latest_contact)

    old_rel = decoder.decode_chunk(np.asarray(old.data, np.float32), contacts_of(old.obs_stamp, horizon))
    new_rel, covered = action_guide(old_rel.astype(np.float32), old.obs_stamp, old.start_pose, new.obs_stamp,
                                    new.start_pose, step_dt)
    n = min(k_h + max(int(ahead), 1), covered, horizon)
    if n <= k_h:
        return None
    contacts = contacts_of(new.obs_stamp, n)
    rows = -(-n // int(decoder.compression))
    k_from = k_h if t_from is None else min(k_h, max(0, int(math.floor((t_from - new.obs_stamp) / step_dt + 1e-9))))
    best, best_err = None, math.inf
    for early in SPLICE_EARLY_WEIGHTS:
        weights = np.where(np.arange(n) < k_from, early, 1.0)
        latent = fit_latent_prefix(decoder, new.data, new_rel[:n], contacts, rows, SPLICE_ITERATIONS, weights,
                                   retries=SPLICE_RETRIES)
        err = _handover_error(decoder, latent, new_rel[:n], contacts, k_from)
        if err < best_err:
            best, best_err = latent, err
        if err <= SPLICE_TOLERANCE:
            break
    return best, n


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
                compression: int = 1, decoder=None, contact_before=None, latest_contact=None,
                soft_steps: int | None = None):
    """The guide (values, weights) for the chunk observed at ``t_obs`` with start pose
    ``start_pose`` and expected in the fast loop at ``t_arrival``; None when the previous chunk
    does not reach the new one's time (nothing to agree with). ``soft_steps``: how many steps
    past the frozen ones the decaying pull reaches (None: the whole overlap, as Real-Time
    Chunking does; a short one leaves the rest of the chunk free to re-plan)."""
    rel = previous_actions(prev, step_dt, horizon, decoder, contact_before, latest_contact)
    new_rel, covered = action_guide(rel, prev.obs_stamp, prev.start_pose, t_obs, start_pose, step_dt)
    if covered == 0:
        return None
    frozen = min(handover_step(t_obs, t_arrival, step_dt), covered)
    if soft_steps is not None:
        covered = min(covered, frozen + max(int(soft_steps), 0))
    if prev.kind == "action":
        return new_rel, rtc_weights(horizon, frozen, covered)
    if getattr(decoder, "has_encoder", True):
        latent = decoder.encode(new_rel)
    else:   # an export without the encoder: the previous latent, shifted to the new start
        shift = int(round((t_obs - prev.obs_stamp) / (step_dt * compression)))
        n = len(prev.data)
        latent = np.asarray(prev.data, np.float32)[np.minimum(np.arange(n) + max(shift, 0), n - 1)]
    rows = latent.shape[0]
    # a latent row is frozen when its first step is, and in the overlap while all its steps are
    frozen_rows = -(-frozen // compression)
    # the frozen steps as the executor will decode them (the contacts recorded from t_obs on)
    contacts = step_contacts(t_obs, frozen, step_dt, contact_before, latest_contact)
    latent = fit_latent_prefix(decoder, latent, new_rel[:frozen], contacts, frozen_rows)
    overlap_rows = -(-covered // compression) if soft_steps is not None else covered // compression
    return latent, rtc_weights(rows, min(frozen_rows, rows), max(min(overlap_rows, rows), frozen_rows))
