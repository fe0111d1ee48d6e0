"""The sim's wall-clock lock: never ahead of the wall clock; when the CPU cannot keep up, at most
``max_lag`` behind (the world slows down), so every stamp stays the time its reading was taken."""
import pytest

from sim.realtime import WallLock


def run(step_cost: float, max_lag: float, seconds: float = 2.0, dt: float = 0.001):
    """Physics steps that each cost ``step_cost`` of wall time; returns the lock and the
    largest gap between a reading's stamp and the wall time it was published at."""
    wall, sim = 100.0, 0.0
    lock = WallLock(wall, sim, max_lag)
    worst = 0.0
    while sim < seconds:
        ahead = lock.ahead(wall, sim + dt)
        if ahead > 1e-9:                          # (the node sleeps; real time moves on)
            wall += ahead
            continue
        wall += step_cost
        sim += dt
        stamp = 100.0 + lock.slowed + sim
        assert stamp <= wall + dt + 1e-9                  # never a reading from the future
        worst = max(worst, wall - stamp)
    return lock, worst, wall


def test_a_fast_sim_runs_in_real_time_and_is_never_slowed():
    lock, worst, wall = run(step_cost=0.0002, max_lag=0.02)
    assert lock.slowed == 0.0 and worst <= 0.001 + 1e-9
    assert wall == pytest.approx(102.0, abs=0.002)
    assert lock.real_time_factor(wall, 2.0) == pytest.approx(1.0, abs=1e-3)


def test_a_starved_sim_slows_down_instead_of_lagging():
    lock, worst, wall = run(step_cost=0.002, max_lag=0.02)     # physics at half of real time
    assert worst <= 0.02 + 0.002 + 1e-9                       # stamps at most max_lag (+ a step) old
    assert lock.slowed == pytest.approx(2.0 - 0.02, abs=0.01)
    assert lock.real_time_factor(wall, 2.0) == pytest.approx(0.5, abs=0.01)


def test_without_a_lag_limit_the_lag_grows():
    lock, worst, _ = run(step_cost=0.002, max_lag=0.0)
    assert lock.slowed == 0.0 and worst == pytest.approx(2.0, abs=0.01)
