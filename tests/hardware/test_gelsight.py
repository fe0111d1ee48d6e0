"""gelsight_node's work without ROS (hardware.gelsight): the reference and its retries, known
displacements, a withheld field when the markers are lost, a re-zero, the states told once
and their /diagnostics levels, and the capture of a video file (real time, its end, a loop)
and of a camera that cannot be opened."""
import threading
import time

import numpy as np
import pytest

from hardware.gelsight import Capture, TactileField, is_video_file
from hardware.markers import DetectorConfig, MarkerDetector, grid_centres, render_markers

SIZE = (160, 120)
MM_PER_PX = 0.05
REF = grid_centres(5, 6, SIZE)


class Log:
    def __init__(self):
        self.lines = []

    def info(self, text):
        self.lines.append(("info", text))

    def warning(self, text):
        self.lines.append(("warning", text))


def _field(grid=(5, 6), min_markers=10):
    log = Log()
    return TactileField(MarkerDetector(DetectorConfig()), 6.0, MM_PER_PX, grid, min_markers, 0.5, "cam", log), log


def test_sources():
    assert not is_video_file("0") and not is_video_file("/dev/video2") and is_video_file("clip.avi")


def test_reference_displacement_loss_and_rezero():
    f, log = _field()
    assert f.status(True) == ("warn", "starting: opening cam")
    assert f.track(render_markers(np.zeros((0, 2)), SIZE)) is None             # no markers: no reference
    assert f.state == "no reference" and f.status(True)[0] == "error"
    ref = f.track(render_markers(REF, SIZE))
    assert ref.shape == (30, 4) and np.all(ref[:, 2:] == 0) and f.reference_markers == 30
    shift = np.array([2.0, -1.0])
    moved = f.track(render_markers(REF + shift, SIZE))
    np.testing.assert_allclose(moved[:, 2:], np.tile(shift * MM_PER_PX * 1e-3, (30, 1)), atol=5e-6)
    assert f.status(True) == ("ok", "")
    assert f.track(render_markers(REF[:10], SIZE)) is None                      # 10 of 30: withheld
    assert f.withheld == 1 and f.last["tracked"] == 10 and f.state == "markers lost"
    assert f.status(True) == ("warn", "markers lost: 10 of 30 markers found; field withheld")
    f.rezero()
    again = f.track(render_markers(REF + shift, SIZE))                          # the new reference
    assert np.all(again[:, 2:] == 0)
    assert log.lines == [("warning", "no reference: cannot take the reference frame: reference frame has 0 "
                                     "markers, at least 10 needed"),
                         ("info", "tracking: reference with 30 markers"),
                         ("warning", "markers lost: 10 of 30 markers found; field withheld"),
                         ("info", "tracking: reference with 30 markers")]
    assert f.status(False) == ("warn", "inactive: publishing nothing (tracking)")


def test_an_inactive_error_stays_an_error():
    f, _ = _field()
    f.set_state("no camera", "cannot open cam")
    assert f.status(False) == ("error", "inactive: publishing nothing (no camera)")


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    import cv2

    path = tmp_path_factory.mktemp("gel") / "markers.avi"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), 30, SIZE)
    for _ in range(6):
        w.write(render_markers(REF, SIZE)[:, :, ::-1])
    w.release()
    return path


def test_a_video_file_plays_in_real_time_and_ends(video):
    frames, states, clock = [], [], iter(range(1000))
    cap = Capture(str(video), fps=60.0)
    t0 = time.monotonic()
    cap.run(threading.Event(), lambda: next(clock), lambda t, rgb: frames.append((t, rgb)),
            lambda *s: states.append(s))
    assert time.monotonic() - t0 >= 0.9 * 5 / 60.0                              # paced at fps, not read at once
    assert [t for t, _ in frames] == list(range(6)) and frames[0][1].shape == (SIZE[1], SIZE[0], 3)
    assert states == [("ended", f"video file {video} ended")]


def test_a_looped_video_runs_until_stopped(video):
    stop, frames = threading.Event(), []

    def on_frame(t, rgb):
        frames.append(t)
        if len(frames) == 15:
            stop.set()
    Capture(str(video), fps=240.0, loop=True).run(stop, lambda: 0.0, on_frame, lambda *s: pytest.fail(s))
    assert len(frames) == 15                                                     # past the 6 frames of the file


def test_a_camera_that_cannot_open_is_retried():
    stop, states = threading.Event(), []

    def set_state(state, reason):
        states.append((state, reason))
        if len(states) == 3:
            stop.set()
    Capture("/dev/video_none", fps=30.0, reconnect_period=0.01).run(stop, lambda: 0.0, lambda *a: None, set_state)
    assert states == [("no camera", "cannot open /dev/video_none")] * 3
