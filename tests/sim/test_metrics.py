"""Force metrics of hand-made traces."""
from __future__ import annotations

import numpy as np
import pytest

from sim.metrics import band_error, count_drops, force_metrics, summarize


def _trace():
    t = np.arange(0, 800) / 200.0                     # 4 s at 200 Hz
    f = np.where(t < 0.5, 0.0, 10.0)                  # contact at 0.5 s, in the 5-15 N band
    f = np.where((t >= 2.0) & (t < 2.3), 20.0, f)     # 0.3 s at 20 N after a perturbation at 2.0 s
    return t, f


def test_band_error():
    assert np.allclose(band_error([0, 5, 10, 15, 20], (5, 15)), [5, 0, 0, 0, 5])


def test_force_metrics_hand_made_trace():
    t, f = _trace()
    m = force_metrics(t, f, (5.0, 15.0), [2.0, 3.0])
    assert m["first_contact_time"] == pytest.approx(0.5)
    n_after = np.sum(t >= 0.5)                        # 700 samples from first contact
    n_out = np.sum((t >= 2.0) & (t < 2.3))            # 60 samples at 5 N above the band
    assert m["time_in_band"] == pytest.approx(1 - n_out / n_after)
    assert m["rms_force_error"] == pytest.approx(np.sqrt(n_out * 25.0 / n_after))
    assert m["peak_force"] == pytest.approx(20.0)
    # back in band at 2.3 s and stays: 0.3 s; the second perturbation never leaves the band: 0
    assert m["recovery_times"][0] == pytest.approx(0.3, abs=1e-9)
    assert m["recovery_times"][1] == 0.0


def test_recovery_needs_settling_and_can_fail():
    t = np.arange(0, 400) / 200.0
    f = np.full_like(t, 10.0)
    f[(t >= 1.0) & (t < 1.2)] = 2.0                   # drop out of the band
    f[(t >= 1.2) & (t < 1.25)] = 10.0                 # brief return (50 ms < settle 0.1 s)
    f[(t >= 1.25) & (t < 1.4)] = 2.0
    m = force_metrics(t, f, (5, 15), [1.0, 1.9])
    assert m["recovery_times"][0] == pytest.approx(0.4)
    f2 = np.where(t >= 1.0, 30.0, 10.0)               # never comes back
    m2 = force_metrics(t, f2, (5, 15), [1.0])
    assert m2["recovery_times"] == [None]


def test_no_contact():
    t = np.arange(0, 100) / 200.0
    m = force_metrics(t, np.zeros_like(t), (5, 15), [0.2])
    assert m["first_contact_time"] is None and m["time_in_band"] == 0.0
    assert m["rms_force_error"] == pytest.approx(5.0)
    assert m["recovery_times"] == [None]


def test_count_drops():
    t = np.arange(0, 400) / 200.0
    f = np.full_like(t, 8.0)
    f[(t >= 0.5) & (t < 0.6)] = 0.0                   # 100 ms loss: counted
    f[(t >= 1.0) & (t < 1.01)] = 0.0                  # 10 ms: too short
    f[(t >= 1.5) & (t < 1.7)] = 0.0                   # counted once
    assert count_drops(t, f, 0.5, 0.02, start_time=0.0) == 2
    assert count_drops(t, f, 0.5, 0.02, start_time=None) == 0


def test_summarize():
    eps = [{"task": "wipe", "success": True, "rms_force_error": 1.0, "time_in_band": 0.9, "peak_force": 12.0,
            "slip_events": 0, "recovery_times": [0.2, None]},
           {"task": "wipe", "success": False, "rms_force_error": 3.0, "time_in_band": 0.5, "peak_force": 30.0,
            "slip_events": 2, "recovery_times": [0.4]}]
    s = summarize(eps)
    assert s["episodes"] == 2 and s["successes"] == 1 and s["success_rate"] == 0.5
    assert s["mean_rms_force_error"] == pytest.approx(2.0)
    assert s["mean_recovery_time"] == pytest.approx(0.3)
    assert s["unrecovered_perturbations"] == 1
