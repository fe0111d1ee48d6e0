"""VLN metrics against hand-computed paths."""
import math

import numpy as np
import pytest

from sim.nav.metrics import dtw, episode_metrics, resample, summarize


def test_straight_path_that_reaches_the_goal():
    ref = np.array([[0.0, 0.0], [2.0, 0.0]])
    path = np.array([[0.0, 0.0], [0.5, 0.0], [1.0, 0.0], [1.5, 0.0], [2.0, 0.0]])
    dist = [2.0 - p[0] for p in path]
    m = episode_metrics(path, ref, dist, shortest=2.0)
    assert m["NE"] == 0.0 and m["SR"] == 1.0 and m["OS"] == 1.0
    assert m["SPL"] == pytest.approx(1.0) and m["path_length"] == pytest.approx(2.0)
    # reference resampled every 0.25 m: 9 points; each executed point matches one exactly,
    # the 4 reference points between are 0.25 m from the nearest executed point.
    assert m["nDTW"] == pytest.approx(math.exp(-(4 * 0.25) / (9 * 3.0)))
    assert m["steps"] == 4


def test_detour_success_spl_and_oracle_failure():
    ref = np.array([[0.0, 0.0], [4.0, 0.0]])
    # walks 3 m up, 4 m across, 3 m down: length 10, shortest 4 -> SPL 0.4
    path = np.array([[0, 0], [0, 3], [4, 3], [4, 0]], float)
    dist = [4.0, 5.0, 3.0, 0.0]
    m = episode_metrics(path, ref, dist, shortest=4.0)
    assert m["SR"] == 1.0 and m["SPL"] == pytest.approx(0.4) and m["path_length"] == pytest.approx(10.0)
    # stops 3.5 m away after passing within 2.5 m: OS but no SR
    m = episode_metrics(path[:3], ref, [4.0, 2.5, 3.5], shortest=4.0)
    assert m["SR"] == 0.0 and m["OS"] == 1.0 and m["SPL"] == 0.0 and m["NE"] == 3.5
    # NE exactly at the radius is a failure (NE < 3 m)
    assert episode_metrics(path[:1], ref, [3.0], 4.0)["SR"] == 0.0


def test_dtw_and_resample_by_hand():
    assert dtw([[0, 0], [1, 0]], [[0, 0], [1, 0]]) == 0.0
    assert dtw([[0, 1]], [[0, 0], [2, 0]]) == pytest.approx(1.0 + math.sqrt(5.0))
    r = resample([[0, 0], [1, 0], [1, 1]], 0.5)
    assert len(r) == 5 and np.allclose(r[2], [1, 0]) and np.allclose(r[-1], [1, 1])
    # turning in place adds no point to the executed path
    m1 = episode_metrics([[0, 0], [1, 0]], [[0, 0], [1, 0]], [1, 0], 1.0)
    m2 = episode_metrics([[0, 0], [0, 0], [0, 0], [1, 0]], [[0, 0], [1, 0]], [1, 1, 1, 0], 1.0)
    assert m1["nDTW"] == pytest.approx(m2["nDTW"])


def test_summary_means():
    s = summarize([{"NE": 1.0, "SR": 1.0, "OS": 1.0, "SPL": 0.5, "nDTW": 0.8, "path_length": 2, "steps": 3},
                   {"NE": 5.0, "SR": 0.0, "OS": 1.0, "SPL": 0.0, "nDTW": 0.4, "path_length": 4, "steps": 5}])
    assert s["episodes"] == 2 and s["SR"] == 0.5 and s["NE"] == 3.0 and s["nDTW"] == pytest.approx(0.6)
