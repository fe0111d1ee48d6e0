"""Device clock -> ROS time: the min-filtered offset recovers capture times to within the
smallest transport latency, follows drift, ignores late frames and restarts on a jump."""
import numpy as np
import pytest

from hardware.clock import DeviceClockMapper


def _stream(n=600, fps=30.0, offset=1.7e9, drift=0.0, seed=0, lat_min=0.002, lat_scale=0.004):
    rng = np.random.default_rng(seed)
    dev = 12.0 + np.arange(n) / fps                              # device clock, s
    capture_ros = dev * (1 + drift) + offset                     # the truth, ROS time
    arrival = capture_ros + lat_min + rng.exponential(lat_scale, n)
    return dev, capture_ros, arrival


def test_stamps_are_capture_time_plus_min_latency_not_arrival():
    dev, truth, arrival = _stream()
    m = DeviceClockMapper(window_s=10.0)
    stamps = np.array([m.map(d, a) for d, a in zip(dev, arrival)])
    err = stamps[30:] - truth[30:]                     # after 1 s of samples
    assert np.all(err >= 0.002 - 1e-9) and np.all(err < 0.0025)   # bias = the minimum latency only
    assert np.mean(arrival[30:] - truth[30:]) > 0.005              # receipt time would be ~3x worse
    assert np.all(np.diff(stamps[30:]) > 0)
    # Spacing follows the device clock, not the jittery arrivals.
    assert np.std(np.diff(stamps[30:])) < 2e-4 < np.std(np.diff(arrival[30:]))


def test_known_latency_is_subtracted():
    dev, truth, arrival = _stream()
    m = DeviceClockMapper(latency_s=0.002)
    stamps = np.array([m.map(d, a) for d, a in zip(dev, arrival)])
    assert np.abs(stamps[30:] - truth[30:]).max() < 5e-4


def test_drift_is_followed_by_the_sliding_window():
    dev, truth, arrival = _stream(n=3000, drift=100e-6)          # 100 ppm, 100 s
    m = DeviceClockMapper(window_s=5.0)
    stamps = np.array([m.map(d, a) for d, a in zip(dev, arrival)])
    assert np.abs(stamps[-600:] - truth[-600:] - 0.002).max() < 0.001   # 100 ppm * 5 s = 0.5 ms


def test_a_late_frame_does_not_move_the_stamps_and_a_clock_jump_restarts():
    dev, truth, arrival = _stream(n=120)
    arrival[60] += 0.5                                             # one frame 0.5 s late
    m = DeviceClockMapper(jump_s=1.0)
    stamps = np.array([m.map(d, a) for d, a in zip(dev, arrival)])
    assert abs(stamps[60] - truth[60]) < 0.003 and m.resets == 0
    # The device restarts its counter (back to 0): a new clock, estimated afresh.
    s = m.map(0.0, arrival[-1] + 0.033)
    assert m.resets == 1 and s == pytest.approx(arrival[-1] + 0.033)


def test_bad_settings_name_the_field():
    with pytest.raises(ValueError, match="window_s"):
        DeviceClockMapper(window_s=0)
