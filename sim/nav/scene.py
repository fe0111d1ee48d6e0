"""MJCF of a navigation layout: floor, walls, furniture, landmarks, and the robot base.

The base is a mocap body driven kinematically by :class:`sim.nav.env.NavEnv` (a
differential-drive model integrated in the env, collisions checked on the free-space grid),
so stepping costs microseconds; MuJoCo renders the RGB-D camera mounted on it.

Frames: world z-up. Base frame ``base``: x forward, y left, z up, at floor height. The camera
``rgbd`` sits ``camera_height`` above the floor, ``camera_forward`` ahead of the base centre,
looking along the base's x axis; its OpenCV optical frame (x right, y down, z forward) is
:data:`slowfast_data.geometry.R_BASE_FROM_OPTICAL` in the base frame; the mount's defaults are
:class:`slowfast_data.geometry.BaseCameraMount`.
"""
from __future__ import annotations

import math

from slowfast_data.geometry import BaseCameraMount

from .layout import Layout


def _f(v) -> str:
    return " ".join(f"{x:.4g}" for x in v)


def _geom(b) -> str:
    rgba = _f(tuple(b.rgb) + (1.0,))
    x, y = b.center
    if b.geom == "cylinder":
        r = min(b.half)
        out = f'<geom type="cylinder" size="{r:.4g} {b.height / 2:.4g}" pos="{x:.4g} {y:.4g} {b.height / 2:.4g}" rgba="{rgba}"/>'
        if b.kind == "lamp":  # a shade on top
            out += f'<geom type="cylinder" size="{r * 2.2:.4g} 0.15" pos="{x:.4g} {y:.4g} {b.height:.4g}" rgba="{rgba}"/>'
        return out
    if b.geom == "sphere":
        r = min(b.half)
        out = f'<geom type="sphere" size="{r:.4g}" pos="{x:.4g} {y:.4g} {b.height - r:.4g}" rgba="{rgba}"/>'
        if b.height - 2 * r > 0.05:  # a stem / pot under it
            out += (f'<geom type="cylinder" size="{r * 0.5:.4g} {(b.height - 2 * r) / 2:.4g}" '
                    f'pos="{x:.4g} {y:.4g} {(b.height - 2 * r) / 2:.4g}" rgba="0.45 0.3 0.2 1"/>')
        return out
    hx, hy = b.half
    return f'<geom type="box" size="{hx:.4g} {hy:.4g} {b.height / 2:.4g}" pos="{x:.4g} {y:.4g} {b.height / 2:.4g}" rgba="{rgba}"/>'


def build_mjcf(layout: Layout, camera_fovy_deg: float, camera_height: float = BaseCameraMount().z,
               camera_forward: float = BaseCameraMount().x) -> str:
    w, h = layout.size
    geoms = []
    for b in layout.walls:
        geoms.append(f'<geom name="{b.name}" type="box" size="{b.half[0]:.4g} {b.half[1]:.4g} {b.height / 2:.4g}" '
                     f'pos="{b.center[0]:.4g} {b.center[1]:.4g} {b.height / 2:.4g}" material="wall"/>')
    for b in layout.furniture + layout.landmarks:
        geoms.append(_geom(b))
    # a tinted floor patch per room: rooms look different even where no landmark is in view
    c = layout.cfg
    for room in range(c.rooms_x * c.rooms_y):
        i, j = room % c.rooms_x, room // c.rooms_x
        shade = 0.45 + 0.08 * ((i + 2 * j) % 4)
        geoms.append(f'<geom type="box" size="{c.room_size / 2:.4g} {c.room_size / 2:.4g} 0.001" '
                     f'pos="{(i + 0.5) * c.room_size:.4g} {(j + 0.5) * c.room_size:.4g} 0.001" '
                     f'rgba="{shade:.3g} {shade * 0.9:.3g} {shade * 0.8:.3g} 1" contype="0" conaffinity="0"/>')
    return f"""<mujoco model="nav_layout_{layout.seed}">
  <visual>
    <global offwidth="1280" offheight="960"/>
    <headlight ambient="0.45 0.45 0.45" diffuse="0.5 0.5 0.5" specular="0 0 0"/>
    <map znear="0.005" zfar="4"/>
    <quality shadowsize="0"/>
  </visual>
  <statistic extent="{max(w, h):.4g}" center="{w / 2:.4g} {h / 2:.4g} 1"/>
  <asset>
    <texture name="grid" type="2d" builtin="checker" width="64" height="64" rgb1="0.55 0.5 0.45" rgb2="0.45 0.4 0.36"/>
    <material name="floor" texture="grid" texrepeat="{w:.4g} {h:.4g}"/>
    <material name="wall" rgba="0.82 0.8 0.75 1"/>
  </asset>
  <worldbody>
    <light directional="true" pos="0 0 5" dir="0.3 0.2 -1" diffuse="0.35 0.35 0.35" castshadow="false"/>
    <geom name="floor" type="plane" size="{w / 2 + 1:.4g} {h / 2 + 1:.4g} 0.1" pos="{w / 2:.4g} {h / 2:.4g} 0" material="floor"/>
    {chr(10).join('    ' + g for g in geoms)}
    <body name="base" mocap="true" pos="1 1 0">
      <geom type="cylinder" size="0.2 0.15" pos="0 0 0.15" rgba="0.2 0.2 0.22 1" contype="0" conaffinity="0"/>
      <camera name="rgbd" pos="{camera_forward:.4g} 0 {camera_height:.4g}" xyaxes="0 -1 0 0 0 1" fovy="{camera_fovy_deg:.6g}"/>
    </body>
    <camera name="top" pos="{w / 2:.4g} {h / 2:.4g} {max(w, h) * 1.2:.4g}" xyaxes="1 0 0 0 1 0" fovy="60"/>
  </worldbody>
</mujoco>
"""


def fovy_from_hfov(hfov_deg: float, width: int, height: int) -> float:
    return math.degrees(2 * math.atan(math.tan(math.radians(hfov_deg) / 2) * height / width))
