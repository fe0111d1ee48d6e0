"""`slowfast bench vln` module contract, on a toy-sized run (figures come from the real run)."""
from __future__ import annotations

import argparse
import json

import policy.streamvln as streamvln
from policy.streamvln import bench


def test_bench_contract_small_run():
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", action="store_true")  # added by the dispatcher
    bench.add_arguments(parser)
    args = parser.parse_args(["--json", "--steps", "40", "--window", "2", "--repeats", "1", "--hidden", "32",
                              "--layers", "1", "--intermediate", "64", "--vision-hidden", "16",
                              "--vision-layers", "1", "--memory-tokens", "400", "--threads", "1"])
    out = bench.run(args)
    json.dumps(out)  # serialisable
    for mode in ("sliding", "tumbling", "recompute"):
        assert set(out[mode]["latency_ms_at_turn"]) == {"1", "10"}
        assert out[mode]["peak_cache_tokens"] > 0
    assert 0.0 <= out["pruning_every_step"]["removed_fraction"] <= 1.0
    assert not any("turn100" in k for k in out["summary"])  # only 10 turns


def test_package_exports():
    assert streamvln.StreamVLNAgent.__name__ == "StreamVLNAgent"
    assert streamvln.Action.STOP == 0


def test_the_ros_bench_agent_computes_every_turn_and_wanders_by_depth(monkeypatch):
    import numpy as np

    from policy.streamvln.synthetic import pinhole

    monkeypatch.setenv("SLOWFAST_BENCH_NAV", json.dumps({"hidden": 32, "layers": 1, "intermediate": 64,
                                                         "vision_hidden": 16, "vision_layers": 1, "window": 2}))
    agent = bench.exploring_agent()
    agent.reset("explore")
    K = pinhole(160, 120)
    rgb = np.full((120, 160, 3), 128, np.uint8)
    pose = np.eye(4)
    wall = agent.step(rgb, np.full((120, 160), 0.5, np.float32), K, pose)
    open_floor = agent.step(rgb, np.full((120, 160), 3.0, np.float32), K, pose)
    assert wall == [streamvln.Action.TURN_LEFT] * 3
    assert open_floor == [streamvln.Action.MOVE_FORWARD] * 4
    assert agent.stats.turns == 2 and agent.stats.cache_tokens > 0      # the model ran both turns
    assert agent.step(rgb[:10], np.full((120, 160), 3.0, np.float32), K, pose) == []   # a bad frame is refused
