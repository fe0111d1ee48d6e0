"""Resampling onto the dataset's frame grid, without DDS: nearest sample for poses, wrench and
tactile, newest-earlier for images, the two kinds of action."""
import numpy as np
import pytest

from teleop_tactar.convert import Streams, fresh_runs, resample


def _streams(rng):
    s = Streams(arms=["arm"], cameras=["camera"], start_stamp=10.0)
    t = 9.0 + np.arange(0, 3.0, 0.005) + rng.uniform(0, 0.001, 600)          # 200 Hz, jittered
    s.data[("arm", "tcp_pose")] = (t, np.column_stack([t, np.zeros((600, 5)), np.ones(600)]))
    s.data[("arm", "tcp_wrench")] = (t, np.column_stack([t, np.zeros((600, 5))]))
    s.data[("arm", "tactile/markers")] = (t, np.repeat(t[:, None, None], 4, 1).repeat(4, 2))
    s.data[("arm", "target_tcp")] = (t, np.column_stack([t + 100, np.zeros((600, 5)), np.ones(600)]))
    ti = 9.0 + np.arange(0, 3.0, 1 / 30)
    s.data[("camera", "image")] = (ti, np.zeros((len(ti), 4, 6, 3), np.uint8) + (np.arange(len(ti)) % 255)[:, None, None, None].astype(np.uint8))
    return s, ti


def test_resample_aligns_by_stamp_and_builds_actions():
    s, ti = _streams(np.random.default_rng(0))
    frames, times, lag, dropped = resample(s, 50.0, "target")
    assert times[0] == pytest.approx(10.0) and np.allclose(np.diff(times), 0.02)
    assert np.abs(frames["observation.tcp_pose"][:, 0] - times).max() <= 0.5 / 50
    assert frames["observation.tactile"].shape[1] == 16
    assert np.all(frames["action"][:, 0] - 100 <= times + 1e-9)                 # the command in force
    idx = frames["observation.images.camera"][:, 0, 0, 0]
    assert np.all(ti[idx] <= times + 1e-9) and np.all(times - ti[idx] < 1 / 30 + 1e-9)   # newest earlier frame
    assert max(v for k, v in lag.items() if "image" not in k) <= 0.5 / 50
    frames, _, _, _ = resample(s, 50.0, "next_pose")
    np.testing.assert_array_equal(frames["action"][:-1], frames["observation.tcp_pose"][1:])
    del s.data[("arm", "tcp_wrench")]
    with pytest.raises(ValueError, match="/arm/tcp_wrench"):
        resample(s, 50.0)


def test_frames_whose_samples_are_too_old_are_stale_and_the_fresh_runs_are_kept():
    """A 0.3 s stall of the wrench stream in the middle of the episode: the frames it would
    fill with stale readings are marked, the fresh runs on either side are what is kept
    (each at a regular 1/fps), and nothing kept is older than its bound."""
    s, _ = _streams(np.random.default_rng(1))
    _, all_times, _, fresh0 = resample(s, 50.0, "target")
    assert fresh0.all()
    t, v = s.data[("arm", "tcp_wrench")]
    keep = (t < 10.5) | (t > 10.8)
    s.data[("arm", "tcp_wrench")] = (t[keep], v[keep])
    frames, times, lag, fresh = resample(s, 50.0, "target")
    assert len(times) == len(all_times) and 10 < (~fresh).sum() < 20   # ~0.3 s at 50 fps
    assert lag["/arm/tcp_wrench"] <= 0.5 / 50 + 1e-9                     # over the fresh frames
    runs = fresh_runs(fresh, min_frames=5)
    assert len(runs) == 2 and times[runs[0]][-1] <= 10.5 + 1e-9 and times[runs[1]][0] >= 10.8 - 1e-9
    assert sum(r.stop - r.start for r in runs) == fresh.sum()
    assert fresh_runs(fresh, min_frames=len(times)) == []
