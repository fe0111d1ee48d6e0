"""Policy quality: the shipped checkpoints still do their task.

checkpoints/quality.json states, per shipped policy, the held-out seeds it was measured on
with the synchronous evaluator (the settings of docs/results.md and `make demo`: a chunk
every 16 steps, the nodes' parameter files, lift's 100 Hz poses) and the successes measured there. This runs the same episodes
and requires those successes, less one for the float differences of another CPU's kernels
(an episode is deterministic on one machine; a contact-rich one can tip on another)."""
import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2] / "checkpoints"
QUALITY = json.loads((ROOT / "quality.json").read_text())


def test_every_task_with_a_shipped_policy_states_its_quality():
    shipped = sorted(p.name for p in ROOT.iterdir() if (p / "runtime.json").is_file())
    assert shipped and sorted(QUALITY["policies"]) == shipped


@pytest.mark.parametrize("task", sorted(QUALITY["policies"]))
def test_shipped_policy_succeeds_as_its_results_promise(task):
    from sim.policy_eval import evaluate
    from slowfast_ros.cli.evaluate import serving_setup

    q = QUALITY["policies"][task]
    timing, safety = serving_setup(task, str(ROOT / task), q["sets"], q["latency_s"])
    eps = evaluate(ROOT / task, task, q["seeds"], safety, timing, perturb=q["perturbed"])
    got = sum(bool(e["success"]) for e in eps)
    assert got >= q["successes"] - 1, (task, got, q["successes"], [e["seed"] for e in eps if not e["success"]])
