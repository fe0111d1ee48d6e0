"""MuJoCo contact-rich simulator: tasks, sensor models, experts, metrics. No ROS.

    from sim import SimConfig, SimEnv, make_expert, TASKS
"""
import os as _os

# Headless by default: without a display MuJoCo's default (GLFW) cannot render; EGL can.
# Set MUJOCO_GL yourself to choose (egl, osmesa, glfw); `slowfast doctor` says which works.
if "MUJOCO_GL" not in _os.environ and not _os.environ.get("DISPLAY"):
    _os.environ["MUJOCO_GL"] = "egl"
    _os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

from slowfast_data.camera import CameraIntrinsics  # noqa: E402

from .config import TASKS, SimConfig  # noqa: E402
from .types import ArmState  # noqa: E402


def __getattr__(name):  # heavy imports (mujoco) only when used
    if name in ("SimEnv", "scene_spaces"):
        from . import env
        return getattr(env, name)
    if name == "make_expert":
        from .expert import make_expert
        return make_expert
    raise AttributeError(f"module 'sim' has no attribute {name!r}")


__all__ = ["TASKS", "SimConfig", "SimEnv", "scene_spaces", "make_expert", "ArmState", "CameraIntrinsics"]
