"""MuJoCo contact-rich simulator: tasks, sensor models, experts, metrics. No ROS.

    from sim import SimConfig, SimEnv, make_expert, TASKS
"""
from .config import TASKS, SimConfig
from .types import ArmState, CameraIntrinsics


def __getattr__(name):  # heavy imports (mujoco) only when used
    if name == "SimEnv":
        from .env import SimEnv
        return SimEnv
    if name == "make_expert":
        from .expert import make_expert
        return make_expert
    raise AttributeError(f"module 'sim' has no attribute {name!r}")


__all__ = ["TASKS", "SimConfig", "SimEnv", "make_expert", "ArmState", "CameraIntrinsics"]
