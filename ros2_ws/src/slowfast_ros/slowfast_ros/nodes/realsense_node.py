"""realsense_node: an Intel RealSense RGB-D camera on the topics of the RealSense ROS wrapper.

Publishes <camera>/color/image_raw (rgb8), <camera>/color/camera_info (the colour stream's
intrinsics from the device) and, with ``depth``, <camera>/aligned_depth_to_color/image_raw
(16UC1, mm, aligned to colour by the SDK); /diagnostics at 1 Hz. Subscribes nothing.

The capture loop is hardware.realsense.RealSenseCapture (no ROS); this node publishes for it.
Stamps: the device's own frame timestamps, mapped to ROS time. ``hardware_clock`` stamps
(the camera's counter) go through hardware.clock.DeviceClockMapper: ROS stamp = device time
+ the smallest (arrival - device time) of the last ``clock_window`` seconds, minus the known
transport ``latency``; ``global_time``/``system_time`` stamps are on the host clock already.

A camera that is missing, or that stops delivering for ``frame_timeout`` seconds (unplugged,
USB reset), is closed and reopened every ``reconnect_period`` seconds; meanwhile nothing is
published and /diagnostics says ERROR with the reason.

A lifecycle node (``slowfast_ros.lifecycle``): configure opens the camera and starts the
capture thread, activate publishes its frames, deactivate publishes no image, camera info or
depth until activated (the camera stays open and its frames are dropped, so activation
publishes a fresh frame at once; /diagnostics goes on and says ``inactive``), cleanup stops
the thread and releases the camera.
"""
from __future__ import annotations

import dataclasses
import threading

from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import CameraInfo, Image

from hardware.clock import DeviceClockMapper
from hardware.realsense import RealSenseCamera, RealSenseCapture, RealSenseConfig   # pyrealsense2 loads at open
from slowfast_ros import msgs, qos
from slowfast_ros.lifecycle import ManagedNode, ManagedParams
from slowfast_ros.node_util import RateMeter, declare_params, node_now, param, run_node


@dataclasses.dataclass
class RealSenseNodeParams(ManagedParams):
    camera: str = param("camera", "topic prefix: <camera>/color/image_raw, ...")
    serial: str = param("", "serial number of the camera ('' = the first one found)")
    width: int = param(640, "colour and depth width (px)")
    height: int = param(480, "colour and depth height (px)")
    fps: int = param(30, "frame rate of both streams (Hz)")
    depth: bool = param(True, "also publish depth aligned to colour (16UC1, mm)")
    frame_id: str = param("", "optical frame of the images ('' = <camera>_color_optical_frame)")
    frame_timeout: float = param(1.0, "no frame for this long (s): the camera is lost, reopen it")
    reconnect_period: float = param(2.0, "seconds between attempts to (re)open the camera")
    clock_window: float = param(10.0, "window (s) of the device-clock to ROS-time offset estimate")
    latency: float = param(0.0, "known minimum transport latency (s), subtracted from hardware stamps")

    def __post_init__(self):
        if not self.camera.strip("/"):
            raise ValueError("camera: must name a topic prefix, e.g. 'camera'")
        if not (16 <= self.width <= 4096 and 16 <= self.height <= 4096):
            raise ValueError(f"width, height: {self.width}x{self.height} outside 16..4096")
        if not (1 <= self.fps <= 300):
            raise ValueError(f"fps: {self.fps} outside 1..300")
        if not (0.05 <= self.frame_timeout <= 30.0):
            raise ValueError(f"frame_timeout: {self.frame_timeout} outside 0.05..30 s")
        if not (0.05 <= self.reconnect_period <= 60.0):
            raise ValueError(f"reconnect_period: {self.reconnect_period} outside 0.05..60 s")
        if not (0.5 <= self.clock_window <= 600.0):
            raise ValueError(f"clock_window: {self.clock_window} outside 0.5..600 s")
        if not (0.0 <= self.latency <= 0.5):
            raise ValueError(f"latency: {self.latency} outside 0..0.5 s")


class RealSenseNode(ManagedNode):
    active_note = "publishing the camera's frames"
    inactive_note = "no image published until activated (the camera stays open)"

    def __init__(self, device=None):
        """``device``: a pyrealsense2 device to use instead of looking one up by serial
        (tests pass the SDK's software device)."""
        super().__init__("realsense_node")
        self.p: RealSenseNodeParams = declare_params(self, RealSenseNodeParams())
        self._device = device
        cam = self.p.camera.strip("/")
        self.frame_id = self.p.frame_id or f"{cam}_color_optical_frame"
        self.camera = None
        self.image_pub = self.create_publisher(Image, f"{cam}/color/image_raw", qos.SENSOR_PUB)
        self.info_pub = self.create_publisher(CameraInfo, f"{cam}/color/camera_info", qos.SENSOR_PUB)
        self.depth_pub = (self.create_publisher(Image, f"{cam}/aligned_depth_to_color/image_raw", qos.SENSOR_PUB)
                          if self.p.depth else None)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_timer(1.0, self._publish_diagnostics)
        self.meter = RateMeter()
        # the capture loop (hardware.realsense), its camera and clock mapper given at configure
        self.capture = RealSenseCapture(None, None, self.p.frame_timeout, self.p.reconnect_period, self.get_logger())
        self.frames = self.dropped_inactive = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.autostart(self.p.autostart)

    def _configure(self) -> None:
        self.camera = RealSenseCamera(RealSenseConfig(self.p.serial, self.p.width, self.p.height, self.p.fps,
                                                      self.p.depth, self.frame_id), device=self._device)
        c = self.capture
        c.camera, c.clock = self.camera, DeviceClockMapper(window_s=self.p.clock_window, latency_s=self.p.latency)
        c.state, c.reason = "starting", "opening the camera"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=c.run, args=(self._stop, self._now, self._publish), name="realsense",
                                        daemon=True)
        self._thread.start()

    def _cleanup(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)
        if not self._thread.is_alive():
            self.camera.release()

    _now = node_now

    # ------------------------------------------------------------ capture thread

    def _publish(self, stamp: float, frame) -> None:
        if not self.active:
            self.dropped_inactive += 1
            return
        intr = frame.intrinsics
        self.image_pub.publish(msgs.image_msg(stamp, intr.frame_id, frame.color, "rgb8"))
        self.info_pub.publish(msgs.camera_info_msg_distorted(stamp, intr, intr.coeffs))
        if self.depth_pub is not None and frame.depth_mm is not None:
            self.depth_pub.publish(msgs.image_msg(stamp, intr.frame_id, frame.depth_mm, "16UC1"))
        self.frames += 1
        self.meter.tick()
        if self.capture.state != "streaming":
            self.capture.set_state("streaming", f"RealSense {self.camera.serial} {self.p.width}x{self.p.height} "
                                                f"@ {self.p.fps} Hz")

    # ------------------------------------------------------------ diagnostics

    def _publish_diagnostics(self) -> None:
        if self.camera is None:
            return
        c = self.capture
        values = {"state": c.state, "reason": c.reason, "serial": self.camera.serial or self.p.serial,
                  "rate_hz": self.meter.rate(), "frames": self.frames, "reconnects": c.reconnects,
                  "unpaired_color_frames": self.camera.unpaired, "clock_offset_s": c.clock.offset,
                  "clock_resets": c.clock.resets, "active": self.active,
                  "dropped_inactive": self.dropped_inactive}
        level, message = c.status(self.active)
        status = msgs.diagnostic_status(f"realsense_node: {self.p.camera.strip('/')}", values, level, message,
                                        hardware_id=self.camera.serial or self.p.serial)
        self.diag_pub.publish(msgs.diagnostics_msg(self._now(), [status]))


#: the parameters this node declares (checked by `slowfast` before anything starts)
PARAMS = RealSenseNodeParams


def main(args=None) -> int:
    return run_node(RealSenseNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
