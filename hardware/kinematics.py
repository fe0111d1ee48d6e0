"""Forward kinematics of a serial chain read from a URDF: the TCP pose from joint positions.

A real arm's ros2_control stack does not always publish the TCP pose (franka_ros2 and the
Gazebo arm offer ``/joint_states`` only; UR's ``tcp_pose_broadcaster`` is UR's own). The
robot description does say where the TCP is: :class:`UrdfChain` reads the chain from the base
link to the TCP link out of it (fixed, revolute, continuous and prismatic joints) and maps joint
positions to the TCP pose in the base link, as ``robot_state_publisher`` + tf would.
``tcp_pose_node`` serves it as the pose topic ``robot_bridge_node`` reads.

Only what a chain needs is read (``<joint>``: type, parent, child, origin, axis); ``mimic`` and
floating/planar joints are refused with a clear error rather than guessed.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

import numpy as np

from slowfast_data.geometry import matrix_to_quat_one, rpy_matrix

MOVABLE = ("revolute", "continuous", "prismatic")


def axis_matrix(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rotation by ``angle`` about the unit ``axis`` (Rodrigues)."""
    x, y, z = axis
    k = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    return np.eye(3) + np.sin(angle) * k + (1.0 - np.cos(angle)) * (k @ k)


@dataclass(frozen=True)
class ChainJoint:
    name: str
    kind: str                 # fixed | revolute | continuous | prismatic
    origin: np.ndarray        # 4x4: child joint frame in the parent link frame at q = 0
    axis: np.ndarray          # unit axis in the joint frame
    lower: float = -np.inf
    upper: float = np.inf


def _floats(text: str | None, n: int, default: float, what: str) -> np.ndarray:
    if text is None:
        return np.full(n, default)
    try:
        v = np.array([float(x) for x in text.split()])
    except ValueError:
        raise ValueError(f"{what}: {text!r} is not {n} numbers") from None
    if v.shape != (n,) or not np.isfinite(v).all():
        raise ValueError(f"{what}: {text!r} is not {n} finite numbers")
    return v


class UrdfChain:
    """The joints from ``base_link`` to ``tip_link`` of a URDF, in order."""

    def __init__(self, joints: list[ChainJoint], base_link: str, tip_link: str):
        self.joints = joints
        self.base_link, self.tip_link = base_link, tip_link
        self.joint_names = tuple(j.name for j in joints if j.kind in MOVABLE)

    @classmethod
    def from_urdf(cls, urdf: str, base_link: str, tip_link: str) -> "UrdfChain":
        try:
            root = ET.fromstring(urdf)
        except ET.ParseError as exc:
            raise ValueError(f"robot description is not valid XML: {exc}") from None
        if root.tag != "robot":
            raise ValueError(f"robot description: the root element is <{root.tag}>, not <robot>")
        links = {el.get("name") for el in root.findall("link")}
        for name, what in ((base_link, "base link"), (tip_link, "TCP link")):
            if name not in links:
                raise ValueError(f"{what} {name!r} is not a link of robot {root.get('name')!r}")
        by_child = {}
        for el in root.findall("joint"):
            child = el.find("child")
            if child is not None:
                by_child[child.get("link")] = el
        chain, link = [], tip_link
        while link != base_link:
            el = by_child.get(link)
            if el is None:
                raise ValueError(f"TCP link {tip_link!r} does not hang below base link {base_link!r}")
            chain.append(cls._joint(el))
            link = el.find("parent").get("link")
            if len(chain) > len(by_child):
                raise ValueError("robot description: the joints form a loop")
        return cls(chain[::-1], base_link, tip_link)

    @staticmethod
    def _joint(el: ET.Element) -> ChainJoint:
        name, kind = el.get("name"), el.get("type")
        if kind not in ("fixed", *MOVABLE):
            raise ValueError(f"joint {name!r}: type {kind!r} is not supported in a serial chain")
        if el.find("mimic") is not None:
            raise ValueError(f"joint {name!r}: mimic joints are not supported")
        origin = el.find("origin")
        xyz = _floats(None if origin is None else origin.get("xyz"), 3, 0.0, f"joint {name!r} origin xyz")
        rpy = _floats(None if origin is None else origin.get("rpy"), 3, 0.0, f"joint {name!r} origin rpy")
        axis_el = el.find("axis")
        axis = _floats(None if axis_el is None else axis_el.get("xyz"), 3, 0.0, f"joint {name!r} axis") \
            if axis_el is not None else np.array([1.0, 0.0, 0.0])
        if kind in MOVABLE:
            n = float(np.linalg.norm(axis))
            if n < 1e-9:
                raise ValueError(f"joint {name!r}: zero axis")
            axis = axis / n
        t = np.eye(4)
        t[:3, :3], t[:3, 3] = rpy_matrix(*rpy), xyz
        limit = el.find("limit")
        lower = float(limit.get("lower", "-inf")) if limit is not None and kind != "continuous" else -np.inf
        upper = float(limit.get("upper", "inf")) if limit is not None and kind != "continuous" else np.inf
        return ChainJoint(name, kind, t, axis, lower, upper)

    def transform(self, q) -> np.ndarray:
        """4x4 pose of the TCP link in the base link for joint positions ``q`` (in
        ``joint_names`` order)."""
        q = np.asarray(q, float)
        if q.shape != (len(self.joint_names),):
            raise ValueError(f"{len(self.joint_names)} joint positions needed, got {q.shape}")
        t, i = np.eye(4), 0
        for j in self.joints:
            t = t @ j.origin
            if j.kind in ("revolute", "continuous"):
                m = np.eye(4)
                m[:3, :3] = axis_matrix(j.axis, q[i])
                t, i = t @ m, i + 1
            elif j.kind == "prismatic":
                m = np.eye(4)
                m[:3, 3] = j.axis * q[i]
                t, i = t @ m, i + 1
        return t

    def pose(self, q) -> tuple[np.ndarray, np.ndarray]:
        """(position, quaternion x, y, z, w) of the TCP link in the base link."""
        t = self.transform(q)
        return t[:3, 3].copy(), matrix_to_quat_one(t[:3, :3])
