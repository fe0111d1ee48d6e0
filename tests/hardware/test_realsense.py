"""The RealSense reader through the SDK's own software device: frames injected with
``rs.software_device`` go through sensor open/start, the syncer, colour-depth pairing,
``rs.align`` and the intrinsics of the stream profile, as with a camera."""
import importlib.util
import threading
import time

import numpy as np
import pytest

from hardware.realsense import DeviceUnavailable, RealSenseCamera, RealSenseConfig, SoftwareCamera

# Not imported here (hardware.realsense imports it on first use): in one pytest process with
# the ROS tests, rclpy must load before pyrealsense2 (see hardware.realsense._sdk).
if importlib.util.find_spec("pyrealsense2") is None:
    pytest.skip("pyrealsense2 is not installed", allow_module_level=True)

W, H, FX = 64, 48, 60.0


def _frames(cam_sw, n, t0=5.0, fps=30, depth=None, sleep=True):
    for i in range(n):
        color = np.zeros((H, W, 3), np.uint8)
        color[..., 0] = i
        d = np.full((H, W), 800, np.uint16) if depth is None else depth
        cam_sw.push(color, d, t0 + i / fps, i)
        if sleep:
            time.sleep(1.0 / fps)


def _read_all(cam, n, timeout=0.5):
    out = []
    for _ in range(n):
        f = cam.read(timeout)
        if f is None:
            break
        out.append(f)
    return out


def test_colour_depth_and_intrinsics_through_the_sdk():
    sw = SoftwareCamera(width=W, height=H, fx=FX, fy=FX)
    cam = RealSenseCamera(RealSenseConfig(width=W, height=H, fps=30), device=sw.device)
    cam.open()
    try:
        assert cam.serial == "000000000001"
        i = cam.intrinsics
        assert (i.width, i.height, i.fx, i.fy, i.cx, i.cy) == (W, H, FX, FX, (W - 1) / 2, (H - 1) / 2)
        feeder = threading.Thread(target=_frames, args=(sw, 10))
        feeder.start()
        frames = _read_all(cam, 10)
        feeder.join()
    finally:
        cam.release()
    assert len(frames) >= 9
    for f in frames:
        assert f.domain == "hardware_clock"
        assert f.color.shape == (H, W, 3) and f.color[0, 0, 0] == f.frame_number   # colour of its own capture
        assert f.depth_mm.dtype == np.uint16 and np.median(f.depth_mm) == 800
        assert f.device_time_s == pytest.approx(5.0 + f.frame_number / 30, abs=1e-6)


def test_depth_is_aligned_to_colour_with_the_extrinsics():
    """A near square (300 mm) on a far wall (600 mm), depth camera 20 mm left of colour:
    in the colour image the square moves by fx * t / z = 4 px, the wall by 2 px."""
    sw = SoftwareCamera(width=W, height=H, fx=FX, fy=FX, depth_to_color_m=(0.02, 0.0, 0.0))
    cam = RealSenseCamera(RealSenseConfig(width=W, height=H, fps=30), device=sw.device)
    depth = np.full((H, W), 600, np.uint16)
    depth[19:29, 20:30] = 300
    cam.open()
    try:
        _frames(sw, 1, depth=depth, sleep=False)
        f = cam.read(1.0)
    finally:
        cam.release()
    near = np.argwhere(f.depth_mm == 300)
    assert near[:, 1].min() == 24 and near[:, 1].max() == 33     # columns 20..29 shifted by +4
    assert near[:, 0].min() == 19 and near[:, 0].max() == 28     # rows unchanged
    assert np.median(f.depth_mm[:, 40:60]) == 600


def test_depth_units_are_converted_to_millimetres():
    sw = SoftwareCamera(width=W, height=H, depth_units=0.0001)     # 0.1 mm per unit (D405-style)
    cam = RealSenseCamera(RealSenseConfig(width=W, height=H, fps=30), device=sw.device)
    cam.open()
    try:
        _frames(sw, 1, depth=np.full((H, W), 5000, np.uint16), sleep=False)
        f = cam.read(1.0)
    finally:
        cam.release()
    assert np.median(f.depth_mm) == 500


def test_a_silent_device_times_out_and_reopens():
    sw = SoftwareCamera(width=W, height=H)
    cam = RealSenseCamera(RealSenseConfig(width=W, height=H, fps=30), device=sw.device)
    cam.open()
    try:
        _frames(sw, 2, sleep=False)
        assert len(_read_all(cam, 2)) == 2
        assert cam.read(0.2) is None                      # nothing arrives: None, no exception
        cam.close()
        assert not cam.is_open
        cam.open()                                        # what the node does to reconnect
        _frames(sw, 1, t0=9.0, sleep=False)
        f = cam.read(1.0)
        assert f is not None and f.device_time_s == pytest.approx(9.0)
    finally:
        cam.release()


def test_missing_device_or_profile_is_a_clear_error():
    with pytest.raises(DeviceUnavailable, match="serial 123"):
        _open_and_release(RealSenseCamera(RealSenseConfig(serial="123"), context=_EmptyContext()))
    sw = SoftwareCamera(width=W, height=H)
    with pytest.raises(DeviceUnavailable, match="no RGB8 colour stream 640x480 @ 30 fps"):
        _open_and_release(RealSenseCamera(RealSenseConfig(), device=sw.device))
    with pytest.raises(ValueError, match="fps"):
        RealSenseConfig(fps=0)


def _open_and_release(cam):
    try:
        cam.open()
    finally:
        cam.release()


class _EmptyContext:
    def query_devices(self):
        return []
