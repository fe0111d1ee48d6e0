"""RealSense RGB-D reading on top of ``pyrealsense2``, without ROS.

The same path for a real camera and for the SDK's software device (``rs.software_device``,
used by the tests to inject frames): find the device by serial, open the colour sensor
(RGB8) and the depth sensor (Z16) at the configured resolution and rate, start both into
an ``rs.syncer``, pair colour with the depth frame of the same capture (within half a frame
period of device time), align depth to colour with ``rs.align`` and read the colour
intrinsics from the stream profile. This is how the RealSense ROS wrapper drives the
sensors too (sensor-level, not ``rs.pipeline``).

Timestamps are left in the device's domain (:class:`RGBDFrame` says which); the node maps
them to ROS time with :class:`hardware.clock.DeviceClockMapper`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from slowfast_data.camera import CameraIntrinsics


class DeviceUnavailable(RuntimeError):
    """No device with the serial, or it cannot stream the requested profile."""


def _sdk():
    """pyrealsense2, imported on first use, never at import of this module.

    The pyrealsense2 wheel carries its own copy of Fast DDS (for RealSense DDS cameras). In a
    process that also uses ROS 2 (rclpy with rmw_fastrtps), loading pyrealsense2 *first*
    makes the two copies collide and the process crashes at exit (reproduced with 2.59 and
    Kilted: ``import pyrealsense2, rclpy; rclpy.init(); rclpy.shutdown()`` -> SIGSEGV at
    exit; the other order is fine). Importing it late lets every node load rclpy first.
    It also keeps this module importable where no wheel exists (e.g. aarch64)."""
    try:
        import pyrealsense2  # noqa: PLC0415
    except ImportError as exc:  # pragma: no cover - only where the wheel is missing
        raise DeviceUnavailable(f"pyrealsense2 is not installed ({exc}); pip install pyrealsense2") from None
    return pyrealsense2


@dataclass(frozen=True)
class RealSenseConfig:
    serial: str = ""          # '' = the first device found
    width: int = 640
    height: int = 480
    fps: int = 30
    depth: bool = True
    frame_id: str = "camera_color_optical_frame"

    def __post_init__(self):
        if not (16 <= self.width <= 4096 and 16 <= self.height <= 4096):
            raise ValueError(f"width, height: {self.width}x{self.height} outside 16..4096")
        if not (1 <= self.fps <= 300):
            raise ValueError(f"fps: {self.fps} outside 1..300")


@dataclass
class RGBDFrame:
    device_time_s: float          # frame timestamp in its domain, seconds
    domain: str                   # 'hardware_clock' | 'global_time' | 'system_time'
    frame_number: int
    color: np.ndarray             # (H, W, 3) uint8 RGB
    depth_mm: np.ndarray | None   # (H, W) uint16 millimetres aligned to colour; 0 = no data
    intrinsics: CameraIntrinsics
    received: float = 0.0         # time.monotonic() when the SDK handed the frame over (before aligning)


def _domain(frame) -> str:
    return str(frame.get_frame_timestamp_domain()).rsplit(".", 1)[-1]


def list_serials(context=None) -> list[str]:
    rs = _sdk()
    ctx = context or rs.context()
    return [d.get_info(rs.camera_info.serial_number) for d in ctx.query_devices()]


class RealSenseCamera:
    """``open()``, then ``read()`` until it returns frames or None (timeout); ``close()``.
    ``device`` skips the lookup by serial (a software device in tests)."""

    def __init__(self, config: RealSenseConfig, device=None, context=None):
        rs = self._rs = _sdk()
        self.cfg = config
        self._given = device
        self._context = context
        self._sensors: list = []
        self._syncer = None
        self._depth = self._color = None
        self._color_received = 0.0
        self._depth_scale_mm = 1.0
        self.intrinsics: CameraIntrinsics | None = None
        self.serial = ""
        self.unpaired = 0
        self._align = rs.align(rs.stream.color)
        # Colour + depth -> one frameset for rs.align. The callback holds only this box, never
        # self: a cycle through the SDK's C++ block would outlive the interpreter.
        self._pending_depth = box = [None]

        def compose(frame, source, box=box):
            source.frame_ready(source.allocate_composite_frame([box[0], frame]))

        self._queue = rs.frame_queue(2)
        self._compose = rs.processing_block(compose)
        self._compose.start(self._queue)

    # ------------------------------------------------------------ open / close

    def _find_device(self):
        rs = self._rs
        if self._given is not None:
            return self._given
        ctx = self._context or rs.context()
        devices = list(ctx.query_devices())
        serials = [d.get_info(rs.camera_info.serial_number) for d in devices]
        if not devices:
            want = f" (wanted serial {self.cfg.serial})" if self.cfg.serial else ""
            raise DeviceUnavailable(f"no RealSense device connected{want}")
        if not self.cfg.serial:
            return devices[0]
        if self.cfg.serial not in serials:
            raise DeviceUnavailable(f"no RealSense device with serial {self.cfg.serial} "
                                    f"(connected: {', '.join(serials)})")
        return devices[serials.index(self.cfg.serial)]

    def _profile(self, sensor, stream, fmt):
        for p in sensor.get_stream_profiles():
            if p.stream_type() != stream or p.format() != fmt or p.fps() != self.cfg.fps:
                continue
            v = p.as_video_stream_profile()
            if v.width() == self.cfg.width and v.height() == self.cfg.height:
                return p
        return None

    def open(self) -> None:
        rs = self._rs
        dev = self._find_device()
        self.serial = dev.get_info(rs.camera_info.serial_number) if dev.supports(rs.camera_info.serial_number) else ""
        color = depth = None
        for s in dev.query_sensors():
            if color is None and (p := self._profile(s, rs.stream.color, rs.format.rgb8)) is not None:
                color = (s, p)
            if self.cfg.depth and depth is None and (p := self._profile(s, rs.stream.depth, rs.format.z16)) is not None:
                depth = (s, p)
        want = f"{self.cfg.width}x{self.cfg.height} @ {self.cfg.fps} fps"
        if not color:
            raise DeviceUnavailable(f"RealSense {self.serial}: no RGB8 colour stream {want}")
        if self.cfg.depth and not depth:
            raise DeviceUnavailable(f"RealSense {self.serial}: no Z16 depth stream {want}")
        i = color[1].as_video_stream_profile().get_intrinsics()
        self.intrinsics = CameraIntrinsics(i.width, i.height, i.fx, i.fy, i.ppx, i.ppy, self.cfg.frame_id,
                                            str(i.model).rsplit(".", 1)[-1], tuple(float(c) for c in i.coeffs))
        self._syncer = rs.syncer(4)
        self._sensors = []
        by_sensor: dict = {}
        for s, p in [color] + ([depth] if depth else []):
            by_sensor.setdefault(id(s), (s, []))[1].append(p)
        try:
            for s, profiles in by_sensor.values():
                s.open(profiles if len(profiles) > 1 else profiles[0])
                self._sensors.append(s)
                s.start(self._syncer)
            if depth:
                ds = depth[0]
                units = ds.get_option(rs.option.depth_units) if ds.supports(rs.option.depth_units) else 0.001
                self._depth_scale_mm = float(units) * 1000.0
        except RuntimeError as exc:
            self.close()
            raise DeviceUnavailable(f"RealSense {self.serial}: cannot start streaming: {exc}") from None
        self._depth = self._color = None

    def close(self) -> None:
        for s in self._sensors:
            for op in (s.stop, s.close):
                try:
                    op()
                except RuntimeError:
                    pass  # already stopped, or the device is gone
        self._sensors = []
        self._syncer = None
        self._depth = self._color = None

    def release(self) -> None:
        """Close and drop every SDK object now. Call it before the interpreter exits: an SDK
        object destroyed during interpreter finalization can abort the process."""
        self.close()
        self._compose = self._queue = self._align = None
        self._pending_depth[0] = None
        self._given = self._context = None

    @property
    def is_open(self) -> bool:
        return self._syncer is not None

    # ------------------------------------------------------------ frames

    def read(self, timeout_s: float = 1.0) -> RGBDFrame | None:
        """The next colour frame (with its aligned depth when depth is on), or None when
        none arrived within ``timeout_s``."""
        if self._syncer is None:
            raise DeviceUnavailable("camera is not open")
        half_period_ms = 500.0 / self.cfg.fps
        ok, fs = self._syncer.try_wait_for_frames(int(timeout_s * 1000))
        while ok:
            received = time.monotonic()
            c, d = fs.get_color_frame(), fs.get_depth_frame() if self.cfg.depth else None
            if c:
                c.keep()
                self._color, self._color_received = c, received
            if d:
                d.keep()
                self._depth = d
            if self._color is not None and (not self.cfg.depth or self._depth is not None):
                if not self.cfg.depth:
                    return self._emit(self._color, None)
                dt = self._color.get_timestamp() - self._depth.get_timestamp()
                if abs(dt) <= half_period_ms:
                    return self._emit(self._color, self._depth)
                if dt < -half_period_ms:        # this colour frame's depth never came
                    self.unpaired += 1
                    self._color = None
            ok, fs = self._syncer.try_wait_for_frames(int(timeout_s * 1000))
        return None

    def _emit(self, color, depth) -> RGBDFrame:
        self._color = None
        depth_mm = None
        if depth is not None:
            self._pending_depth[0] = depth
            self._compose.invoke(color)
            aligned = self._align.process(self._queue.wait_for_frame().as_frameset())
            self._pending_depth[0] = None
            raw = np.asanyarray(aligned.get_depth_frame().get_data())
            depth_mm = raw.copy() if self._depth_scale_mm == 1.0 else \
                np.clip(np.round(raw * self._depth_scale_mm), 0, 65535).astype(np.uint16)
        rgb = np.asanyarray(color.get_data()).copy()
        return RGBDFrame(color.get_timestamp() * 1e-3, _domain(color), int(color.get_frame_number()),
                         rgb, depth_mm, self.intrinsics, self._color_received)


class SoftwareCamera:
    """A RealSense made of software (``rs.software_device``): the SDK's own way to inject
    frames, so :class:`RealSenseCamera` runs its real code path without a camera. Colour
    and depth sensors with the given intrinsics; depth registered to colour by
    ``depth_to_color_m`` (a translation, metres). Used by the tests."""

    def __init__(self, serial: str = "000000000001", width: int = 64, height: int = 48, fps: int = 30,
                 fx: float = 60.0, fy: float = 60.0, depth_units: float = 0.001,
                 depth_to_color_m=(0.0, 0.0, 0.0)):
        rs = self._rs = _sdk()
        self.width, self.height = width, height
        self.device = rs.software_device()
        intr = rs.intrinsics()
        intr.width, intr.height, intr.fx, intr.fy = width, height, fx, fy
        intr.ppx, intr.ppy = (width - 1) / 2.0, (height - 1) / 2.0
        intr.model, intr.coeffs = rs.distortion.none, [0.0] * 5
        self._depth_sensor = self.device.add_sensor("Stereo Module")
        self._color_sensor = self.device.add_sensor("RGB Camera")
        self._profiles = {}
        for sensor, stream, fmt, bpp, uid in ((self._depth_sensor, rs.stream.depth, rs.format.z16, 2, 0),
                                              (self._color_sensor, rs.stream.color, rs.format.rgb8, 3, 1)):
            vs = rs.video_stream()
            vs.type, vs.index, vs.uid = stream, 0, uid
            vs.width, vs.height, vs.fps, vs.bpp, vs.fmt, vs.intrinsics = width, height, fps, bpp, fmt, intr
            self._profiles[stream] = sensor.add_video_stream(vs).as_video_stream_profile()
        self._depth_sensor.add_read_only_option(rs.option.depth_units, depth_units)
        ext = rs.extrinsics()
        ext.rotation = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
        ext.translation = [float(v) for v in depth_to_color_m]
        self._profiles[rs.stream.depth].register_extrinsics_to(self._profiles[rs.stream.color], ext)
        self.device.register_info(rs.camera_info.serial_number, serial)
        self.device.register_info(rs.camera_info.name, "Software RealSense")

    def push(self, color: np.ndarray, depth_raw: np.ndarray | None, device_time_s: float,
             frame_number: int, domain: str = "hardware_clock") -> None:
        """Inject one capture: colour (H, W, 3) uint8 RGB and raw Z16 depth (H, W) uint16 in
        depth units, both stamped ``device_time_s`` in ``domain``."""
        rs = self._rs
        dom = getattr(rs.timestamp_domain, domain)
        pairs = [(self._color_sensor, rs.stream.color, np.ascontiguousarray(color, np.uint8), 3)]
        if depth_raw is not None:
            pairs.insert(0, (self._depth_sensor, rs.stream.depth, np.ascontiguousarray(depth_raw, np.uint16), 2))
        for sensor, stream, pixels, bpp in pairs:
            f = rs.software_video_frame()
            f.pixels, f.bpp, f.stride = pixels, bpp, self.width * bpp
            f.timestamp, f.domain, f.frame_number = device_time_s * 1e3, dom, int(frame_number)
            f.profile = self._profiles[stream]
            sensor.on_video_frame(f)


# ---------------------------------------------------------------- the capture loop

#: a capture state's /diagnostics level (any other state: "error")
STATE_LEVELS = {"streaming": "ok", "waiting": "warn", "starting": "warn"}
_INFO_STATES = ("streaming", "waiting")


class RealSenseCapture:
    """The camera's capture loop (the realsense_node's thread): open the camera, read its
    frames and stamp them in ROS time, and when it is missing, fails or stops delivering for
    ``frame_timeout`` seconds close it and reopen it every ``reconnect_period`` seconds.
    ``clock``: a :class:`hardware.clock.DeviceClockMapper` for ``hardware_clock`` stamps;
    ``log``: a logger (``info``, ``error``) told of each change of state."""

    def __init__(self, camera, clock, frame_timeout: float, reconnect_period: float, log):
        self.camera, self.clock, self.log = camera, clock, log
        self.frame_timeout, self.reconnect_period = frame_timeout, reconnect_period
        self.state, self.reason = "starting", "opening the camera"
        self.reconnects = 0
        self.last_stamp = float("-inf")

    def set_state(self, state: str, reason: str) -> None:
        if (state, reason) != (self.state, self.reason):
            if state in _INFO_STATES:   # one severity per call site: rclpy's loggers insist
                self.log.info(f"{state}: {reason}")
            else:
                self.log.error(f"{state}: {reason}")
        self.state, self.reason = state, reason

    def stamp(self, frame: RGBDFrame, ros_now: float) -> float:
        """The frame's capture time in ROS time, ``ros_now`` being ROS time now."""
        # Arrival = when the SDK handed the frame over, not after alignment and conversion.
        arrival = ros_now - (time.monotonic() - frame.received)
        if frame.domain == "hardware_clock":
            return self.clock.map(frame.device_time_s, arrival)
        # global_time / system_time: ms since the epoch on the host clock.
        return frame.device_time_s + (arrival - time.time())

    def run(self, stop, ros_now, on_frame) -> None:
        """Until ``stop`` (a threading.Event): ``on_frame(stamp, frame)`` for each frame whose
        stamp is newer than the last one (time never goes backwards: a repeated or reordered
        frame is dropped); ``ros_now()`` gives ROS time."""
        while not stop.is_set():
            try:
                self.camera.open()
            except RuntimeError as exc:  # DeviceUnavailable, or the SDK failing on a half-gone device
                self.set_state("no device", str(exc) if isinstance(exc, DeviceUnavailable) else f"cannot open: {exc}")
                self.camera.close()
                stop.wait(self.reconnect_period)
                continue
            self.clock.reset()  # a reopened device may have restarted its clock
            if self.state != "lost":  # a lost camera stays reported lost until frames flow again
                self.set_state("waiting", f"RealSense {self.camera.serial} open, waiting for frames")
            last = time.monotonic()
            while not stop.is_set():
                try:
                    frame = self.camera.read(timeout_s=min(0.2, self.frame_timeout))
                except RuntimeError as exc:  # the SDK reports an unplugged device this way too
                    self.set_state("lost", f"camera error: {exc}")
                    break
                if frame is None:
                    if time.monotonic() - last > self.frame_timeout:
                        self.set_state("lost", f"no frame for {self.frame_timeout} s (camera unplugged or stalled)")
                        break
                    continue
                last = time.monotonic()
                stamp = self.stamp(frame, ros_now())   # mapped while inactive too: the estimate stays current
                if stamp <= self.last_stamp:
                    continue
                self.last_stamp = stamp
                on_frame(stamp, frame)
            self.camera.close()
            if not stop.is_set():
                self.reconnects += 1
                stop.wait(self.reconnect_period)

    def status(self, active: bool) -> tuple[str, str]:
        """(/diagnostics level, message): the state's; inactive, at least a warning."""
        level = STATE_LEVELS.get(self.state, "error")
        message = "" if level == "ok" else f"{self.state}: {self.reason}"
        if not active:
            level, message = ("warn" if level == "ok" else level), f"inactive: publishing nothing ({self.state})"
        return level, message
