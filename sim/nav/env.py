"""The navigation environment: a layout, a differential-drive base, an RGB-D camera. No ROS.

Two ways to drive the base:

* ``step(v, w, dt)``: continuous differential-drive kinematics (forward speed ``v`` m/s, yaw rate
  ``w`` rad/s, both clamped to the limits), integrated exactly over ``dt``; a motion that would
  leave free space is cut at the last free pose (a bump, counted). The ROS sim node uses this.
* ``apply_action(a)``: one discrete action (FORWARD 0.25 m, TURN 15 deg, STOP) executed at once,
  the synchronous ROS-free mode for data generation, evaluation and tests.

``render()`` returns RGB uint8 ``[H, W, 3]`` and depth in metres ``[H, W]`` (float32, NaN beyond
``max_depth`` or where nothing is seen), aligned pixel for pixel; ``intrinsics`` is their 3x3
pinhole matrix and ``camera_pose()`` the 4x4 pose of the OpenCV optical frame in the world.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from slowfast_data.fields import described
from slowfast_data.geometry import BaseCameraMount, base_camera_pose

from .layout import Layout, LayoutConfig, generate_layout
from .scene import build_mjcf, fovy_from_hfov

FORWARD_STEP_M = 0.25
TURN_STEP_RAD = math.radians(15.0)


def wrap(a: float) -> float:
    return (a + math.pi) % (2 * math.pi) - math.pi


@dataclass(frozen=True)
class NavConfig:
    """The navigation sim: camera, base limits and layout; the one definition of each value
    (default, meaning, range). nav_sim_node declares them as ``nav.<name>`` parameters."""

    # 160x120: what the StreamVLN models are trained and evaluated on (`slowfast train vln`,
    # `slowfast nav eval`), so the live sim shows a model the images it learned from
    camera_width: int = described(160, "camera image width (px)", 16, 640)
    camera_height: int = described(120, "camera image height (px; <= camera_width)", 16, 640)
    hfov_deg: float = described(79.0, "horizontal field of view (deg; RealSense D435 colour ~69, StreamVLN's "
                                      "sim camera 79)", 30.0, 120.0)
    max_depth: float = described(10.0, "depth image range (m)", 0.5, 20.0)
    camera_height_m: float = described(BaseCameraMount().z, "camera optical centre above the floor (m)")
    max_linear: float = described(0.5, "the base's forward speed limit (m/s; > 0)", 0.0, 2.0)
    max_angular: float = described(1.5, "the base's yaw rate limit (rad/s; > 0)", 0.0, 6.0)
    shadows: bool = described(False, "render shadows")
    layout: LayoutConfig = described(LayoutConfig(), "the generated apartment")

    def __post_init__(self) -> None:
        for name in ("camera_width", "camera_height"):
            v = getattr(self, name)
            if not (isinstance(v, int) and 16 <= v <= 640):
                raise ValueError(f"{name} must be an integer in [16, 640], got {v!r}")
        if self.camera_height > self.camera_width:
            raise ValueError(f"camera_height must be <= camera_width ({self.camera_width}), got {self.camera_height}")
        if not (30.0 <= self.hfov_deg <= 120.0):
            raise ValueError(f"hfov_deg must be in [30, 120], got {self.hfov_deg!r}")
        if not (0.5 <= self.max_depth <= 20.0):
            raise ValueError(f"max_depth must be in [0.5, 20] m, got {self.max_depth!r}")
        if not (0.0 < self.max_linear <= 2.0):
            raise ValueError(f"max_linear must be in (0, 2] m/s, got {self.max_linear!r}")
        if not (0.0 < self.max_angular <= 6.0):
            raise ValueError(f"max_angular must be in (0, 6] rad/s, got {self.max_angular!r}")
        if not isinstance(self.layout, LayoutConfig):
            raise ValueError(f"layout must be a LayoutConfig, got {type(self.layout).__name__}")


def action_pose(x: float, y: float, yaw: float, action) -> tuple[float, float, float]:
    """The pose one discrete action leads to, before collisions. The base and the expert's
    look-ahead both use it, so their headings agree float for float (where a step grazes an
    obstacle, a heading one ulp off can be free while the base's is not)."""
    a = int(action)
    if a == 1:
        return x + FORWARD_STEP_M * math.cos(yaw), y + FORWARD_STEP_M * math.sin(yaw), yaw
    if a in (2, 3):
        return x, y, wrap(yaw + (TURN_STEP_RAD if a == 2 else -TURN_STEP_RAD))
    if a != 0:
        raise ValueError(f"action must be 0..3, got {action!r}")
    return x, y, yaw


def camera_pose_at(x: float, y: float, yaw: float, height_m: float) -> np.ndarray:
    """4x4 pose of the base camera's OpenCV optical frame (``BaseCameraMount().x`` ahead of the
    base origin, ``height_m`` up, looking along the base's x) for the base at (x, y, yaw)."""
    return base_camera_pose(x, y, yaw, BaseCameraMount(z=height_m))


class NavEnv:
    def __init__(self, cfg: NavConfig | None = None):
        self.cfg = cfg or NavConfig()
        self.layout: Layout | None = None
        self.model = None
        self.data = None
        self._renderer = None
        self.pose = np.zeros(3)  # x, y, yaw in the world frame
        self.velocity = np.zeros(2)  # v, w actually executed by the last step
        self.bumps = 0
        self.path: list[np.ndarray] = []
        c = self.cfg
        self.fovy_deg = fovy_from_hfov(c.hfov_deg, c.camera_width, c.camera_height)
        fy = c.camera_height / 2 / math.tan(math.radians(self.fovy_deg) / 2)
        self.intrinsics = np.array([[fy, 0.0, c.camera_width / 2], [0.0, fy, c.camera_height / 2], [0.0, 0.0, 1.0]])

    # ---- episodes ---------------------------------------------------------------------------
    def load_layout(self, seed: int) -> Layout:
        import mujoco

        if self.layout is not None and self.layout.seed == seed:
            return self.layout
        self.close()
        self.layout = generate_layout(seed, self.cfg.layout)
        self.model = mujoco.MjModel.from_xml_string(build_mjcf(self.layout, self.fovy_deg, self.cfg.camera_height_m))
        self.data = mujoco.MjData(self.model)
        return self.layout

    def reset(self, layout_seed: int, start_pose) -> None:
        self.load_layout(layout_seed)
        self.pose = np.asarray(start_pose, float).copy()
        if not self.layout.is_free(self.pose[:2]):
            raise ValueError(f"start pose {self.pose[:2].tolist()} is not in free space")
        self.velocity[:] = 0.0
        self.bumps = 0
        self.path = [self.pose.copy()]
        self._sync()

    def _sync(self) -> None:
        import mujoco

        x, y, yaw = self.pose
        self.data.mocap_pos[0] = [x, y, 0.0]
        self.data.mocap_quat[0] = [math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)]
        mujoco.mj_forward(self.model, self.data)

    # ---- motion -----------------------------------------------------------------------------
    def step(self, v: float, w: float, dt: float) -> bool:
        """Drive with (v, w) for ``dt`` s. Returns False when the motion was cut by an obstacle."""
        c = self.cfg
        v = float(np.clip(v if math.isfinite(v) else 0.0, -c.max_linear, c.max_linear))
        w = float(np.clip(w if math.isfinite(w) else 0.0, -c.max_angular, c.max_angular))
        x, y, yaw = self.pose
        if abs(w) > 1e-9:
            nyaw = yaw + w * dt
            nx, ny = x + v / w * (math.sin(nyaw) - math.sin(yaw)), y - v / w * (math.cos(nyaw) - math.cos(yaw))
        else:
            nyaw, nx, ny = yaw, x + v * dt * math.cos(yaw), y + v * dt * math.sin(yaw)
        ok = True
        if (nx, ny) != (x, y) and not self.layout.segment_free((x, y), (nx, ny)):
            nx, ny, ok = x, y, False
            self.bumps += 1
        self.velocity[:] = ((math.hypot(nx - x, ny - y) / dt) * (1 if v >= 0 else -1) if dt > 0 else 0.0,
                            w)
        self.pose = np.array([nx, ny, wrap(nyaw)])
        self._sync()
        return ok

    def apply_action(self, action) -> bool:
        """One discrete action (an int or :class:`policy.streamvln.Action`-compatible value:
        0 STOP, 1 FORWARD, 2 LEFT, 3 RIGHT). Returns False when a forward move was blocked."""
        x, y, yaw = self.pose
        nx, ny, nyaw = action_pose(x, y, yaw, action)
        ok = self.layout.segment_free((x, y), (nx, ny)) if (nx, ny) != (x, y) else True
        if ok:
            self.pose = np.array([nx, ny, nyaw])
        else:
            self.bumps += 1
        self.path.append(self.pose.copy())
        self._sync()
        return ok

    # ---- sensing ----------------------------------------------------------------------------
    def camera_pose(self, pose=None) -> np.ndarray:
        """4x4 pose of the camera's OpenCV optical frame in the world frame."""
        return camera_pose_at(*(self.pose if pose is None else pose), self.cfg.camera_height_m)

    def _get_renderer(self):
        import mujoco

        if self._renderer is None:
            self._renderer = mujoco.Renderer(self.model, self.cfg.camera_height, self.cfg.camera_width)
            flags = self._renderer.scene.flags
            flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = False
            flags[mujoco.mjtRndFlag.mjRND_SHADOW] = bool(self.cfg.shadows)
        return self._renderer

    def render(self, data=None) -> tuple[np.ndarray, np.ndarray]:
        r = self._get_renderer()
        data = self.data if data is None else data
        r.update_scene(data, camera="rgbd")
        rgb = r.render().copy()
        r.enable_depth_rendering()
        try:
            r.update_scene(data, camera="rgbd")
            depth = r.render().astype(np.float32)
        finally:
            r.disable_depth_rendering()
        return rgb, self.clip_depth(depth)

    def clip_depth(self, depth: np.ndarray) -> np.ndarray:
        depth = depth.astype(np.float32, copy=True)
        depth[~(depth > 0.05) | (depth > self.cfg.max_depth)] = np.nan
        return depth

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
