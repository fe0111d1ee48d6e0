"""Every ROS message <-> numpy conversion of the stack, in one place.

Conventions (docs/architecture.md): SI units; quaternions in x, y, z, w order (ROS order) on both
sides of these functions; stamps are the capture time of the data, as float seconds of
the ROS clock on the numpy side. Every pose says its frame.
"""
from __future__ import annotations

import json

import numpy as np
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseStamped, WrenchStamped
from sensor_msgs.msg import CameraInfo, Image, JointState, PointCloud2, PointField
from std_msgs.msg import String
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from slowfast_data.camera import CameraIntrinsics

# ---------------------------------------------------------------- time


def to_time(seconds: float) -> Time:
    """Float seconds -> builtin_interfaces/Time (exact to the nanosecond for ROS epochs)."""
    ns = int(round(seconds * 1e9))
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def from_time(t: Time) -> float:
    return t.sec + t.nanosec * 1e-9


def stamp_of(msg) -> float:
    """Capture stamp of any message with a header, float seconds."""
    return from_time(msg.header.stamp)


# ---------------------------------------------------------------- poses and wrenches


def pose_msg(stamp: float, frame_id: str, pos, quat_xyzw) -> PoseStamped:
    msg = PoseStamped()
    msg.header.stamp = to_time(stamp)
    msg.header.frame_id = frame_id
    p, q = msg.pose.position, msg.pose.orientation
    p.x, p.y, p.z = (float(v) for v in pos)
    q.x, q.y, q.z, q.w = (float(v) for v in quat_xyzw)
    return msg


def pose_from_msg(msg: PoseStamped) -> tuple[float, np.ndarray, np.ndarray]:
    """-> (stamp, position (3,), quaternion x,y,z,w (4,)); the frame is msg.header.frame_id."""
    p, q = msg.pose.position, msg.pose.orientation
    return (stamp_of(msg), np.array([p.x, p.y, p.z]), np.array([q.x, q.y, q.z, q.w]))


def wrench_msg(stamp: float, frame_id: str, wrench6) -> WrenchStamped:
    msg = WrenchStamped()
    msg.header.stamp = to_time(stamp)
    msg.header.frame_id = frame_id
    f, t = msg.wrench.force, msg.wrench.torque
    f.x, f.y, f.z, t.x, t.y, t.z = (float(v) for v in wrench6)
    return msg


def wrench_from_msg(msg: WrenchStamped) -> tuple[float, np.ndarray]:
    """-> (stamp, [fx, fy, fz, tx, ty, tz]) in msg.header.frame_id."""
    f, t = msg.wrench.force, msg.wrench.torque
    return stamp_of(msg), np.array([f.x, f.y, f.z, t.x, t.y, t.z])


# ---------------------------------------------------------------- gripper


def gripper_msg(stamp: float, width: float, force: float, name: str = "gripper") -> JointState:
    """Gripper state or command: position = width (m), effort = force (N) / force limit."""
    msg = JointState()
    msg.header.stamp = to_time(stamp)
    msg.name = [name]
    msg.position = [float(width)]
    msg.effort = [float(force)]
    return msg


def gripper_from_msg(msg: JointState) -> tuple[float, float, float]:
    """-> (stamp, width, force). Raises ValueError when the message carries no position."""
    if not msg.position:
        raise ValueError("gripper JointState has no position (width)")
    force = float(msg.effort[0]) if msg.effort else float("nan")
    return stamp_of(msg), float(msg.position[0]), force


def joint_state_msg(stamp: float, joints: dict) -> JointState:
    """An arm's joints (``SimEnv.joint_state``: name, position rad, velocity rad/s, effort N·m)."""
    msg = JointState()
    msg.header.stamp = to_time(stamp)
    msg.name = list(joints["name"])
    msg.position = [float(x) for x in joints["position"]]
    msg.velocity = [float(x) for x in joints["velocity"]]
    msg.effort = [float(x) for x in joints["effort"]]
    return msg


def joint_positions_from_msg(msg: JointState, names) -> tuple[float, np.ndarray]:
    """JointState -> (stamp, positions of the joints ``names``, in that order). Raises
    ValueError when a joint is missing or has no position."""
    index = {n: i for i, n in enumerate(msg.name)}
    missing = [n for n in names if n not in index or index[n] >= len(msg.position)]
    if missing:
        raise ValueError(f"JointState lacks position(s) of {', '.join(missing)}")
    return stamp_of(msg), np.array([msg.position[index[n]] for n in names], dtype=float)


# ---------------------------------------------------------------- tactile marker field

_MARKER_FIELDS = ("x", "y", "dx", "dy")
_MARKER_DTYPE = np.dtype([(n, "<f4") for n in _MARKER_FIELDS])


def markers_msg(stamp: float, frame_id: str, markers: np.ndarray,
                grid: tuple[int, int] | None = None) -> PointCloud2:
    """Marker field (N, 4: x, y, dx, dy in metres) -> PointCloud2 with float32 fields
    x, y, dx, dy. With ``grid=(rows, cols)`` the cloud is organised (height=rows); lost
    markers are NaN rows and make the cloud not dense."""
    markers = np.asarray(markers, dtype=np.float32)
    if markers.ndim != 2 or markers.shape[1] != 4:
        raise ValueError(f"marker field must be (N, 4), got {markers.shape}")
    rows, cols = grid if grid is not None else (1, markers.shape[0])
    if rows * cols != markers.shape[0]:
        raise ValueError(f"grid {rows}x{cols} does not hold {markers.shape[0]} markers")
    msg = PointCloud2()
    msg.header.stamp = to_time(stamp)
    msg.header.frame_id = frame_id
    msg.height, msg.width = int(rows), int(cols)
    msg.fields = [PointField(name=n, offset=4 * i, datatype=PointField.FLOAT32, count=1)
                  for i, n in enumerate(_MARKER_FIELDS)]
    msg.is_bigendian = False
    msg.point_step = 16
    msg.row_step = 16 * int(cols)
    msg.is_dense = bool(np.isfinite(markers).all())
    msg.data = np.ascontiguousarray(markers).tobytes()
    return msg


def markers_from_msg(msg: PointCloud2) -> tuple[float, np.ndarray]:
    """-> (stamp, (N, 4) float32 x, y, dx, dy). Checks the field layout."""
    names = [f.name for f in msg.fields]
    if names[:4] != list(_MARKER_FIELDS) or msg.point_step != 16:
        raise ValueError(f"tactile cloud must have float32 fields x, y, dx, dy; got {names}")
    n = msg.width * msg.height
    arr = np.frombuffer(msg.data, dtype=_MARKER_DTYPE, count=n)
    return stamp_of(msg), arr.view("<f4").reshape(n, 4).copy()


# ---------------------------------------------------------------- images

_ENCODINGS = {"rgb8": (np.uint8, 3), "bgr8": (np.uint8, 3), "mono8": (np.uint8, 1),
              "16UC1": (np.uint16, 1), "mono16": (np.uint16, 1), "32FC1": (np.float32, 1)}


def image_msg(stamp: float, frame_id: str, array: np.ndarray, encoding: str = "rgb8") -> Image:
    """numpy image -> sensor_msgs/Image (raw pixels; never compressed bytes)."""
    if encoding not in _ENCODINGS:
        raise ValueError(f"unsupported image encoding {encoding!r}")
    dtype, channels = _ENCODINGS[encoding]
    array = np.ascontiguousarray(array, dtype=dtype)
    h, w = array.shape[:2]
    if (channels == 1 and array.ndim != 2) or (channels > 1 and array.shape[2:] != (channels,)):
        raise ValueError(f"{encoding} image must have {channels} channel(s), got shape {array.shape}")
    msg = Image()
    msg.header.stamp = to_time(stamp)
    msg.header.frame_id = frame_id
    msg.height, msg.width, msg.encoding = h, w, encoding
    msg.is_bigendian = 0
    msg.step = w * channels * np.dtype(dtype).itemsize
    msg.data = array.tobytes()
    return msg


def image_from_msg(msg: Image) -> tuple[float, np.ndarray]:
    """sensor_msgs/Image -> (stamp, array HxW or HxWxC). Unknown encodings raise ValueError."""
    if msg.encoding not in _ENCODINGS:
        raise ValueError(f"unsupported image encoding {msg.encoding!r}")
    dtype, channels = _ENCODINGS[msg.encoding]
    itemsize = np.dtype(dtype).itemsize
    row = msg.width * channels * itemsize
    if msg.step < row or len(msg.data) < msg.step * msg.height:
        raise ValueError(f"image data too short for {msg.width}x{msg.height} {msg.encoding}")
    buf = np.frombuffer(msg.data, dtype=np.uint8).reshape(msg.height, msg.step)[:, :row]
    arr = buf.copy().view(dtype)
    if msg.is_bigendian and itemsize > 1:
        arr = arr.byteswap()
    shape = (msg.height, msg.width) if channels == 1 else (msg.height, msg.width, channels)
    return stamp_of(msg), arr.reshape(shape)


def depth_msg_mm(stamp: float, frame_id: str, depth_m: np.ndarray) -> Image:
    """Depth in metres (float) -> 16UC1 millimetres, as the RealSense driver publishes it.
    Invalid depth (NaN, <= 0, beyond 65.535 m) becomes 0, the driver's 'no data'."""
    d = np.asarray(depth_m, dtype=np.float64) * 1000.0
    d = np.where(np.isfinite(d) & (d > 0) & (d < 65535.5), np.round(d), 0.0)
    return image_msg(stamp, frame_id, d.astype(np.uint16), "16UC1")


def depth_from_msg(msg: Image) -> tuple[float, np.ndarray]:
    """16UC1 (mm) or 32FC1 (m) depth -> (stamp, metres float32 with NaN where invalid)."""
    stamp, arr = image_from_msg(msg)
    if msg.encoding in ("16UC1", "mono16"):
        out = arr.astype(np.float32) / 1000.0
        out[arr == 0] = np.nan
    elif msg.encoding == "32FC1":
        out = arr.astype(np.float32)
        out[~(out > 0)] = np.nan
    else:
        raise ValueError(f"depth image must be 16UC1 or 32FC1, got {msg.encoding!r}")
    return stamp, out


def camera_info_msg(stamp: float, intr) -> CameraInfo:
    """Pinhole intrinsics (any object with width, height, fx, fy, cx, cy, frame_id) ->
    CameraInfo with the plumb_bob model and zero distortion."""
    msg = CameraInfo()
    msg.header.stamp = to_time(stamp)
    msg.header.frame_id = intr.frame_id
    msg.width, msg.height = int(intr.width), int(intr.height)
    msg.distortion_model = "plumb_bob"
    msg.d = [0.0] * 5
    msg.k = [float(intr.fx), 0.0, float(intr.cx), 0.0, float(intr.fy), float(intr.cy), 0.0, 0.0, 1.0]
    msg.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    msg.p = [float(intr.fx), 0.0, float(intr.cx), 0.0,
             0.0, float(intr.fy), float(intr.cy), 0.0, 0.0, 0.0, 1.0, 0.0]
    return msg


def intrinsics_from_msg(msg: CameraInfo) -> CameraIntrinsics:
    k = msg.k
    if k[0] <= 0 or k[4] <= 0:
        raise ValueError("CameraInfo has no valid focal length (K[0], K[4] must be > 0)")
    return CameraIntrinsics(msg.width, msg.height, k[0], k[4], k[2], k[5], msg.header.frame_id)


# ---------------------------------------------------------------- policy chunks

CHUNK_KINDS = ("latent", "action")


def chunk_msg(obs_stamp: float, frame_id: str, kind: str, data: np.ndarray, row_dt: float) -> JointTrajectory:
    """A chunk of the slow policy as trajectory_msgs/JointTrajectory.

    header.stamp = capture time of the observation it was computed from; header.frame_id =
    the frame of the TCP poses it is relative to; joint_names = ``<kind>_<i>`` for each
    dimension (kind "latent": tokenizer latent rows; "action": relative actions, A*9);
    points[j].positions = row j; time_from_start = j * row_dt after the observation.
    The start pose is not in the message: it is the TCP pose captured at the stamp.
    """
    if kind not in CHUNK_KINDS:
        raise ValueError(f"chunk kind {kind!r} not in {CHUNK_KINDS}")
    data = np.asarray(data, np.float64)
    if data.ndim != 2:
        raise ValueError(f"chunk must be (rows, dim), got {data.shape}")
    msg = JointTrajectory()
    msg.header.stamp = to_time(obs_stamp)
    msg.header.frame_id = frame_id
    msg.joint_names = [f"{kind}_{i}" for i in range(data.shape[1])]
    for j, row in enumerate(data):
        pt = JointTrajectoryPoint()
        pt.positions = row.tolist()
        ns = int(round(j * row_dt * 1e9))
        pt.time_from_start.sec, pt.time_from_start.nanosec = ns // 1_000_000_000, ns % 1_000_000_000
        msg.points.append(pt)
    return msg


def chunk_from_msg(msg: JointTrajectory) -> tuple[float, str, np.ndarray]:
    """-> (obs_stamp, kind, data (rows, dim) float32). ValueError on a malformed chunk."""
    names = list(msg.joint_names)
    if not names:
        raise ValueError("chunk has no joint_names")
    kind = names[0].rsplit("_", 1)[0]
    if kind not in CHUNK_KINDS or names != [f"{kind}_{i}" for i in range(len(names))]:
        raise ValueError(f"chunk joint_names must be latent_0.. or action_0.., got {names[:3]}...")
    if not msg.points or any(len(p.positions) != len(names) for p in msg.points):
        raise ValueError("chunk points must each have one position per joint name")
    data = np.array([p.positions for p in msg.points], dtype=np.float32)
    return stamp_of(msg), kind, data


def camera_info_msg_distorted(stamp: float, intr, coeffs) -> CameraInfo:
    """Like :func:`camera_info_msg`, with the device's 5 distortion coefficients (k1, k2,
    p1, p2, k3) in the plumb_bob model, as the RealSense ROS wrapper publishes them."""
    msg = camera_info_msg(stamp, intr)
    d = [float(c) for c in coeffs]
    if len(d) != 5:
        raise ValueError(f"plumb_bob needs 5 distortion coefficients, got {len(d)}")
    msg.d = d
    return msg


# ---------------------------------------------------------------- JSON events


def json_msg(payload: dict) -> String:
    """A small structured event (episode start/end, recorder state) as std_msgs/String JSON."""
    return String(data=json.dumps(payload, separators=(",", ":")))


def json_from_msg(msg: String) -> dict:
    try:
        payload = json.loads(msg.data)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ValueError(f"event is not JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise ValueError("event JSON must be an object")
    return payload


def on_json(handler):
    """A String subscription callback that hands ``handler`` each message's JSON object and
    drops the rest: a malformed event from another node must not raise in this one."""
    def callback(msg: String) -> None:
        try:
            payload = json_from_msg(msg)
        except ValueError:
            return
        handler(payload)
    return callback


def episode_start(msg: String) -> dict | None:
    """The event of an episode topic (``sim/episode``) message when it is a start, else None
    (an end event, or a message that is not a JSON object)."""
    try:
        event = json_from_msg(msg)
    except ValueError:
        return None
    return event if event.get("event") == "start" else None


# ---------------------------------------------------------------- diagnostics

_LEVELS = {"ok": DiagnosticStatus.OK, "warn": DiagnosticStatus.WARN,
           "error": DiagnosticStatus.ERROR, "stale": DiagnosticStatus.STALE}


def diagnostic_status(name: str, values: dict, level: str = "ok", message: str = "",
                      hardware_id: str = "") -> DiagnosticStatus:
    return DiagnosticStatus(
        level=_LEVELS[level], name=name, message=message or level.upper(), hardware_id=hardware_id,
        values=[KeyValue(key=str(k), value=_fmt(v)) for k, v in values.items()])


def diagnostics_msg(stamp: float, statuses: list[DiagnosticStatus]) -> DiagnosticArray:
    msg = DiagnosticArray()
    msg.header.stamp = to_time(stamp)
    msg.status = list(statuses)
    return msg


def diagnostics_values(status: DiagnosticStatus) -> dict[str, str]:
    return {kv.key: kv.value for kv in status.values}


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


# ---------------------------------------------------------------- mobile base


def twist_msg(linear: float, angular: float) -> "Twist":
    """A planar base command (cmd_vel): forward speed (m/s) along the base's x axis, yaw rate
    (rad/s) about its z axis, counter-clockwise positive. Base frame, x forward, z up."""
    from geometry_msgs.msg import Twist  # noqa: PLC0415

    msg = Twist()
    msg.linear.x = float(linear)
    msg.angular.z = float(angular)
    return msg


def twist_from_msg(msg) -> tuple[float, float]:
    """Twist -> (forward speed m/s, yaw rate rad/s). Raises ValueError on non-finite values."""
    v, w = float(msg.linear.x), float(msg.angular.z)
    if not (np.isfinite(v) and np.isfinite(w)):
        raise ValueError(f"cmd_vel is not finite: linear.x={v}, angular.z={w}")
    return v, w


def odometry_msg(stamp: float, frame_id: str, child_frame_id: str, pose_xyyaw, twist_vw) -> "Odometry":
    """Planar odometry: pose (x, y, yaw) of ``child_frame_id`` (the base) in ``frame_id`` (odom),
    twist (v, w) in the base frame."""
    from nav_msgs.msg import Odometry  # noqa: PLC0415

    x, y, yaw = (float(v) for v in pose_xyyaw)
    msg = Odometry()
    msg.header.stamp = to_time(stamp)
    msg.header.frame_id = frame_id
    msg.child_frame_id = child_frame_id
    p, q = msg.pose.pose.position, msg.pose.pose.orientation
    p.x, p.y, p.z = x, y, 0.0
    q.x, q.y, q.z, q.w = 0.0, 0.0, float(np.sin(yaw / 2)), float(np.cos(yaw / 2))
    msg.twist.twist.linear.x = float(twist_vw[0])
    msg.twist.twist.angular.z = float(twist_vw[1])
    return msg


def odometry_from_msg(msg) -> tuple[float, np.ndarray, np.ndarray]:
    """Odometry -> (stamp, [x, y, yaw] in msg.header.frame_id, [v, w] in the base frame).
    The yaw is the heading of the base's x axis projected on the ground plane. ValueError on
    non-finite values or a zero quaternion."""
    p, q = msg.pose.pose.position, msg.pose.pose.orientation
    qx, qy, qz, qw = q.x, q.y, q.z, q.w
    n = qx * qx + qy * qy + qz * qz + qw * qw
    vals = np.array([p.x, p.y, qx, qy, qz, qw, msg.twist.twist.linear.x, msg.twist.twist.angular.z])
    if not np.isfinite(vals).all() or n < 1e-12:
        raise ValueError("odometry pose or twist is not finite (or a zero quaternion)")
    yaw = float(np.arctan2(2.0 * (qw * qz + qx * qy), 1.0 - 2.0 * (qy * qy + qz * qz)))
    return (stamp_of(msg), np.array([p.x, p.y, yaw]),
            np.array([msg.twist.twist.linear.x, msg.twist.twist.angular.z]))
