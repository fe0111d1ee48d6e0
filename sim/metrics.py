"""Per-episode force metrics, pure functions of a logged force trace.

Definitions (``band = (lo, hi)`` in N, trace sampled at ``t``):

* band error ``e(t) = lo - f`` below the band, ``f - hi`` above it, 0 inside;
* ``rms_force_error = sqrt(mean(e^2))`` and ``time_in_band`` (fraction of samples with e = 0)
  over the samples from the first contact on (first sample with ``f >= contact_threshold``);
* ``peak_force = max f`` over the whole trace;
* ``recovery_times``: for each perturbation at ``tp``, 0.0 if the force stays in the band for
  ``window`` s after ``tp``; otherwise the time from ``tp`` until the force is back in the band
  and stays there for ``settle`` s (the first such moment after the first excursion starting
  within the window); ``None`` when it never gets back before the trace ends.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np


def band_error(f, band) -> np.ndarray:
    f = np.asarray(f, float)
    lo, hi = band
    return np.where(f < lo, lo - f, np.where(f > hi, f - hi, 0.0))


def _recovery(t: np.ndarray, inb: np.ndarray, tp: float, settle: float, window: float) -> Optional[float]:
    after = np.nonzero(t >= tp)[0]
    if after.size == 0:
        return None
    in_win = after[t[after] < tp + window]
    out = in_win[~inb[in_win]]
    if out.size == 0:
        return 0.0
    j = out[0]
    n = len(t)
    while j < n:
        if not inb[j]:
            j += 1
            continue
        k = j
        while k < n and inb[k] and t[k] - t[j] < settle:
            k += 1
        if k < n and inb[k]:             # stayed in band for `settle` seconds
            return float(t[j] - tp)
        if k >= n:                        # in band until the trace ends: not long enough to tell
            return float(t[j] - tp) if t[-1] - t[j] >= settle else None
        j = k
    return None


def force_metrics(t, f, band, perturbation_times: Sequence[float] = (), *,
                  contact_threshold: float = 1.0, settle: float = 0.1, window: float = 1.0) -> Dict:
    t = np.asarray(t, float)
    f = np.asarray(f, float)
    lo, hi = float(band[0]), float(band[1])
    res: Dict = {"first_contact_time": None, "rms_force_error": None, "time_in_band": 0.0,
                 "peak_force": float(f.max()) if f.size else 0.0, "recovery_times": []}
    if f.size == 0:
        res["recovery_times"] = [None for _ in perturbation_times]
        return res
    touched = np.nonzero(f >= contact_threshold)[0]
    err = band_error(f, (lo, hi))
    inb = err == 0.0
    if touched.size == 0:
        res["rms_force_error"] = float(np.sqrt(np.mean(err ** 2)))
        res["recovery_times"] = [None for _ in perturbation_times]
        return res
    i0 = touched[0]
    res["first_contact_time"] = float(t[i0])
    res["rms_force_error"] = float(np.sqrt(np.mean(err[i0:] ** 2)))
    res["time_in_band"] = float(np.mean(inb[i0:]))
    res["recovery_times"] = [_recovery(t, inb, float(tp), settle, window) for tp in perturbation_times]
    return res


def count_drops(t, f, threshold: float = 0.5, min_duration: float = 0.02, start_time: Optional[float] = None) -> int:
    """Number of times ``f`` falls below ``threshold`` for at least ``min_duration`` s after ``start_time``."""
    t = np.asarray(t, float)
    f = np.asarray(f, float)
    if start_time is None or f.size == 0:
        return 0
    m = t >= start_time
    count, below_since, counted = 0, None, False
    for ti, fi in zip(t[m], f[m]):
        if fi < threshold:
            if below_since is None:
                below_since, counted = ti, False
            if not counted and ti - below_since >= min_duration:
                count, counted = count + 1, True
        else:
            below_since = None
    return count


def summarize(episodes: List[Dict]) -> Dict:
    """Aggregate per-episode metrics (means over episodes; success rate)."""
    n = len(episodes)
    out: Dict = {"episodes": n}
    if n == 0:
        return out
    out["success_rate"] = float(np.mean([bool(e.get("success")) for e in episodes]))
    out["successes"] = int(sum(bool(e.get("success")) for e in episodes))
    for key in ("rms_force_error", "time_in_band", "peak_force", "slip_events"):
        vals = [e[key] for e in episodes if e.get(key) is not None]
        if vals:
            out[f"mean_{key}"] = float(np.mean(vals))
    rec = [r for e in episodes for r in (e.get("recovery_times") or []) if r is not None]
    miss = sum(1 for e in episodes for r in (e.get("recovery_times") or []) if r is None)
    out["mean_recovery_time"] = float(np.mean(rec)) if rec else None
    out["unrecovered_perturbations"] = int(miss)
    out["tasks"] = sorted({str(e.get("task")) for e in episodes})
    return out
