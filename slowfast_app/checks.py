"""Environment checks shared by `slowfast doctor` and the commands that need them.

Each check returns a :class:`Check`: ok or not, what was found, and the fix to apply.
Checks that could crash or hang the caller (GL, DDS) run in a subprocess with a timeout.
"""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

GL_BACKENDS = ("egl", "osmesa")

_GL_PROBE = """
import mujoco
m = mujoco.MjModel.from_xml_string('<mujoco><worldbody><light pos="0 0 2"/><geom type="sphere" size=".1"/></worldbody></mujoco>')
d = mujoco.MjData(m); mujoco.mj_forward(m, d)
r = mujoco.Renderer(m, 32, 32); r.update_scene(d); img = r.render()
assert img.shape == (32, 32, 3) and img.any()
print("ok")
"""

_DDS_PROBE = """
import time, rclpy
from std_msgs.msg import String
rclpy.init()
node = rclpy.create_node("slowfast_doctor")
got = []
sub = node.create_subscription(String, "slowfast_doctor/ping", lambda m: got.append(time.monotonic()), 10)
pub = node.create_publisher(String, "slowfast_doctor/ping", 10)
t0 = time.monotonic()
while not got and time.monotonic() - t0 < 5.0:
    t_send = time.monotonic()
    pub.publish(String(data="ping"))
    rclpy.spin_once(node, timeout_sec=0.1)
if not got:
    raise SystemExit("no message came back within 5 s")
print(f"{(got[0] - t_send) * 1e3:.2f}")
"""


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    optional: bool = False

    def line(self) -> str:
        mark = "OK  " if self.ok else ("--  " if self.optional else "FAIL")
        text = f"{mark} {self.name:12s} {self.detail}"
        if not self.ok and self.fix:
            text += f"\n     fix: {self.fix}"
        return text


def _probe(code: str, env: dict | None = None, timeout: float = 30.0) -> tuple[bool, str]:
    try:
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           timeout=timeout, env={**os.environ, **(env or {})})
    except subprocess.TimeoutExpired:
        return False, f"timed out after {timeout:.0f} s"
    if r.returncode == 0:
        return True, r.stdout.strip()
    lines = [ln for ln in (r.stderr or r.stdout).splitlines() if ln.strip()]
    return False, lines[-1] if lines else f"exit status {r.returncode}"


def gl_candidates() -> tuple[str, ...]:
    """Backends to try: SLOWFAST_GL_BACKENDS (comma-separated) if set, else egl, osmesa."""
    env = os.environ.get("SLOWFAST_GL_BACKENDS", "")
    return tuple(b.strip() for b in env.split(",") if b.strip()) or GL_BACKENDS


def working_gl_backend(preferred: str | None = None) -> str | None:
    """The first MuJoCo GL backend that renders here (the preferred/current one first)."""
    candidates = gl_candidates()
    current = preferred or os.environ.get("MUJOCO_GL")
    order = ([current] if current in candidates else []) + list(candidates)
    for backend in dict.fromkeys(order):
        ok, _ = _probe(_GL_PROBE, {"MUJOCO_GL": backend, "PYOPENGL_PLATFORM": backend})
        if ok:
            return backend
    return None


def check_gl() -> Check:
    backend = working_gl_backend()
    if backend:
        return Check("mujoco-gl", True, f"MUJOCO_GL={backend} renders headless")
    return Check("mujoco-gl", False, f"no backend renders (tried {', '.join(gl_candidates())})",
                 "apt-get install libegl1 libgl1 (EGL) or libosmesa6 (OSMesa), then export MUJOCO_GL=egl")


def check_rmw() -> Check:
    ok, out = _probe("import rclpy\nfrom rclpy.utilities import get_rmw_implementation_identifier as g\n"
                     "rclpy.init(); print(g()); rclpy.shutdown()")
    if ok:
        from slowfast_ros.qos import discovery_range, transports_in_effect  # noqa: PLC0415 - rclpy imports, checked above

        domain = os.environ.get("ROS_DOMAIN_ID", "0")
        return Check("rmw", True, f"{out} (ROS_DOMAIN_ID={domain}, discovery {discovery_range()}; "
                                  f"transports: {transports_in_effect()})")
    return Check("rmw", False, out, "make setup (installs ros-kilted-rclpy and ros-kilted-rmw-fastrtps-cpp), "
                                     "or source /opt/ros/kilted/setup.bash")


def check_dds() -> Check:
    ok, out = _probe(_DDS_PROBE, timeout=20.0)
    if ok:
        return Check("dds", True, f"publish/subscribe round trip on this machine: {out} ms")
    return Check("dds", False, out, "check ROS_DOMAIN_ID / ROS_AUTOMATIC_DISCOVERY_RANGE and the firewall "
                                     "for UDP multicast on loopback")


def check_onnxruntime() -> Check:
    try:
        import onnxruntime as ort  # noqa: PLC0415
    except ImportError:
        return Check("onnxruntime", False, "not installed", "pip install 'slowfast[cpu]' (or [gpu] on CUDA machines)")
    providers = ort.get_available_providers()
    return Check("onnxruntime", True, f"{ort.__version__}, providers: {', '.join(providers)}")


def check_realsense() -> Check:
    try:
        import pyrealsense2 as rs  # noqa: PLC0415
    except ImportError as exc:
        return Check("realsense", False, f"pyrealsense2 not importable ({exc})",
                     "apt-get install libusb-1.0-0; pip install pyrealsense2", optional=True)
    devices = rs.context().query_devices()
    names = [f"{d.get_info(rs.camera_info.name)} #{d.get_info(rs.camera_info.serial_number)}" for d in devices]
    if names:
        return Check("realsense", True, f"{len(names)} device(s): {', '.join(names)}")
    return Check("realsense", False, "SDK works, no device seen",
                 "plug a RealSense camera into a USB 3 port (only needed on a robot)", optional=True)


def check_cuda() -> Check:
    try:
        import torch  # noqa: PLC0415
    except ImportError:
        return Check("cuda", False, "torch not installed", "make setup", optional=True)
    if torch.cuda.is_available():
        return Check("cuda", True, f"torch {torch.__version__}, {torch.cuda.get_device_name(0)}")
    return Check("cuda", False, f"torch {torch.__version__}: no CUDA device (CPU inference)",
                 "on a GPU machine install a CUDA build of torch and 'slowfast[gpu]'", optional=True)


ALL_CHECKS = (check_rmw, check_dds, check_gl, check_onnxruntime, check_realsense, check_cuda)
