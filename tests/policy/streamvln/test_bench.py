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
