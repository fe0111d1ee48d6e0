"""What gelsight_node does between the camera and its topics, without ROS, so that it can be
tested on its own: reading frames (:class:`Capture`) and turning them into marker fields
(:class:`TactileField`). The node stamps, publishes and reports.

Capture: ``source`` is a device index (``0``), a device path (``/dev/video2``) or a video
file. A camera that cannot be opened, or stops delivering, is reopened every
``reconnect_period`` s (state ``no camera`` / ``lost``); a video file plays at ``fps`` in
real time and ends the capture (state ``ended``) unless ``loop``. OpenCV gives no capture
time for a live camera: each frame is handed on with its arrival time.

Fields: the first usable frame (or the next one after :meth:`TactileField.rezero`) is the
reference; a frame that cannot be one (too few markers, not the grid) is retried on the next.
A frame where fewer than ``min_tracked_fraction`` of the reference markers are found (none,
a covered or blinded sensor) gives no field (withheld, state ``markers lost``): a field of
mostly NaN would read as no contact. Each state change is logged once (tracking and ended as
information, the rest as warnings); /diagnostics' level follows the state.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np

from .markers import MarkerDetector, MarkerTracker

#: /diagnostics level of each state; any other (no camera, lost, no reference) is an error
STATE_LEVELS = {"tracking": "ok", "ended": "warn", "markers lost": "warn", "starting": "warn"}
_INFO_STATES = ("tracking", "ended")


def is_video_file(source: str) -> bool:
    """A source that is neither a device index nor a device path is a video file."""
    return not source.isdigit() and not source.startswith("/dev/")


class TactileField:
    """The reference and the tracking; ``log``: a logger (``info``, ``warning``)."""

    def __init__(self, detector: MarkerDetector, gate_px: float, mm_per_px: float, grid, min_markers: int,
                 min_tracked_fraction: float, source: str, log):
        self.detector, self.gate_px, self.mm_per_px = detector, gate_px, mm_per_px
        self.grid, self.min_markers, self.min_tracked_fraction = grid, min_markers, min_tracked_fraction
        self.log = log
        self.state, self.reason = "starting", f"opening {source}"
        self.tracker: MarkerTracker | None = None
        self.withheld = self.reference_markers = 0
        self.last = {"tracked": 0, "lost": 0, "spurious": 0}
        self._rezero = threading.Event()
        self._rezero.set()                       # the first usable frame is the reference

    def rezero(self) -> None:
        """The next frame becomes the reference (any thread)."""
        self._rezero.set()

    def set_state(self, state: str, reason: str) -> None:
        if (state, reason) != (self.state, self.reason):
            if state in _INFO_STATES:   # one severity per call site: rclpy's loggers insist
                self.log.info(f"{state}: {reason}")
            else:
                self.log.warning(f"{state}: {reason}")
        self.state, self.reason = state, reason

    def track(self, rgb: np.ndarray) -> np.ndarray | None:
        """One frame -> its marker field (N, 4: x, y, dx, dy, metres), or None (withheld, or
        no reference yet)."""
        if self._rezero.is_set():
            tracker = MarkerTracker(self.detector, self.gate_px, self.mm_per_px,
                                    (rgb.shape[1], rgb.shape[0]), self.grid, self.min_markers)
            try:
                self.reference_markers = tracker.reset(rgb)
            except ValueError as exc:
                self.set_state("no reference", f"cannot take the reference frame: {exc}")
                return None   # retried on the next frame
            self.tracker = tracker
            self._rezero.clear()
            self.set_state("tracking", f"reference with {self.reference_markers} markers")
            return tracker.reference_field()
        res = self.tracker.update(rgb)
        self.last = {"tracked": res.tracked, "lost": res.lost, "spurious": res.spurious}
        if res.tracked < self.min_tracked_fraction * self.reference_markers:
            self.withheld += 1
            self.set_state("markers lost", f"{res.tracked} of {self.reference_markers} markers found; field withheld")
            return None
        self.set_state("tracking", f"reference with {self.reference_markers} markers")
        return res.markers

    def status(self, active: bool) -> tuple[str, str]:
        """(/diagnostics level, message): the state's; inactive, at least a warning."""
        level = STATE_LEVELS.get(self.state, "error")
        message = "" if level == "ok" else f"{self.state}: {self.reason}"
        if not active:
            level, message = ("warn" if level == "ok" else level), f"inactive: publishing nothing ({self.state})"
        return level, message


@dataclass
class Capture:
    """Frames from a camera or a video file until stopped (see the module docstring)."""

    source: str
    fps: float
    width: int = 0
    height: int = 0
    loop: bool = False
    reconnect_period: float = 1.0
    reconnects: int = 0

    @property
    def is_file(self) -> bool:
        return is_video_file(self.source)

    def _open(self):
        import cv2  # noqa: PLC0415

        cap = cv2.VideoCapture(int(self.source) if self.source.isdigit() else self.source)
        if not cap.isOpened():
            cap.release()
            return None
        if not self.is_file:
            cap.set(cv2.CAP_PROP_FPS, self.fps)
            if self.width and self.height:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        return cap

    def run(self, stop: threading.Event, clock, on_frame, set_state) -> None:
        """Until ``stop``: ``on_frame(arrival, rgb)`` per frame, ``arrival`` = ``clock()``
        right after the read; ``set_state(state, reason)`` when the source fails or ends."""
        import cv2  # noqa: PLC0415

        period = 1.0 / self.fps
        while not stop.is_set():
            cap = self._open()
            if cap is None:
                set_state("no camera", f"cannot open {self.source}")
                stop.wait(self.reconnect_period)
                continue
            next_t = time.monotonic()
            while not stop.is_set():
                if self.is_file:  # play a file in real time
                    stop.wait(max(0.0, next_t - time.monotonic()))
                    next_t += period
                ok, bgr = cap.read()
                if not ok or bgr is None:
                    break
                arrival = clock()
                on_frame(arrival, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            cap.release()
            if stop.is_set():
                break
            if self.is_file and not self.loop:
                set_state("ended", f"video file {self.source} ended")
                break
            if not self.is_file:
                set_state("lost", f"camera {self.source} stopped delivering frames; reopening")
                self.reconnects += 1
                stop.wait(self.reconnect_period)
