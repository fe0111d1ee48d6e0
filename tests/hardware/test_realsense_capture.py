"""realsense_node's capture loop without ROS or the SDK (hardware.realsense.RealSenseCapture):
reopening a missing, failing or silent camera, stamps in ROS time that never go backwards,
the states it reports and their /diagnostics level."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from hardware.clock import DeviceClockMapper
from hardware.realsense import DeviceUnavailable, RealSenseCapture, RGBDFrame


class _Log:
    def __init__(self):
        self.lines = []

    def info(self, text):
        self.lines.append(("info", text))

    def error(self, text):
        self.lines.append(("error", text))


class _Camera:
    """Each open() plays the next session: an exception to raise, or what read() returns in
    turn (a frame, None for a timeout, an exception to raise); past its end read() times out.
    No session left: ``stop`` is set."""

    serial = "123"

    def __init__(self, sessions, stop):
        self.sessions, self.stop = list(sessions), stop
        self.current, self.opens, self.closes = [], 0, 0

    def open(self):
        self.opens += 1
        if not self.sessions:
            self.stop.set()
            raise DeviceUnavailable("no more sessions")
        s = self.sessions.pop(0)
        if isinstance(s, Exception):
            raise s
        self.current = list(s)

    def read(self, timeout_s):
        if not self.current:
            time.sleep(timeout_s)
            return None
        item = self.current.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    def close(self):
        self.closes += 1


def _frame(device_t, domain="system_time", n=0, late=0.0):
    """``late``: handed over this long after now (by the host's monotonic clock)."""
    return RGBDFrame(device_t, domain, n, np.zeros((2, 2, 3), np.uint8), None, None,
                     received=time.monotonic() + late)


def _run(sessions, frame_timeout=0.05):
    stop, log, got = threading.Event(), _Log(), []
    cam = _Camera(sessions, stop)
    cap = RealSenseCapture(cam, DeviceClockMapper(), frame_timeout, 0.01, log)
    states = []
    orig = cap.set_state

    def set_state(state, reason):
        states.append(state)
        orig(state, reason)

    cap.set_state = set_state
    t = threading.Thread(target=cap.run, args=(stop, time.time, lambda stamp, f: got.append((stamp, f))))
    t.start()
    t.join(timeout=10.0)
    assert not t.is_alive()
    return cap, cam, log, states, got


def test_frames_are_stamped_on_the_host_clock_and_never_go_backwards():
    now = time.time()
    frames = [_frame(now - 0.03, n=1), _frame(now - 0.031, n=2), _frame(now - 0.05, n=3), _frame(now - 0.01, n=4)]
    cap, cam, log, states, got = _run([frames])
    assert [f.frame_number for _, f in got] == [1, 4]            # steps back dropped
    stamps = [s for s, _ in got]     # (less the hand-over to stamping time: loose on a loaded machine)
    assert stamps == pytest.approx([now - 0.03, now - 0.01], abs=0.05)
    assert stamps[1] - stamps[0] == pytest.approx(0.02, abs=0.01)
    assert states[:2] == ["waiting", "lost"] and cap.reconnects == 1
    assert cap.reason.startswith("no more sessions")           # the end of the script
    assert ("info", "waiting: RealSense 123 open, waiting for frames") in log.lines
    assert ("error", "lost: no frame for 0.05 s (camera unplugged or stalled)") in log.lines


def test_a_missing_or_failing_camera_is_reopened_and_stays_lost_until_frames_flow():
    cap, cam, log, states, got = _run([DeviceUnavailable("no RealSense with serial 123"), RuntimeError("usb"),
                                       [RuntimeError("frame didn't arrive")], []])
    # open after "no device": waiting; reopened after a loss: still "lost" (no "waiting") until frames flow
    assert states[:5] == ["no device", "no device", "waiting", "lost", "lost"]
    assert ("error", "no device: no RealSense with serial 123") in log.lines
    assert ("error", "no device: cannot open: usb") in log.lines
    assert ("error", "lost: camera error: frame didn't arrive") in log.lines
    assert cap.reconnects == 2 and got == []
    assert cam.closes == cam.opens                                   # every open closed, failed ones too


def test_hardware_clock_stamps_go_through_the_mapper_which_restarts_on_reopen():
    mapper_frames = [_frame(1000.0, "hardware_clock"), _frame(1000.033, "hardware_clock", late=0.033)]
    t0 = time.time()
    cap, _, _, _, got = _run([mapper_frames, [_frame(5.0, "hardware_clock", late=0.5)]])
    assert len(got) == 3
    assert got[1][0] - got[0][0] == pytest.approx(0.033, abs=2e-3)   # spacing from the device clock
    # reopened, the device clock restarted (5 s): the mapper started over (not a jump it had to detect)
    assert got[2][0] == pytest.approx(t0 + 0.5, abs=0.05) and cap.clock.resets == 0
    assert abs(got[0][0] - time.time()) < 1.0 and np.isfinite(cap.clock.offset)


def test_status_levels():
    cap = RealSenseCapture(None, None, 1.0, 1.0, _Log())
    assert cap.status(True) == ("warn", "starting: opening the camera")
    cap.set_state("streaming", "RealSense 1 64x48 @ 30 Hz")
    assert cap.status(True) == ("ok", "")
    assert cap.status(False) == ("warn", "inactive: publishing nothing (streaming)")
    cap.set_state("lost", "no frame")
    assert cap.status(True) == ("error", "lost: no frame")
    assert cap.status(False) == ("error", "inactive: publishing nothing (lost)")
