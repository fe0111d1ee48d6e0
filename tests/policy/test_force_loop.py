"""The fast loop's integral force loop (policy/force_loop.py) against a spring surface: it holds
the reference when the surface steps, integrates only in contact, relaxes out of contact,
moves along the tool's own contact normal, and FastController adds it to the decoded target
before the safety filter."""
import numpy as np
import pytest

from policy.force_loop import ForceLoop, ForceLoopConfig
from slowfast_data.geometry import quat_to_matrix_one

HOME = np.array([0.0, 0.0, 0.0, 1.0])          # x, y, z, w: the sim's tool at home, its pad facing -z
K = 1000.0                                     # N/m, the spring under the pad
DT = 0.005


def sensor_wrench(press_n: float, quat) -> np.ndarray:
    """What the sim's F/T sensor reads (tool frame, the force the surface exerts on the tool)
    for a pressing force along the contact normal: -wrench . normal_tool = press_n."""
    n_tool = np.array([0.0, 0.0, -1.0])
    return np.concatenate([-press_n * n_tool, np.zeros(3)])


def run(loop, surface, target, steps, quat=HOME, t0=0.0):
    """Spring contact: the pad presses in proportion to how far the commanded point lies below
    the surface along the pressing direction. Returns (forces, offsets)."""
    press_dir = quat_to_matrix_one(quat) @ np.array([0.0, 0.0, -1.0])
    forces, offsets = [], []
    off = np.zeros(3)
    for k in range(steps):
        depth = float(np.dot(target + off - surface, press_dir))
        f = K * max(depth, 0.0)
        off = loop.step(t0 + k * DT, sensor_wrench(f, quat), quat)
        forces.append(f)
        offsets.append(off.copy())
    return np.array(forces), np.array(offsets)


def test_holds_the_reference_when_the_surface_steps_up_and_down():
    loop = ForceLoop(ForceLoopConfig(ref=10.0, stiffness=K))
    target = np.array([0.0, 0.0, -0.004])                 # 4 mm into the surface: 4 N
    f, _ = run(loop, np.zeros(3), target, 400)
    assert f[-1] == pytest.approx(10.0, abs=0.2)
    for step in (+0.02, -0.015):                          # the table rises 2 cm, then falls 1.5 cm below
        f, off = run(loop, np.array([0.0, 0.0, step]), target, 400, t0=10.0 + step)
        assert f[-1] == pytest.approx(10.0, abs=0.2), step
        assert abs(off[-1][2]) <= 0.04 + 1e-12            # max_offset
    # the fall lost contact; the loop pressed on (search_s) and found the surface again
    assert np.all(np.abs(off[:, :2]) < 1e-12)             # only along the normal


def test_out_of_contact_it_relaxes_and_never_dives():
    loop = ForceLoop(ForceLoopConfig(ref=10.0, release_tau=0.1))
    loop.offset = 0.02                                    # never in contact: no search, only the release
    f, off = run(loop, np.array([0.0, 0.0, -0.5]), np.zeros(3), 200)   # the surface far below
    assert (f == 0).all()
    assert abs(off[-1][2]) < 1e-5 and np.all(np.diff(np.abs(off[:, 2])) <= 1e-15)


def test_off_by_default_and_bounded():
    assert not ForceLoopConfig().enabled and ForceLoopConfig(ref=5.0).enabled
    loop = ForceLoop(ForceLoopConfig(ref=10.0, max_offset=0.01, max_rate=0.05))
    _, off = run(loop, np.array([0.0, 0.0, 0.5]), np.zeros(3), 400)     # pressed 50 cm deep: 500 N
    assert np.abs(off[:, 2]).max() == pytest.approx(0.01)
    assert np.abs(np.diff(off[:, 2])).max() <= 0.05 * DT + 1e-12


def test_a_tilted_tool_moves_along_its_own_normal():
    tilt = np.array([np.sin(np.deg2rad(7.5)), 0.0, 0.0, np.cos(np.deg2rad(7.5))])   # 15 deg about x
    q = _mul(tilt, HOME)
    loop = ForceLoop(ForceLoopConfig(ref=10.0))
    press_dir = quat_to_matrix_one(q) @ np.array([0.0, 0.0, -1.0])
    f, off = run(loop, np.zeros(3), 0.004 * press_dir, 600, quat=q)
    assert f[-1] == pytest.approx(10.0, abs=0.2)
    np.testing.assert_allclose(off[-1] / np.linalg.norm(off[-1]), press_dir, atol=1e-9)
    assert abs(press_dir[1]) > 0.2                        # not the world's vertical


def test_a_bad_reading_keeps_the_offset():
    loop = ForceLoop(ForceLoopConfig(ref=10.0))
    run(loop, np.zeros(3), np.array([0.0, 0.0, -0.004]), 100)
    before = loop.offset
    out = loop.step(1.0, np.full(6, np.nan), HOME)
    assert loop.offset == before and np.isfinite(out).all()


@pytest.mark.parametrize("kw", [{"ref": -1.0}, {"tau": 0.0}, {"normal_tool": (0.0, 0.0, 0.0)},
                                {"normal_tool": (1.0, 2.0)}, {"max_offset": float("nan")}])
def test_bad_settings_are_refused(kw):
    with pytest.raises(ValueError):
        ForceLoopConfig(**kw)


def test_fast_controller_adds_the_offset_before_the_safety_filter_and_restarts_it():
    from policy.safety import SafetyConfig, SafetyFilter
    from policy.serving import ArmSnapshot, FastController

    class Executor:           # a decoder stand-in: always the same target, 4 mm into a surface at z 0
        target = np.array([0.0, 0.0, -0.004, *HOME])

        def add_contact(self, stamp, contact):
            pass

        def tick(self, now, contact):
            return self.target

        def reset(self, not_before=-np.inf):
            pass

    ex = Executor()
    ctl = FastController(ex, {"arm": SafetyFilter(SafetyConfig())}, "wrench", 6,
                         force=ForceLoopConfig(ref=10.0, stiffness=K))
    z = -0.004
    snap = None
    for k in range(400):
        snap = {"arm": ArmSnapshot(pose_stamp=k * DT, tcp_pos=np.array([0.0, 0.0, z]), tcp_quat=HOME,
                                   wrench_stamp=k * DT, wrench=sensor_wrench(K * max(-z, 0.0), HOME))}
        res = ctl.tick(k * DT, snap)
        z = float(res.commands["arm"][0][2])           # the arm follows the filtered command
    assert K * -z == pytest.approx(10.0, abs=0.5)
    np.testing.assert_array_equal(ex.target[:3], [0.0, 0.0, -0.004])     # the executor's array untouched
    ctl.restart(snap)
    assert ctl.force_loops["arm"].offset == 0.0
    off = FastController(ex, {"arm": SafetyFilter(SafetyConfig())}, "wrench", 6)
    assert off.force_loops == {}


def _mul(a, b):
    """Quaternion product a * b (x, y, z, w)."""
    ax, ay, az, aw = a
    bx, by, bz, bw = b
    return np.array([aw * bx + ax * bw + ay * bz - az * by, aw * by - ax * bz + ay * bw + az * bx,
                     aw * bz + ax * by - ay * bx + az * bw, aw * bw - ax * bx - ay * by - az * bz])


@pytest.mark.parametrize("embodiment", ["floating", "arm"])
def test_in_the_sim_it_holds_the_reference_on_the_wipe_table(embodiment):
    """The real sensor's convention (sim/env.py's wrist F/T) and the default contact normal:
    a fixed target 3 mm into the table (3 N) ends at the reference, 10 N, on both robots."""
    from sim import SimConfig, SimEnv
    from sim.expert import _pad_normal_tool

    env = SimEnv(SimConfig(task="wipe", embodiment=embodiment, perturb=False, render=False))
    try:
        env.reset(seed=0)
        spec = env.task_spec()
        normal = _pad_normal_tool(spec["pad_quat_tool_xyzw"]["arm"])
        loop = ForceLoop(ForceLoopConfig(ref=10.0, normal_tool=tuple(normal), stiffness=spec["stiffness"]))
        pos, quat = (np.asarray(v, float) for v in spec["home"]["arm"])
        target = np.array([pos[0], pos[1], spec["surface_z"] - 0.003])
        forces = []
        for k in range(int(2.5 / 0.005)):                       # 200 Hz for 2.5 s
            s = env.observe("arm", tactile=False)
            off = loop.step(env.time, s.wrench, s.tcp_quat) if k * 0.005 > 1.0 else np.zeros(3)
            env.set_target("arm", target + off, quat)
            env.step(5)
            forces.append(env.contact_normal_force("arm"))
        assert 2.0 < np.mean(forces[150:200]) < 5.0              # before the loop: the target's own 3 N
        assert np.mean(forces[-40:]) == pytest.approx(10.0, abs=1.0)
    finally:
        env.close()
