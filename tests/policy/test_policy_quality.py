"""Policy quality: the shipped checkpoints still do their task.

checkpoints/quality.json states, per shipped policy, the held-out seeds it was measured on
with the synchronous evaluator (the settings of docs/results.md and `make demo`: each task's
re-plan rate and handover, the nodes' parameter files) and the successes measured there. This runs the same episodes
and requires those successes, less one for the float differences of another CPU's kernels
(an episode is deterministic on one machine; a contact-rich one can tip on another)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2] / "checkpoints"
QUALITY = json.loads((ROOT / "quality.json").read_text())


def test_every_task_with_a_shipped_policy_states_its_quality():
    shipped = sorted(p.name for p in ROOT.iterdir() if (p / "runtime.json").is_file())
    assert shipped and sorted(QUALITY["policies"]) == shipped


@pytest.mark.parametrize("name", sorted(QUALITY["policies"]))
def test_shipped_policy_succeeds_as_its_results_promise(name, tmp_path):
    # `slowfast evaluate` in its own process, as a user runs it (the evaluation renders with
    # EGL and runs onnxruntime; in the test process it left later DDS tests starved)
    q = QUALITY["policies"][name]
    task = q.get("task", name)   # wipe_arm: the wipe task on the Panda arm (its sets say so)
    out = tmp_path / "eval.json"
    cmd = [sys.executable, "-m", "slowfast_app.cli", "evaluate", "--task", task, "--policy", str(ROOT / name),
           "--seeds", ",".join(str(s) for s in q["seeds"]), "--latency", str(q["latency_s"]),
           "--workers", "2", "--quiet", "--json", str(out)]
    for item in q["sets"]:
        cmd += ["--set", item]
    if not q["perturbed"]:
        cmd.append("--no-perturb")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads(out.read_text())
    eps = doc["episodes"] if isinstance(doc, dict) else doc
    assert sorted(e["seed"] for e in eps) == sorted(q["seeds"])
    got = sum(bool(e["success"]) for e in eps)
    assert got >= q["successes"] - 1, (name, got, q["successes"], [e["seed"] for e in eps if not e["success"]])
