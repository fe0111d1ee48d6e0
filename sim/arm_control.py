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
from typing import Dict, Optional, Sequence

import numpy as np


#: ``ControlStatus.min_sigma`` is the smallest singular value of J seen, to this relative tolerance
MIN_SIGMA_RTOL = 1e-3


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
    min_sigma: float = float("inf")     # smallest singular value of J so far (to MIN_SIGMA_RTOL)

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
    ``data.ctrl[self.act]``, then ``mj_step2``. Several arms of one model are computed together,
    with fewer calls, by :class:`ImpedanceGroup` (what :class:`sim.env.SimEnv` runs); ``compute``
    is a group of one."""

    def __init__(self, model, site: str, joint_names: Sequence[str], actuator_names: Sequence[str],
                 kp: float, kr: float, q_rest: np.ndarray, cfg: ArmControlConfig = ArmControlConfig()):
        import mujoco

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
        self.act = np.array([mujoco.mj_name2id(model, obj.mjOBJ_ACTUATOR, a) for a in actuator_names])
        if len(self.act) != n or self.act.min() < 0:
            raise ValueError(f"CartesianImpedanceController: actuators {list(actuator_names)} not in the model")
        if len(cfg.velocity_limits) != n:
            raise ValueError(f"ArmControlConfig.velocity_limits: {len(cfg.velocity_limits)} values for {n} joints")
        self.tau_max = np.abs(model.actuator_ctrlrange[self.act]).min(axis=1)
        self.q_lo = model.jnt_range[jids, 0].copy()
        self.q_hi = model.jnt_range[jids, 1].copy()
        self.v_max = np.asarray(cfg.velocity_limits, float)
        self.q_rest = np.asarray(q_rest, float).reshape(n)
        self.kp = float(kp)
        self.kr = float(kr)
        self.status = ControlStatus()
        self.tau = np.zeros(n)
        self._dsl = slice(int(self.dof[0]), int(self.dof[0]) + n)
        self._solo: Optional["ImpedanceGroup"] = None

    def reset_status(self) -> None:
        self.status = ControlStatus()

    def compute(self, model, data, target_pos: np.ndarray, target_quat_wxyz: np.ndarray) -> np.ndarray:
        """Joint torques (n,) for the TCP target (world position; unit quaternion w, x, y, z)."""
        if self._solo is None or self._solo.model is not model:
            self._solo = ImpedanceGroup(model, [self])
        return self._solo.compute(data, [(target_pos, target_quat_wxyz)]).copy()


def _span(idx: np.ndarray) -> Optional[slice]:
    """``idx`` as a slice when it is a run of consecutive indices (then a view replaces a gather)."""
    idx = np.asarray(idx)
    if idx.size and np.array_equal(idx, np.arange(idx[0], idx[0] + idx.size)):
        return slice(int(idx[0]), int(idx[0]) + idx.size)
    return None


class ImpedanceGroup:
    """The controllers of the arms of one model, evaluated together every physics step: the
    arms' Jacobians stacked, one ``mj_solveM``, one ``J M^-1 J^T`` (block diagonal: the arms are
    separate kinematic trees) and its one Cholesky factor, and each elementwise step done for all
    arms at once on preallocated arrays. Python call overhead, not arithmetic, is the cost of a
    7-joint controller at 1 kHz; the torques are :class:`CartesianImpedanceController`'s law.

    The smallest singular value of each arm's ``J`` (a diagnostic: ``near_singular`` and
    ``min_sigma``) is computed with ``eigvalsh`` only on a step where it could matter: a
    Cholesky factorisation of ``J J^T - t² (1 + 1e-6) I``, ``t = max(min_sigma (1 -
    MIN_SIGMA_RTOL), singular_sigma)``, succeeding proves ``σ_min > t``, so the step is not near
    singular (that counter is exact) and ``min_sigma`` is the episode's minimum to within
    ``MIN_SIGMA_RTOL`` (0.1 %: exactly, it needed eigvalsh on 47 % of a lift episode's steps, as
    σ falls a little at nearly every step of the approach); else the exact value is computed."""

    def __init__(self, model, ctls: Sequence[CartesianImpedanceController]):
        import mujoco

        self._mj = mujoco
        self.model = model
        self.ctls = list(ctls)
        na, nv = len(self.ctls), model.nv
        r = 6 * na
        self._Jf = np.zeros((r, nv))
        self._MinvJT = np.zeros((r, nv))
        self._A = np.zeros((r, r))
        self._B = np.zeros((r, r))
        self._A_diag = self._A.reshape(-1)[::r + 1]
        self._B_diag = self._B.reshape(-1)[::r + 1]
        self._lam2 = np.concatenate([np.full(6, c.cfg.singular_damping ** 2) for c in self.ctls])
        K = np.concatenate([[c.kp] * 3 + [c.kr] * 3 for c in self.ctls]).astype(float)
        self._K = K
        self._2zsqrtK = np.concatenate([2.0 * c.cfg.damping_ratio * np.sqrt(K[6 * i:6 * i + 6])
                                        for i, c in enumerate(self.ctls)])
        self._e, self._v, self._F, self._x, self._y, self._t6 = (np.zeros(r) for _ in range(6))
        self._sig2 = np.zeros(r)
        self._sig_t = [None] * na
        # per-arm rows of the stacked arrays
        self._rows = []
        for i, c in enumerate(self.ctls):
            o = 6 * i
            self._rows.append((c.site, self._Jf[o:o + 3], self._Jf[o + 3:o + 6], np.zeros(4), np.zeros(3),
                               self._e[o:o + 3], self._e[o + 3:o + 6]))
        self._fmax = [(c.cfg.max_force, c.cfg.max_force ** 2, c.cfg.max_moment, c.cfg.max_moment ** 2) for c in self.ctls]
        # joint-space arrays: the arms' joints concatenated
        cat = np.concatenate
        self._dof = cat([c.dof for c in self.ctls])
        self._qadr = cat([c.qadr for c in self.ctls])
        self._act = cat([c.act for c in self.ctls])
        n = self._dof.size
        self._jsl = []
        o = 0
        for c in self.ctls:
            self._jsl.append(slice(o, o + c.dof.size))
            o += c.dof.size
        self._ks = cat([np.full(c.dof.size, c.cfg.null_stiffness) for c in self.ctls])
        self._kd = cat([np.full(c.dof.size, c.cfg.null_damping) for c in self.ctls])
        self._q_rest = cat([c.q_rest for c in self.ctls])
        self._soft_lo = cat([c.q_lo + c.cfg.limit_margin for c in self.ctls])
        self._soft_hi = cat([c.q_hi - c.cfg.limit_margin for c in self.ctls])
        self._v_max = cat([c.v_max for c in self.ctls])
        self._tau_max = cat([c.tau_max for c in self.ctls])
        self._dspan, self._qspan, self._aspan = _span(self._dof), _span(self._qadr), _span(self._act)
        self._vec = np.zeros(nv)                      # the posture torque, on the arms' dofs
        self._tau0 = self._vec[self._dspan] if self._dspan else np.zeros(n)
        self._tau = np.zeros(n)
        self._tau_arm = [self._tau[s] for s in self._jsl]
        self._jt = []
        for i, (c, s) in enumerate(zip(self.ctls, self._jsl)):
            tf = np.zeros(nv)
            self._jt.append((self._Jf[6 * i:6 * i + 6], self._F[6 * i:6 * i + 6], tf, tf[c._dsl], self._tau0[s],
                             self._tau_arm[i]))
        self._w = np.zeros(n)
        self._z = np.zeros(3 * n)
        self._z_lo, self._z_hi, self._z_v = self._z[:n], self._z[n:2 * n], self._z[2 * n:]
        self._q_buf, self._qd_buf, self._bias_buf = np.zeros(n), np.zeros(n), np.zeros(n)
        self._data = None

    def _bind(self, data) -> None:
        """Views of ``data``'s arrays that the step reads (MjData's arrays never move)."""
        self._data = data
        self._xpos = [data.site_xpos[c.site] for c in self.ctls]
        self._xmat = [data.site_xmat[c.site] for c in self.ctls]
        self._xmat33 = [x.reshape(3, 3) for x in self._xmat]
        self._qvel = data.qvel
        self._q_view = data.qpos[self._qspan] if self._qspan else None
        self._qd_view = data.qvel[self._dspan] if self._dspan else None
        self._bias_view = data.qfrc_bias[self._dspan] if self._dspan else None
        self._ctrl_view = data.ctrl[self._aspan] if self._aspan else None

    def targets(self, data, mocap_ids: Sequence[int]):
        """Each arm's target as views of the mocap bodies ``mocap_ids`` (read at every step)."""
        return [(data.mocap_pos[i], data.mocap_quat[i]) for i in mocap_ids]

    def compute(self, data, targets, write_ctrl: bool = False) -> np.ndarray:
        """Every arm's joint torques (the arms' joints concatenated; a buffer reused at the next
        call) for ``targets``: one (position, quaternion w x y z) per arm. ``write_ctrl``: also
        into ``data.ctrl``."""
        mj, model = self._mj, self.model
        if data is not self._data:
            self._bind(data)
        # Jacobians and pose errors: position, and the rotation taking the TCP to the target (world)
        for (site, jp, jr, quat, err_r, e_p, e_r), (tp, tq), xpos, xmat, R in zip(
                self._rows, targets, self._xpos, self._xmat, self._xmat33):
            mj.mj_jacSite(model, data, jp, jr, site)
            mj.mju_mat2Quat(quat, xmat)
            mj.mju_subQuat(err_r, tq, quat)                                   # in the TCP frame
            np.subtract(tp, xpos, out=e_p)
            mj.mju_mulMatVec(e_r, R, err_r)
        Jf, MinvJT, A, F, t6, v = self._Jf, self._MinvJT, self._A, self._F, self._t6, self._v
        # Λ^-1 = J M^-1 J^T (+ λ² I: damped near a singularity); its diagonal gives the apparent inertias
        mj.mj_solveM(model, data, MinvJT, Jf)
        mj.mju_mulMatMatT(A, Jf, MinvJT)
        self._A_diag += self._lam2
        np.sqrt(self._A_diag, out=t6)
        np.divide(self._2zsqrtK, t6, out=t6)
        mj.mju_mulMatVec(v, Jf, self._qvel)                                    # TCP twist J q̇
        t6 *= v
        np.multiply(self._K, self._e, out=F)
        F -= t6
        Fl = F.tolist()
        wsat = []
        for i, (fmax, fmax2, mmax, mmax2) in enumerate(self._fmax):
            o = 6 * i
            f2 = Fl[o] * Fl[o] + Fl[o + 1] * Fl[o + 1] + Fl[o + 2] * Fl[o + 2]
            m2 = Fl[o + 3] * Fl[o + 3] + Fl[o + 4] * Fl[o + 4] + Fl[o + 5] * Fl[o + 5]
            sat = f2 > fmax2 or m2 > mmax2
            if sat:
                if f2 > fmax2:
                    F[o:o + 3] *= fmax / np.sqrt(f2)
                if m2 > mmax2:
                    F[o + 3:o + 6] *= mmax / np.sqrt(m2)
            wsat.append(sat)
        # joint state
        if self._q_view is not None:
            q, qd, bias = self._q_view, self._qd_view, self._bias_view
        else:
            q = np.take(data.qpos, self._qadr, out=self._q_buf)
            qd = np.take(data.qvel, self._dof, out=self._qd_buf)
            bias = np.take(data.qfrc_bias, self._dof, out=self._bias_buf)
        # posture torque projected into the dynamically consistent nullspace:
        # tau = J^T F + N tau0 = J^T (F - Λ J M^-1 tau0) + tau0
        tau0 = self._tau0
        np.subtract(self._q_rest, q, out=tau0)
        tau0 *= self._ks
        np.multiply(self._kd, qd, out=self._w)
        tau0 -= self._w
        if self._dspan is None:
            self._vec[self._dof] = tau0
        mj.mju_mulMatVec(self._y, MinvJT, self._vec)                         # J M^-1 tau0 (M symmetric)
        mj.mju_cholFactor(A, 0.0)
        mj.mju_cholSolve(self._x, A, self._y)
        F -= self._x
        tau = self._tau
        for Ja, Fa, tf, tf_arm, t0, ta in self._jt:     # J^T per arm: a NaN stays in its arm
            mj.mju_mulMatTVec(tf, Ja, Fa)
            np.add(tf_arm, t0, out=ta)
        # joint position limits (a spring inside the margin) and velocity limits (a damper beyond);
        # one comparison for all arms' joints in the common case, no joint near a limit
        np.subtract(self._soft_lo, q, out=self._z_lo)
        np.subtract(q, self._soft_hi, out=self._z_hi)
        np.abs(qd, out=self._z_v)
        self._z_v -= self._v_max
        if self._z.max() > 0.0:
            for c, s in zip(self.ctls, self._jsl):
                cfg, ta = c.cfg, tau[s]
                below, above = self._z_lo[s], self._z_hi[s]
                at_limit = bool(below.max() > 0.0 or above.max() > 0.0)
                if at_limit:
                    ta += cfg.limit_stiffness * (np.maximum(below, 0.0) - np.maximum(above, 0.0))
                qa, vm = qd[s], self._v_max[s]
                fast = bool((np.abs(qa) > vm).any())
                if fast:
                    ta += cfg.velocity_damping * (np.maximum(-qa - vm, 0.0) - np.maximum(qa - vm, 0.0))
                c.status.joint_limit += at_limit
                c.status.velocity_limit += fast
        tau += bias
        # near a singularity: the smallest singular value of each arm's J, where it can change a counter
        if self._sigma_check():
            for i, c in enumerate(self.ctls):
                J = Jf[6 * i:6 * i + 6, c._dsl]
                sigma = float(np.sqrt(max(np.linalg.eigvalsh(J @ J.T)[0], 0.0)))
                c.status.near_singular += sigma < c.cfg.singular_sigma
                c.status.min_sigma = min(c.status.min_sigma, sigma)
        # a non-finite result is never applied (the bias torque only); torques clipped to the limits.
        # The common case, neither, is one comparison for all arms
        np.abs(tau, out=self._w)
        self._w -= self._tau_max
        if not self._w.max() <= 0.0:
            for c, s in zip(self.ctls, self._jsl):
                ta = tau[s]
                if not np.isfinite(float(ta.sum())):
                    c.status.nonfinite += 1
                    ta[:] = np.nan_to_num(bias[s], nan=0.0, posinf=0.0, neginf=0.0)
                tm = self._tau_max[s]
                if bool((np.abs(ta) > tm).any()):
                    np.clip(ta, -tm, tm, out=ta)
                    c.status.torque_saturated += 1
        for c, sat, ta in zip(self.ctls, wsat, self._tau_arm):
            c.status.steps += 1
            c.status.wrench_saturated += sat
            c.tau = ta
        if write_ctrl:
            if self._ctrl_view is not None:
                self._ctrl_view[:] = tau
            else:
                data.ctrl[self._act] = tau
        return tau

    def _sigma_check(self) -> bool:
        """False when every arm's σ_min(J) is proven above its ``max(min_sigma (1 - MIN_SIGMA_RTOL),
        singular_sigma)`` (a Cholesky factor of ``J J^T - t² (1 + 1e-6) I`` exists: the step is not
        near singular, and not 0.1 % below the minimum so far); True when the exact values are
        needed."""
        for i, c in enumerate(self.ctls):
            t = max(c.status.min_sigma * (1.0 - MIN_SIGMA_RTOL), c.cfg.singular_sigma)
            if t == np.inf:
                return True
            if t != self._sig_t[i]:
                self._sig_t[i] = t
                self._sig2[6 * i:6 * i + 6] = t * t * (1.0 + 1e-6)
        B = self._B
        self._mj.mju_mulMatMatT(B, self._Jf, self._Jf)
        self._B_diag -= self._sig2
        return self._mj.mju_cholFactor(B, 1e-300) < B.shape[0]
