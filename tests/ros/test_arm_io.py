"""controller_states: what the scripted expert and operator act on, and when they must not."""
import numpy as np

from slowfast_ros.arm_io import ArmSnapshot, controller_states


def snap(pose_t, wrench_t, tactile_t):
    return ArmSnapshot(pose_stamp=pose_t, tcp_pos=np.array([0.1, 0.0, 0.2]), wrench_stamp=wrench_t,
                       wrench=np.zeros(6), tactile_stamp=tactile_t)


def test_states_only_when_complete_started_and_fresh():
    assert controller_states({"arm": snap(10.0, float("nan"), 10.0)}, 5.0, 0.1)[0] == "waiting"
    assert controller_states({"arm": snap(4.0, 4.0, 4.0)}, 5.0, 0.1)[0] == "before_start"
    assert controller_states({"arm": snap(10.0, 9.8, 10.0)}, 5.0, 0.1)[0] == "stale"
    status, states, newest = controller_states({"arm": snap(10.0, 9.95, 10.01)}, 5.0, 0.1)
    assert status == "ok" and newest == 10.01
    assert states["arm"].stamp == 10.01 - 5.0 and np.allclose(states["arm"].tcp_pos, [0.1, 0.0, 0.2])
