"""Cartesian impedance control of a torque-controlled arm in MuJoCo, at the physics rate (no ROS).

What a compliance controller on a real arm computes every millisecond (Franka's
``cartesian_impedance_example_controller``, the FZI ``cartesian_compliance_controller``):

    tau = J^T F + N^T tau_null + tau_limits + c(q, q̇) + g(q)
    F   = [K_t (p* - p) - D_t v ;  K_r log(R* R^T) - D_r ω]       (world frame, about the TCP)

* The damping follows the arm's configuration: each axis i is damped with ratio ``damping_ratio``
  for its apparent inertia ``m_i = 1 / (J M^-1 J^T)_ii`` (the mass or inertia the TCP shows
  along that axis), as impedance controllers with a configuration-dependent damping design do.

* ``F`` is a spring-damper between the TCP and its target, saturated at ``max_force`` /
  ``max_moment`` (the target is held within reach: a far target pulls with the saturated
  wrench, not with an unbounded one). The static contact force is ``K_t`` times how far the
  target lies inside a surface, exactly as with the floating tool's coupling.
* ``tau_null`` pulls the joints towards a rest posture in the dynamically consistent nullspace
  ``N = I - J^T Λ J M^-1`` of the task (``Λ = (J M^-1 J^T + λ² I)^-1``: damped near a
  singularity).
* ``tau_limits``: a spring pushing a joint back inside its position range (``limit_margin``
  before the hard stop) and a damper on any joint faster than its velocity limit.
* ``c + g`` is MuJoCo's ``qfrc_bias`` (Coriolis, centrifugal and gravity, the tool included:
  payload compensation).
* The result is clipped to each joint's torque limit (the actuator's ``ctrlrange``).

Every step reports in :class:`ControlStatus`: saturated wrench, saturated joint torques,
joints at a limit, and steps near a singularity (smallest singular value of ``J`` below
``singular_sigma``). A non-finite result (it should not happen; a target is checked before it
is accepted) is never applied: the step outputs the clipped bias torque only, and is counted.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Dict, Sequence

import numpy as np


@dataclass(frozen=True)
class ArmControlConfig:
    """Gains and limits of :class:`CartesianImpedanceController` (task stiffness comes from the scene)."""

    damping_ratio: float = 1.0           # ζ of each Cartesian axis: D_i = 2 ζ sqrt(K_i m_i), m_i its apparent inertia
    max_force: float = 60.0              # N; saturation of the translational spring-damper force
    max_moment: float = 6.0              # N·m; saturation of the rotational one
    null_stiffness: float = 10.0         # N·m/rad; posture spring in the nullspace
    null_damping: float = 2.0            # N·m·s/rad
    limit_margin: float = 0.12           # rad; the limit spring starts this far from a hard stop
    limit_stiffness: float = 80.0        # N·m/rad
    velocity_limits: Sequence[float] = (2.175, 2.175, 2.175, 2.175, 2.61, 2.61, 2.61)  # rad/s, Panda datasheet
    velocity_damping: float = 10.0       # N·m·s/rad beyond the velocity limit
    singular_damping: float = 0.05       # λ of the damped Λ (m, rad units of J)
    singular_sigma: float = 0.04         # smallest singular value of J under which a step is "near singular"


@dataclass
class ControlStatus:
    """Counters (physics steps) since the last reset, and the state of the latest step."""

    steps: int = 0
    wrench_saturated: int = 0
    torque_saturated: int = 0
    joint_limit: int = 0
    velocity_limit: int = 0
    near_singular: int = 0
    nonfinite: int = 0
    min_sigma: float = float("inf")

    def as_dict(self) -> Dict:
        return dataclasses.asdict(self)


def _rotvec_error(R_target: np.ndarray, R: np.ndarray) -> np.ndarray:
    """Rotation vector of ``R_target R^T`` (world frame): the rotation taking R to the target."""
    E = R_target @ R.T
    c = float(np.clip(0.5 * (np.trace(E) - 1.0), -1.0, 1.0))
    v = 0.5 * np.array([E[2, 1] - E[1, 2], E[0, 2] - E[2, 0], E[1, 0] - E[0, 1]])
    s = float(np.linalg.norm(v))
    ang = float(np.arctan2(s, c))
    if s < 1e-9:
        if c > 0:                                # no rotation
            return v
        # 180°: axis from the symmetric part
        B = 0.5 * (E + np.eye(3))
        k = int(np.argmax(np.diag(B)))
        axis = B[:, k] / np.sqrt(max(B[k, k], 1e-12))
        return np.pi * axis / np.linalg.norm(axis)
    return v * (ang / s)


class CartesianImpedanceController:
    """One arm's controller: joints ``joint_names`` (consecutive degrees of freedom, driven by the
    torque actuators ``actuator_names``), TCP site ``site``. Call :meth:`compute` after
    ``mj_step1`` (kinematics, mass matrix and bias forces current), write the result to
    ``data.ctrl[self.act]``, then ``mj_step2``.

    The hot path is a few MuJoCo calls (``mj_jacSite``, ``mj_solveM``, ``mju_cholFactor``) and
    small numpy operations on preallocated arrays: it runs at the physics rate in Python."""

    def __init__(self, model, site: str, joint_names: Sequence[str], actuator_names: Sequence[str],
                 kp: float, kr: float, q_rest: np.ndarray, cfg: ArmControlConfig = ArmControlConfig()):
        import mujoco

        self._mj = mujoco
        self.cfg = cfg
        obj = mujoco.mjtObj
        self.site = mujoco.mj_name2id(model, obj.mjOBJ_SITE, site)
        jids = [mujoco.mj_name2id(model, obj.mjOBJ_JOINT, j) for j in joint_names]
        if self.site < 0 or min(jids) < 0:
            raise ValueError(f"CartesianImpedanceController: site {site!r} or joints {list(joint_names)} not in the model")
        self.dof = np.array([model.jnt_dofadr[j] for j in jids])
        self.qadr = np.array([model.jnt_qposadr[j] for j in jids])
        n = len(jids)
        if not (np.all(np.diff(self.dof) == 1) and np.all(np.diff(self.qadr) == 1)):
            raise ValueError("CartesianImpedanceController: the joints must be consecutive hinge joints")
        self._d = slice(int(self.dof[0]), int(self.dof[0]) + n)
        self._q = slice(int(self.qadr[0]), int(self.qadr[0]) + n)
        self.act = np.array([mujoco.mj_name2id(model, obj.mjOBJ_ACTUATOR, a) for a in actuator_names])
        if len(self.act) != n or self.act.min() < 0:
            raise ValueError(f"CartesianImpedanceController: actuators {list(actuator_names)} not in the model")
        if len(cfg.velocity_limits) != n:
            raise ValueError(f"ArmControlConfig.velocity_limits: {len(cfg.velocity_limits)} values for {n} joints")
        self.tau_max = np.abs(model.actuator_ctrlrange[self.act]).min(axis=1)
        self.q_lo = model.jnt_range[jids, 0].copy()
        self.q_hi = model.jnt_range[jids, 1].copy()
        self._soft_lo = self.q_lo + cfg.limit_margin
        self._soft_hi = self.q_hi - cfg.limit_margin
        self.v_max = np.asarray(cfg.velocity_limits, float)
        self.q_rest = np.asarray(q_rest, float).reshape(n)
        self.kp = float(kp)
        self.kr = float(kr)
        self._K = np.array([self.kp] * 3 + [self.kr] * 3)
        self._2zsqrtK = 2.0 * cfg.damping_ratio * np.sqrt(self._K)
        self._Jfull = np.zeros((6, model.nv))
        self._MinvJT = np.zeros((6, model.nv))
        self._vec = np.zeros((1, model.nv))
        self._Minv_vec = np.zeros((1, model.nv))
        self._A = np.zeros((6, 6))
        self._x = np.zeros(6)
        self._lam2 = cfg.singular_damping ** 2 * np.eye(6)
        self._quat = np.zeros(4)
        self._err_r = np.zeros(3)
        self._e = np.zeros(6)
        self.status = ControlStatus()
        self.tau = np.zeros(n)

    def reset_status(self) -> None:
        self.status = ControlStatus()

    def compute(self, model, data, target_pos: np.ndarray, target_quat_wxyz: np.ndarray) -> np.ndarray:
        """Joint torques (n,) for the TCP target (world position; unit quaternion w, x, y, z)."""
        mj, cfg, st = self._mj, self.cfg, self.status
        d, Jf = self._d, self._Jfull
        mj.mj_jacSite(model, data, Jf[:3], Jf[3:], self.site)
        J = Jf[:, d]
        q = data.qpos[self._q]
        qd = data.qvel[d]
        # pose error: position, and the rotation taking the TCP to the target (world frame)
        R = data.site_xmat[self.site]
        mj.mju_mat2Quat(self._quat, R)
        mj.mju_subQuat(self._err_r, target_quat_wxyz, self._quat)          # in the TCP frame
        e = self._e
        np.subtract(target_pos, data.site_xpos[self.site], out=e[:3])
        np.matmul(R.reshape(3, 3), self._err_r, out=e[3:])
        # Λ^-1 = J M^-1 J^T (+ λ² I: damped near a singularity); its diagonal gives the apparent inertias
        mj.mj_solveM(model, data, self._MinvJT, Jf)
        A = self._A
        np.matmul(Jf, self._MinvJT.T, out=A)
        A += self._lam2
        F = self._K * e - (self._2zsqrtK / np.sqrt(np.diagonal(A))) * (J @ qd)
        f2, m2 = float(F[:3] @ F[:3]), float(F[3:] @ F[3:])
        wrench_sat = f2 > cfg.max_force ** 2 or m2 > cfg.max_moment ** 2
        if wrench_sat:
            if f2 > cfg.max_force ** 2:
                F[:3] *= cfg.max_force / np.sqrt(f2)
            if m2 > cfg.max_moment ** 2:
                F[3:] *= cfg.max_moment / np.sqrt(m2)
        tau = J.T @ F
        # posture torque projected into the dynamically consistent nullspace:
        # N tau0 = tau0 - J^T Λ J M^-1 tau0
        tau0 = cfg.null_stiffness * (self.q_rest - q) - cfg.null_damping * qd
        self._vec[0, d] = tau0
        mj.mj_solveM(model, data, self._Minv_vec, self._vec)
        y = Jf @ self._Minv_vec[0]
        mj.mju_cholFactor(A, 0.0)
        mj.mju_cholSolve(self._x, A, y)
        tau += tau0 - J.T @ self._x
        # joint position limits (a spring inside the margin) and velocity limits (a damper beyond);
        # the common case, no joint near a limit, costs two comparisons
        below, above = self._soft_lo - q, q - self._soft_hi
        at_limit = bool(below.max() > 0.0 or above.max() > 0.0)
        if at_limit:
            tau += cfg.limit_stiffness * (np.maximum(below, 0.0) - np.maximum(above, 0.0))
        fast = bool((np.abs(qd) > self.v_max).any())
        if fast:
            tau += cfg.velocity_damping * (np.maximum(-qd - self.v_max, 0.0) - np.maximum(qd - self.v_max, 0.0))
        tau += data.qfrc_bias[d]
        # near a singularity: the smallest singular value of J
        sigma = float(np.sqrt(max(np.linalg.eigvalsh(J @ J.T)[0], 0.0)))
        if not np.isfinite(float(tau.sum())):
            st.nonfinite += 1
            tau = np.nan_to_num(data.qfrc_bias[d], nan=0.0, posinf=0.0, neginf=0.0)
        saturated = bool((np.abs(tau) > self.tau_max).any())
        clipped = np.clip(tau, -self.tau_max, self.tau_max) if saturated else tau
        st.steps += 1
        st.wrench_saturated += wrench_sat
        st.torque_saturated += saturated
        st.joint_limit += at_limit
        st.velocity_limit += fast
        st.near_singular += sigma < cfg.singular_sigma
        st.min_sigma = min(st.min_sigma, sigma)
        self.tau = clipped
        return clipped
