"""gelsight_node: a vision-based tactile sensor (GelSight Mini style) as a marker field. It
orchestrates: reading frames and tracking the markers live without ROS in ``hardware.gelsight``.

Reads frames from a camera with OpenCV (``source``: a device index such as ``0``, a device
path such as ``/dev/video2``, or a video file), detects the marker dots, tracks them against
a reference frame (the first usable frame, or the next one after a re-zero) and publishes:
  <arm>/tactile/markers (PointCloud2 x, y, dx, dy float32, metres, in ``frame_id``: x, y
  the reference position about the image centre, image x right / y down; organised as
  ``grid_rows`` x ``grid_cols`` when given; a lost marker is a NaN row),
  <arm>/tactile/image_raw (Image rgb8, with ``publish_image``), /diagnostics at 1 Hz.
Service <arm>/tactile/rezero (std_srvs/Trigger): the next frame becomes the reference.

Stamps: OpenCV gives no capture time for a live camera, so a frame is stamped with its
arrival (ROS time) minus ``capture_latency``; a video file plays at ``fps`` in real time.

Bad input: a frame where fewer than ``min_tracked_fraction`` of the markers are found (no
markers, a covered or blinded sensor) publishes no field, only the image, and /diagnostics
says WARN; a camera that stops delivering is reopened every ``reconnect_period`` seconds
(ERROR meanwhile); a video file that ends stops the node's output (or loops with ``loop``).

A lifecycle node (``slowfast_ros.lifecycle``): configure opens the camera and starts the
capture thread, activate publishes the marker field and the image, deactivate publishes
neither until activated (frames are still read and tracked, so the reference and the
tracking stay current and a re-zero still works; /diagnostics goes on and says
``inactive``), cleanup stops the thread.
"""
from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import Image, PointCloud2
from std_srvs.srv import Trigger

from slowfast_ros import msgs, qos
from slowfast_ros.arm_io import topic
from slowfast_ros.lifecycle import ManagedNode, ManagedParams
from slowfast_ros.node_util import RateMeter, declare_params, node_now, param, run_node


@dataclasses.dataclass
class GelSightNodeParams(ManagedParams):
    arm: str = param("arm", "arm namespace of the topics: <arm>/tactile/markers")
    source: str = param("/dev/video0", "camera: device path ('/dev/video2'), device index ('2') or video file")
    fps: float = param(30.0, "camera rate to request; playback rate of a video file (Hz)")
    width: int = param(0, "frame width to request from a camera (0 = its default)")
    height: int = param(0, "frame height to request from a camera (0 = its default)")
    loop: bool = param(False, "loop a video file instead of ending")
    mm_per_px: float = param(0.0634, "gel surface millimetres per image pixel")
    grid_rows: int = param(0, "marker rows; with grid_cols the cloud is organised (0 = unorganised)")
    grid_cols: int = param(0, "marker columns (0 = unorganised)")
    gate_px: float = param(6.0, "a marker is matched only to a dot within this many pixels of where it was")
    threshold: float = param(20.0, "dot darkness above the local background to count as a marker (gray levels)")
    min_area: int = param(4, "smallest dot area (px)")
    max_area: int = param(400, "largest dot area (px)")
    background_px: int = param(31, "background blur kernel (px, odd, larger than a dot)")
    dark_markers: bool = param(True, "markers darker than the gel (False: bright markers)")
    min_markers: int = param(10, "markers a reference frame must have")
    min_tracked_fraction: float = param(0.5, "publish no field when fewer markers than this fraction are found")
    publish_image: bool = param(True, "also publish the raw image on <arm>/tactile/image_raw")
    frame_id: str = param("", "frame of the marker field ('' = <arm>_tactile_pad)")
    capture_latency: float = param(0.0, "camera latency (s) subtracted from arrival stamps")
    reconnect_period: float = param(1.0, "seconds between attempts to (re)open the camera")

    def __post_init__(self):
        if not self.source:
            raise ValueError("source: empty; give a device index, a device path or a video file")
        if not (1.0 <= self.fps <= 240.0):
            raise ValueError(f"fps: {self.fps} outside 1..240")
        if self.width < 0 or self.height < 0:
            raise ValueError(f"width, height: {self.width}x{self.height} must be >= 0")
        if not (0.001 <= self.mm_per_px <= 10.0):
            raise ValueError(f"mm_per_px: {self.mm_per_px} outside 0.001..10")
        if (self.grid_rows > 0) != (self.grid_cols > 0) or self.grid_rows < 0 or self.grid_cols < 0:
            raise ValueError(f"grid_rows, grid_cols: {self.grid_rows}x{self.grid_cols}; set both > 0 or both 0")
        if not (0.5 <= self.gate_px <= 100.0):
            raise ValueError(f"gate_px: {self.gate_px} outside 0.5..100")
        if not (0.0 <= self.min_tracked_fraction <= 1.0):
            raise ValueError(f"min_tracked_fraction: {self.min_tracked_fraction} outside 0..1")
        if self.min_markers < 1:
            raise ValueError(f"min_markers: {self.min_markers} must be >= 1")
        if not (0.0 <= self.capture_latency <= 1.0):
            raise ValueError(f"capture_latency: {self.capture_latency} outside 0..1 s")
        if not (0.05 <= self.reconnect_period <= 60.0):
            raise ValueError(f"reconnect_period: {self.reconnect_period} outside 0.05..60 s")


class GelSightNode(ManagedNode):
    active_note = "publishing the marker field and the image"
    inactive_note = "no marker field or image published until activated (frames still tracked)"

    def __init__(self):
        super().__init__("gelsight_node")
        from hardware.gelsight import Capture, TactileField, is_video_file  # noqa: PLC0415
        from hardware.markers import DetectorConfig, MarkerDetector  # noqa: PLC0415

        p = self.p = declare_params(self, GelSightNodeParams())
        # A bad detector setting raises ValueError naming the field: the node refuses to start.
        detector = MarkerDetector(DetectorConfig(p.threshold, p.min_area, p.max_area, p.background_px,
                                                 p.dark_markers))
        if is_video_file(p.source) and not Path(p.source).is_file():
            raise ValueError(f"source: no video file {p.source} (a camera is a device index or /dev/videoN)")
        self.grid = (p.grid_rows, p.grid_cols) if p.grid_rows > 0 else None
        self.frame_id = p.frame_id or f"{p.arm}_tactile_pad"
        self.field = TactileField(detector, p.gate_px, p.mm_per_px, self.grid, p.min_markers,
                                  p.min_tracked_fraction, p.source, self.get_logger())
        self.capture = Capture(p.source, p.fps, p.width, p.height, p.loop, p.reconnect_period)
        self.markers_pub = self.create_publisher(PointCloud2, topic(p.arm, "tactile/markers"), qos.SENSOR_PUB)
        self.image_pub = (self.create_publisher(Image, topic(p.arm, "tactile/image_raw"), qos.SENSOR_PUB)
                          if p.publish_image else None)
        self.create_service(Trigger, topic(p.arm, "tactile/rezero"), self._on_rezero)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_timer(1.0, self._publish_diagnostics)
        self.meter = RateMeter()
        self.frames = self.published = self.images_published = self.dropped_inactive = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.autostart(p.autostart)

    def _configure(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self.capture.run, name="gelsight", daemon=True,
                                        args=(self._stop, self._now, self._process, self.field.set_state))
        self._thread.start()

    def _cleanup(self) -> None:
        self._stop.set()
        self._thread.join(timeout=3.0)

    # ------------------------------------------------------------ callbacks (store only)

    def _on_rezero(self, request, response):
        self.field.rezero()
        response.success = True
        response.message = "the next frame becomes the reference"
        return response

    # ------------------------------------------------------------ capture thread

    _now = node_now

    def _process(self, arrival: float, rgb: np.ndarray) -> None:
        stamp = arrival - self.p.capture_latency
        self.frames += 1
        active = self.active   # one answer for the whole frame
        if not active:
            self.dropped_inactive += 1
        if self.image_pub is not None and active:
            self.image_pub.publish(msgs.image_msg(stamp, self.frame_id, rgb, "rgb8"))
            self.images_published += 1
        field = self.field.track(rgb)
        if field is None or not active:
            return
        self.markers_pub.publish(msgs.markers_msg(stamp, self.frame_id, field, self.grid))
        self.published += 1
        self.meter.tick()

    # ------------------------------------------------------------ diagnostics

    def _publish_diagnostics(self) -> None:
        f = self.field
        values = {"state": f.state, "reason": f.reason, "source": self.p.source,
                  "rate_hz": self.meter.rate(), "frames": self.frames, "fields_published": self.published,
                  "images_published": self.images_published,
                  "fields_withheld": f.withheld, "reference_markers": f.reference_markers,
                  "reconnects": self.capture.reconnects, **{f"markers_{k}": v for k, v in f.last.items()},
                  "active": self.active, "dropped_inactive": self.dropped_inactive}
        level, message = f.status(self.active)
        status = msgs.diagnostic_status(f"gelsight_node: {self.p.arm}", values, level, message,
                                        hardware_id=self.p.source)
        self.diag_pub.publish(msgs.diagnostics_msg(self._now(), [status]))


#: the parameters this node declares (checked by `slowfast` before anything starts)
PARAMS = GelSightNodeParams


def main(args=None) -> int:
    return run_node(GelSightNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
