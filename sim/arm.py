"""The arm embodiment: Franka Panda arms in the task scenes, and their inverse kinematics.

The Panda model (``sim/assets/panda``: kinematics, joint ranges, torque limits, inertials and
collision meshes) is robosuite 1.5.2's, MIT-licensed, shipped inside this package (see
``sim/assets/panda/SOURCE.md``): nothing is downloaded at run time. Each arm's names get the
arm's prefix (``arm_joint1`` ... ``arm_joint7``, ``arm_torq_j1`` ...); the link geoms are
visual only (the pad is the only thing of the arm that touches the world: no arm-table or
self collisions are modelled). The tool hangs at the flange: a body welded to link 7,
``FLANGE_OFFSET`` beyond its origin (Panda's flange), the TCP ``TOOL_LENGTH`` along the
flange axis, which points down (the tool's -z) at the identity TCP orientation. A ``force``/``torque`` sensor pair at
the flange (site ``<arm>_ft``) is the wrist F/T sensor.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from functools import lru_cache
from pathlib import Path
from typing import Sequence, Tuple

import numpy as np

PANDA_DIR = Path(__file__).resolve().parent / "assets" / "panda"
N_JOINTS = 7
FLANGE_OFFSET = 0.107      # m: Panda's flange beyond the link 7 frame
TOOL_LENGTH = 0.10         # m: flange to the pad face (F/T sensor, adaptor, pad holder)
#: Where each task's arms stand: base position (world, m) and yaw (rad). The tools hang below
#: the flanges (the flange pointing down). Wipe: one arm behind the table's -x edge, the path
#: 0.45-0.75 m in front of its base. Lift: one arm on each side of the box, facing it, 0.15 m
#: below the table top: level with it (z 0) the lift expert failed 3 of 20 perturbed seeds
#: (a sliding box dragged the paddles in through the arm's coupled inertia and the slip was
#: caught late); 0.15 m lower or higher, 20 of 20, and lower gives the plainer rest posture.
ARM_BASES = {
    "wipe": {"arm": ((-0.6, 0.0, 0.0), 0.0)},
    "lift": {"left": ((0.0, 0.6, -0.15), -np.pi / 2), "right": ((0.0, -0.6, -0.15), np.pi / 2)},
}
def base_quat_wxyz(yaw: float) -> np.ndarray:
    """Orientation (w, x, y, z) of an arm base turned ``yaw`` (rad) about the world z axis."""
    return np.array([np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)])


#: Panda's "ready" posture: the start of the IK for a task's home pose.
READY_Q = (0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785)


def joint_names(arm: str) -> Tuple[str, ...]:
    return tuple(f"{arm}_joint{i + 1}" for i in range(N_JOINTS))


def actuator_names(arm: str) -> Tuple[str, ...]:
    return tuple(f"{arm}_torq_j{i + 1}" for i in range(N_JOINTS))


@lru_cache(maxsize=1)
def _panda_tree() -> ET.Element:
    return ET.parse(PANDA_DIR / "panda.xml").getroot()


def panda_assets() -> str:
    """The mesh assets of the arm (once per scene, shared by every arm): absolute file paths."""
    out = []
    for mesh in _panda_tree().find("asset").iter("mesh"):
        out.append(f'<mesh name="panda_{mesh.get("name")}" file="{(PANDA_DIR / mesh.get("file")).as_posix()}"/>')
    return "\n    ".join(out)


def panda_body(arm: str, base_pos: Sequence[float], base_quat_wxyz: Sequence[float], tool_xml: str,
               rgba: str = "0.92 0.92 0.94 1") -> str:
    """The arm ``arm`` (its base at ``base_pos`` / ``base_quat_wxyz`` in the world) with
    ``tool_xml`` (a body) mounted at the flange."""
    root = _panda_tree()
    base = root.find("worldbody/body")
    base = ET.fromstring(ET.tostring(base))            # a copy to rename
    for el in base.iter():
        if el.tag in ("body", "joint", "geom") and el.get("name"):
            el.set("name", f"{arm}_{el.get('name')}")
        if el.tag == "geom":
            el.set("mesh", f"panda_{el.get('mesh')}")
            el.set("contype", "0")
            el.set("conaffinity", "0")
            el.set("rgba", rgba)
    base.set("pos", " ".join(f"{float(x):.6g}" for x in base_pos))
    base.set("quat", " ".join(f"{float(x):.6g}" for x in base_quat_wxyz))
    link7 = next(b for b in base.iter("body") if b.get("name") == f"{arm}_link7")
    hand = link7.find("body")                           # robosuite's gripper mount: replaced by the tool
    if hand is not None:
        link7.remove(hand)
    link7.append(ET.fromstring(tool_xml))
    return ET.tostring(base, encoding="unicode")


def panda_actuators(arm: str) -> str:
    out = []
    for mot in _panda_tree().find("actuator").iter("motor"):
        a = dict(mot.attrib)
        a["name"] = f"{arm}_{a['name']}"
        a["joint"] = f"{arm}_{a['joint']}"
        out.append("<motor " + " ".join(f'{k}="{v}"' for k, v in a.items()) + "/>")
    return "\n    ".join(out)


def quat_z_to(n: np.ndarray) -> np.ndarray:
    """Quaternion (w, x, y, z) of the smallest rotation R with ``R @ n = e_z``: the orientation
    of a tool frame, seen from the flange, whose pad normal ``n`` is the flange z axis."""
    import mujoco

    n = np.asarray(n, float) / np.linalg.norm(n)
    ez = np.array([0.0, 0.0, 1.0])
    axis = np.cross(n, ez)
    s, c = float(np.linalg.norm(axis)), float(np.dot(n, ez))
    if s < 1e-9:
        return np.array([1.0, 0, 0, 0]) if c > 0 else np.array([0.0, 1.0, 0, 0])   # 180° about x
    q = np.zeros(4)
    mujoco.mju_axisAngle2Quat(q, axis / s, float(np.arctan2(s, c)))
    return q


def solve_ik(model, data, site: int, qadr: np.ndarray, dof: np.ndarray, pos: np.ndarray, mat: np.ndarray,
             q0: Sequence[float], q_lo: np.ndarray, q_hi: np.ndarray, iters: int = 300,
             tol: float = 1e-5) -> Tuple[np.ndarray, float]:
    """Damped least-squares IK of ``site`` to (``pos``, ``mat``) from ``q0`` within the joint
    ranges, with a secondary pull towards the middle of each range; ``data`` is scratch (its
    qpos is overwritten). Returns (q, residual norm)."""
    import mujoco

    from .arm_control import _rotvec_error

    q = np.asarray(q0, float).copy()
    mid, half = 0.5 * (q_lo + q_hi), 0.5 * (q_hi - q_lo)
    jp, jr = np.zeros((3, model.nv)), np.zeros((3, model.nv))
    err = np.inf
    for _ in range(iters):
        data.qpos[qadr] = q
        mujoco.mj_kinematics(model, data)
        mujoco.mj_comPos(model, data)
        e = np.concatenate([pos - data.site_xpos[site], _rotvec_error(mat, data.site_xmat[site].reshape(3, 3))])
        err = float(np.linalg.norm(e))
        if err < tol:
            break
        mujoco.mj_jacSite(model, data, jp, jr, site)
        J = np.vstack([jp[:, dof], jr[:, dof]])
        Jinv = J.T @ np.linalg.inv(J @ J.T + 1e-4 * np.eye(6))
        dq = Jinv @ e + 0.05 * (np.eye(len(q)) - Jinv @ J) @ ((mid - q) / half)
        q = np.clip(q + dq, q_lo, q_hi)
    return q, err


def solve_ik_multi(model, data, site: int, qadr: np.ndarray, dof: np.ndarray, pos: np.ndarray,
                   mat: np.ndarray, q_lo: np.ndarray, q_hi: np.ndarray, seeds: int = 12,
                   tol: float = 1e-4, min_margin: float = 0.15) -> Tuple[np.ndarray, float]:
    """:func:`solve_ik` from ``READY_Q`` and ``seeds`` fixed, spread starts (deterministic): of
    the solutions within ``tol`` that stay ``min_margin`` (rad) inside every joint range, the
    one closest to ``READY_Q``; else the one with the smallest residual."""
    rng = np.random.default_rng(0)
    starts = [np.clip(np.asarray(READY_Q), q_lo, q_hi)]
    starts += [rng.uniform(q_lo + 0.2 * (q_hi - q_lo), q_hi - 0.2 * (q_hi - q_lo)) for _ in range(seeds)]
    best, best_key = None, None
    for s in starts:
        q, err = solve_ik(model, data, site, qadr, dof, pos, mat, s, q_lo, q_hi)
        margin = float(np.min(np.minimum(q - q_lo, q_hi - q)))
        key = (err >= tol, margin < min_margin, float(np.linalg.norm(q - starts[0])) if err < tol else err)
        if best_key is None or key < best_key:
            best, best_key = (q, err), key
    return best
