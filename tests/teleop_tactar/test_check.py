"""`slowfast dataset check`: a clean episode passes; a planted lunge, a speeding arm and a
frozen pose stream are each caught, named and make the command exit 1."""
import json

import numpy as np

from policy.rdp.synthetic import make_episode
from teleop_tactar.check import check_dataset
from slowfast_data.writer import DatasetWriter
from tests.ros.test_cli import slowfast


def _dataset(root, episodes):
    w = DatasetWriter(root, fps=50, arms=["right"], tactile_markers=0)
    for ep in episodes:
        w.add_episode(ep, task="wipe")
    return w.finalize()


def _clean(seed):
    ep = make_episode(np.random.default_rng(seed), 60, markers=0, image_size=None)
    ep.pop("observation.tactile", None)
    return ep


def test_a_clean_dataset_passes_and_each_planted_defect_is_caught(tmp_path):
    clean = _clean(0)
    lunge = _clean(1)
    lunge["action"][0, :3] = lunge["observation.tcp_pose"][0, :3] + [0.19, 0.0, 0.0]   # last episode's target
    speeding = _clean(2)
    speeding["observation.tcp_pose"][30:, 0] += 0.05           # 5 cm in one 20 ms frame: 2.5 m/s
    speeding["action"][30:, 0] += 0.05
    frozen = _clean(3)
    frozen["observation.tcp_pose"][20:40] = frozen["observation.tcp_pose"][20]   # 0.4 s without a new reading
    root = _dataset(tmp_path / "ds", [clean, lunge, speeding, frozen])

    report = check_dataset(root, max_speed=1.0)      # the synthetic arm moves up to ~0.35 m/s
    by_ep = {e["episode"]: e for e in report["episodes"]}
    assert by_ep[0]["defects"] == []
    assert "lunge" in by_ep[1]["defects"][0] and abs(by_ep[1]["start_gap_m"] - 0.19) < 0.01
    assert any("command speed" in d for d in by_ep[2]["defects"])
    assert any("frozen" in d for d in by_ep[3]["defects"]) and by_ep[3]["frozen_s"] >= 0.38
    assert report["defects"] == 3

    r = slowfast("dataset", "check", str(root), "--max-speed", "1.0")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "3 with defects" in r.stdout and "lunge" in r.stdout
    r = slowfast("dataset", "check", str(root), "--json", "--max-speed", "1.0")
    assert json.loads(r.stdout.splitlines()[-1])["defects"] == 3

    ok = _dataset(tmp_path / "ok", [clean])
    r = slowfast("dataset", "check", str(ok), "--max-speed", "1.0")
    assert r.returncode == 0 and "0 with defects" in r.stdout


def test_a_folder_that_is_not_a_dataset_is_one_line(tmp_path):
    r = slowfast("dataset", "check", str(tmp_path))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert len([ln for ln in r.stderr.splitlines() if ln.strip()]) == 1 and "not a LeRobot dataset" in r.stderr
