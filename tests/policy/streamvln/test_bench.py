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


def _camera_pose(x=0.0):
    """The nav sim's camera for the base at (x, 0) facing +x."""
    from sim.nav.env import NavConfig, camera_pose_at

    return camera_pose_at(x, 0.0, 0.0, NavConfig().camera_height_m)


def test_the_ros_bench_agent_computes_every_turn_and_wanders_by_depth(monkeypatch):
    import numpy as np

    from policy.streamvln.synthetic import pinhole

    F, L, R = streamvln.Action.MOVE_FORWARD, streamvln.Action.TURN_LEFT, streamvln.Action.TURN_RIGHT
    monkeypatch.setenv("SLOWFAST_BENCH_NAV", json.dumps({"hidden": 32, "layers": 1, "intermediate": 64,
                                                         "vision_hidden": 16, "vision_layers": 1, "window": 2}))
    agent = bench.exploring_agent()
    K = pinhole(160, 120)
    rgb = np.full((120, 160, 3), 128, np.uint8)
    far, near = np.full((120, 160), 3.0, np.float32), np.full((120, 160), 0.5, np.float32)
    agent.reset("explore")
    assert agent.step(rgb, far, K, _camera_pose()) == [F] * 4            # a wall 3.1 m ahead: room for 4 steps
    # asked again on the way (the node's next turn), it plans from where its queued goals end
    assert agent.step(rgb, far, K, _camera_pose(0.6)) == [F] * 4         # from x = 1.0: 2.1 m left
    assert agent.step(rgb, far, K, _camera_pose(1.7)) == [F] * 2         # from x = 2.0: 1.1 m left
    assert agent.stats.turns == 3 and agent.stats.cache_tokens > 0      # the model ran every turn
    # from x = 2.5 the wall, no longer in view (a frame without depth), is still known
    assert agent.step(rgb, np.full((120, 160), np.nan, np.float32), K, _camera_pose(2.3)) == [L] * 3
    # a base that passed its last goal plans from where it is
    agent.reset("explore")
    assert agent.step(rgb, far, K, _camera_pose()) == [F] * 4
    assert agent.step(rgb, far, K, _camera_pose(1.5)) == [F] * 4        # from x = 1.5: 1.6 m left
    # two FORWARD answers that left the base where it was: blocked by something unseen, turn
    agent.reset("explore")
    assert agent.step(rgb, far, K, _camera_pose()) == [F] * 4
    assert agent.step(rgb, far, K, _camera_pose()) == [F] * 4
    assert agent.step(rgb, far, K, _camera_pose()) in ([L] * 3, [R] * 3)
    # a wall 0.5 m ahead, open to the right only (depth is z along the optical axis: columns right of
    # centre see far): turns right
    agent.reset("explore")
    open_right = near.copy()
    open_right[:, 90:] = 6.0
    assert agent.step(rgb, near, K, _camera_pose()) in ([L] * 3, [R] * 3)
    agent.reset("explore")
    assert agent.step(rgb, open_right, K, _camera_pose()) == [R] * 3
    assert agent.step(rgb[:10], far, K, _camera_pose()) == []   # a bad frame is refused


def _args(*argv):
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", action="store_true")
    bench.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_published_preset_is_the_published_architecture():
    """8.03 B parameters, as the issue's H100 run (built on the meta device: no memory, no weights)."""
    import torch

    args = _args("--preset", "published", "--layers", "28")
    args.device = "meta"
    with torch.device("meta"):
        model, _ = bench.bench_model(args)
    assert round(sum(p.numel() for p in model.parameters()) / 1e9, 2) == 8.03
    assert model.tokens_per_frame == 196 and model.text_config.vocab_size == 152064
    assert bench.sizes(_args("--preset", "tiny", "--hidden", "48"))["hidden"] == 48  # a flag overrides


def test_cuda_without_a_gpu_is_refused_in_one_line(monkeypatch):
    import pytest
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as e:
        bench.run(_args("--device", "cuda", "--preset", "published"))
    msg = str(e.value.code)
    assert "--device cuda needs a CUDA GPU" in msg and "\n" not in msg


def test_kv_options_follow_the_device_unless_asked():
    assert bench.kv_options(_args()) == {"kv_cache": "dynamic", "refresh": "inline"}  # CPU: as before
    assert bench.kv_options(_args("--device", "cuda")) == {"kv_cache": "static", "refresh": "incremental"}
    assert bench.kv_options(_args("--refresh", "incremental")) == {"kv_cache": "dynamic", "refresh": "incremental"}
    assert bench.kv_options(_args("--device", "cuda", "--kv-cache", "dynamic"))["kv_cache"] == "dynamic"
