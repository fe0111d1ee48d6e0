"""The RDP-vs-DP experiment runner: stage order, the exact commands, resume after a failure,
settings guard, one run per folder, and the report's statistics. The stages run a stand-in
for the `slowfast` command (the real subcommands have their own tests); it writes what each
subcommand writes and can be told to fail once."""
import json
import math
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from slowfast_app.experiment import CPU_MODEL_CONFIG, METHODS, Experiment, ExperimentSettings, mean_ci, report, wilson

pytestmark = pytest.mark.slow   # runs each experiment stage as a subprocess

FAKE = textwrap.dedent('''
    import json, os, sys
    from pathlib import Path
    import numpy as np
    args = sys.argv[1:]
    cmd = args[0]
    opt = lambda k: args[args.index(k) + 1]
    log = Path(os.environ["FAKE_LOG"])
    with open(log, "a") as fh:
        fh.write(" ".join(args) + "\\n")
    fail = os.environ.get("FAKE_FAIL", "")
    if fail and fail in " ".join(args) and not Path(os.environ["FAKE_LOG"] + ".failed").exists():
        Path(os.environ["FAKE_LOG"] + ".failed").write_text("x")
        sys.exit(3)
    if cmd == "record":
        out = Path(opt("--out")); out.mkdir(parents=True)
        for k in range(int(opt("--episodes"))):
            (out / f"episode_{k:04d}").mkdir()
    elif cmd == "convert":
        out = Path(opt("--out")); (out / "meta").mkdir(parents=True)
        n = sum(len(list(Path(b).glob("episode_*"))) for b in args[1:args.index("--out")])
        (out / "meta" / "info.json").write_text(json.dumps({"total_episodes": n}))
    elif cmd == "train":
        out = Path(opt("--out")); out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text("{}"); (out / "training_state").mkdir(exist_ok=True)
    elif cmd == "demos":
        out = Path(opt("--out")); (out / "meta").mkdir(parents=True)
        assert "--only-success" in args
        n, seed = int(opt("--episodes")), int(opt("--seed"))
        (out / "meta" / "info.json").write_text(json.dumps({"total_episodes": n - 1}))   # one failed
        (out / "meta" / "slowfast_episodes.json").write_text(json.dumps(
            {"episodes": [{"episode_index": k, "seed": seed + 1 + k} for k in range(n - 1)]}))
    elif cmd == "dataset":
        assert args[1] == "check" and Path(args[2], "meta", "info.json").is_file()
    elif cmd == "export":
        out = Path(opt("--out")); out.mkdir(parents=True); (out / "runtime.json").write_text("{}")
    elif cmd == "sim":
        out = Path(opt("--out")); out.mkdir(parents=True)
        seed, n = int(opt("--seed")), int(opt("--episodes"))
        rdp = opt("--controller") == "rdp"
        pert = "--no-perturb" not in args
        eps = []
        for k in range(n):
            ok = rdp or not pert or (seed + k) % 2 == 0
            eps.append({"task": "wipe", "seed": seed + k, "success": ok, "rms_force_error": 1.0 if ok else 4.0,
                        "time_in_band": 0.9 if ok else 0.5, "peak_force": 14.0,
                        "recovery_times": [0.2 if ok else None] if pert else [],
                        "duration": 8.0, "policy_chunks": 64,           # a starved machine slowed the first DP one
                        "real_time": {"factor": 0.9 if (not rdp and pert and k == 0) else 0.99}})
            np.savez(out / f"force_{k:03d}.npz", t=np.linspace(0, 8, 50), force=np.full(50, 10.0),
                     band=np.array([5.0, 15.0]), perturbation_times=np.array([3.0] if pert else []))
        (out / "metrics.json").write_text(json.dumps({"episodes": eps, "summary": {}}))
    elif cmd == "evaluate":
        out = Path(opt("--json")); out.parent.mkdir(parents=True, exist_ok=True)
        seeds = ([int(x) for x in opt("--seeds").split(",")] if "--seeds" in args
                 else list(range(int(opt("--seed")), int(opt("--seed")) + int(opt("--episodes")))))
        rdp = Path(opt("--policy")).name == "rdp"
        pert = "--no-perturb" not in args
        k = sum(1 for x in seeds if "--oracle" in args or rdp or not pert or x % 2 == 0)
        n = len(seeds)
        out.write_text(json.dumps({"summary": {"episodes": n, "successes": k, "success_rate": k / n,
                                               "success_ci95": [k / n - 0.1, min(1.0, k / n + 0.1)],
                                               "time_in_band": 0.9, "time_in_band_ci95": 0.01,
                                               "peak_force": 14.0, "peak_force_ci95": 1.0}}))
    else:
        sys.exit(9)
''')


@pytest.fixture
def fake(tmp_path, monkeypatch):
    script = tmp_path / "fake_slowfast.py"
    script.write_text(FAKE)
    monkeypatch.setenv("FAKE_LOG", str(tmp_path / "calls.log"))
    return [sys.executable, str(script)]


def settings(**kw):
    # the recorded path and all three methods unless a test says otherwise (the defaults are
    # in-process demonstrations and rdp,dp: test_the_default_compares_rdp_with_dp_on_in_process_demos)
    base = dict(task="wipe", demos=4, eval_episodes=4, sync_episodes=10, batch=2, demo_seed=100, eval_seed=1000,
                tokenizer_epochs=1, policy_epochs=1, demos_via="record", methods=list(METHODS))
    base.update(kw)
    return ExperimentSettings(**base)


def calls(tmp_path):
    return (tmp_path / "calls.log").read_text().splitlines()


def test_runs_every_stage_in_order_with_held_out_seeds(tmp_path, fake):
    out = tmp_path / "exp"
    res = Experiment(out, settings(), log=lambda s: None, slowfast=fake).run()
    c = calls(tmp_path)
    kinds = [x.split()[0] for x in c]
    # no oracle: recorded demonstrations carry no seeds to replay them on
    assert kinds == ["record"] * 2 + ["convert", "dataset"] + ["train"] * 4 + ["export"] * 3 + ["evaluate"] * 6 \
        + ["sim"] * 12
    assert "--perturb" in c[0] and "--seed 100" in c[0] and "--seed 102" in c[1]
    assert c[3].split()[:2] == ["dataset", "check"]          # no training on defective demonstrations
    assert "--tokenizer" in c[5] and c[5].split()[1] == "ldp"
    assert "--obs-contact" in c[7] and "--obs-contact" not in c[6]
    sims = [x for x in c if x.startswith("sim")]
    assert all(int(x.split("--seed ")[1].split()[0]) >= 1000 for x in sims)     # never a demo seed
    assert sum("--no-perturb" in x for x in sims) == 6
    # each method at its own re-plan rate on wipe: DP 4 Hz, RDP 8 Hz
    rate = {"rdp": "--set rdp_slow.rate_hz=8 ", "dp": "--set rdp_slow.rate_hz=4 "}
    assert all(rate["rdp" if "export/rdp " in x + " " else "dp"] in x + " " for x in sims)
    assert sum(rate["rdp"] in x + " " for x in sims) == 4
    syncs = [x for x in c if x.startswith("evaluate")]
    assert all("--seed 1000" in x and "--episodes 10" in x for x in syncs)
    assert all(rate["rdp" if "export/rdp " in x + " " else "dp"] in x + " " for x in syncs)
    assert sum("--no-perturb" in x for x in syncs) == 3
    # demonstrations and evaluations see the same sensor rates (wipe: the sim's 200 Hz)
    assert all("--set sim_node.pose_hz=200 --set sim_node.tactile_hz=200" in x for x in c if x.startswith(("record", "sim")))
    assert "--set sim_node.camera_hz=30" in c[0]
    # the commands a user can rerun, in order
    assert (out / "commands.sh").read_text().splitlines()[0].startswith("slowfast record --task wipe")
    r = res["methods"]
    assert r["rdp"]["perturbed"]["success_rate"] == 1.0
    assert r["dp"]["perturbed"]["success_rate"] == 0.5
    assert r["dp"]["perturbed"]["unrecovered"] == 2
    assert res["demonstrations"] == {"recorded": 4, "successful_used": 4, "via": "record"}
    md = (out / "results.md").read_text()
    assert "| RDP (force) | perturbed | 4/4 = 1.00" in md and "force_wipe_perturbed.png" in md
    # each ROS cell says whether the machine held real time: the slowest episode, how many slowed, chunks/s
    assert "| 0.990, 0/4, 8.0 |" in md and "| 0.900, 2/4, 8.0 |" in md
    assert "**4 ROS 2 episode(s) ran slower than real time**" in md    # DP and DP + force, perturbed
    # the comparison comes from the synchronous cells (10 episodes each here), shown in their own table
    assert res["comparison"]["perturbed"] == {"rdp_minus_dp": 0.5, "episodes": 10, "intervals_overlap": False}
    assert "| Diffusion Policy | perturbed | 5/10 = 0.50" in md
    assert (out / "force_wipe_perturbed.png").stat().st_size > 1000


def test_resumes_after_a_failed_step_without_redoing_finished_ones(tmp_path, fake, monkeypatch):
    out = tmp_path / "exp"
    monkeypatch.setenv("FAKE_FAIL", "train dp --dataset")
    with pytest.raises(ValueError, match="step train_dp failed"):
        Experiment(out, settings(), log=lambda s: None, slowfast=fake).run()
    before = calls(tmp_path)
    Experiment(out, settings(), log=lambda s: None, slowfast=fake).run()
    after = calls(tmp_path)[len(before):]
    assert [x.split()[0] for x in after][:2] == ["train", "train"]   # dp again, then dp_contact
    assert not any(x.startswith(("record", "convert")) for x in after)
    assert (out / "results.json").is_file()


def test_a_partial_batch_is_redone_from_scratch(tmp_path, fake, monkeypatch):
    out = tmp_path / "exp"
    monkeypatch.setenv("FAKE_FAIL", "--seed 102")            # second record batch fails once
    with pytest.raises(ValueError):
        Experiment(out, settings(), log=lambda s: None, slowfast=fake).run()
    (out / "bags" / "batch_001").mkdir(exist_ok=True)          # what a killed recorder leaves
    (out / "bags" / "batch_001" / "episode_0000").mkdir()
    Experiment(out, settings(), log=lambda s: None, slowfast=fake).run()
    assert len(list((out / "bags").glob("batch_*/episode_*"))) == 4


def test_other_settings_in_the_same_folder_are_refused(tmp_path, fake):
    out = tmp_path / "exp"
    Experiment(out, settings(), log=lambda s: None, slowfast=fake).run()
    with pytest.raises(ValueError, match="other settings.*demos"):
        Experiment(out, settings(demos=6), log=lambda s: None, slowfast=fake).run()


def test_one_run_per_folder(tmp_path, fake):
    import fcntl

    out = tmp_path / "exp"
    out.mkdir()
    with open(out / ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(ValueError, match="another experiment is running"):
            Experiment(out, settings(), log=lambda s: None, slowfast=fake).run()


@pytest.mark.parametrize("kw, match", [
    (dict(task="peel"), "unknown task"),
    (dict(demos=0), "--demos"),
    (dict(eval_seed=102), "overlap"),
    (dict(camera_hz=0.0), "--camera-hz"),
    (dict(slow_hz=100.0), "--slow-hz"),
    (dict(rdp_slow_hz=0.1), "--rdp-slow-hz"),
    (dict(tactile_hz=5.0), "--tactile-hz"),
    (dict(methods=["dp"]), "--methods"),
    (dict(methods=["rdp", "dp", "dp"]), "--methods"),
    (dict(methods=["rdp", "dp", "act"]), "--methods"),
    (dict(interface="ethercat"), "unknown interface"),
    (dict(interface="ros2_control"), "--embodiment arm"),
    (dict(interface="ros2_control", embodiment="arm", task="lift"), "one arm"),
])
def test_bad_settings_are_one_clear_error(kw, match):
    with pytest.raises(ValueError, match=match):
        settings(**kw)


def test_lift_records_and_evaluates_at_its_lighter_sensor_rates(tmp_path, fake):
    s = settings(task="lift")
    assert (s.pose_hz, s.tactile_hz) == (100.0, 60.0)
    assert settings(task="lift", tactile_hz=30.0).tactile_hz == 30.0
    from slowfast_app.cli import build_parser
    a = build_parser().parse_args(["experiment", "rdp-vs-dp", "--task", "lift", "--out", "x"])
    assert (a.pose_hz, a.tactile_hz) == (0.0, 0.0)      # the command line leaves them to the task
    Experiment(tmp_path / "exp", s, log=lambda s: None, slowfast=fake).run()
    c = [x for x in calls(tmp_path) if x.startswith(("record", "sim"))]
    assert c and all("--set sim_node.pose_hz=100 --set sim_node.tactile_hz=60" in x for x in c)


def test_wilson_interval_and_mean_ci():
    lo, hi = wilson(17, 20)
    assert lo == pytest.approx(0.640, abs=2e-3) and hi == pytest.approx(0.948, abs=2e-3)
    assert wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == 1.0
    m, h = mean_ci([1.0, 2.0, 3.0, None])
    assert m == 2.0 and h == pytest.approx(1.96 * 1.0 / math.sqrt(3))
    assert mean_ci([None]) == (None, None)


def test_report_command_rebuilds_results(tmp_path, fake):
    out = tmp_path / "exp"
    Experiment(out, settings(), log=lambda s: None, slowfast=fake).run()
    (out / "results.md").unlink()
    res = report(out)
    assert (out / "results.md").is_file() and res["comparison"]["perturbed"]["rdp_minus_dp"] == 0.5
    assert json.loads((out / "results.json").read_text())["task"] == "wipe"
    assert np.isfinite(res["methods"]["dp"]["perturbed"]["rms_force_error"])


def test_inprocess_demonstrations_replace_record_and_convert(tmp_path, fake):
    out = tmp_path / "exp"
    res = Experiment(out, settings(demos_via="inprocess"), log=lambda s: None, slowfast=fake).run()
    c = calls(tmp_path)
    kinds = [x.split()[0] for x in c]
    assert kinds[:2] == ["demos", "dataset"] and "record" not in kinds and "convert" not in kinds
    assert "--seed 100" in c[0] and "--episodes 4" in c[0] and "--fps 25" in c[0] and "--nominal" in c[0]
    trains = [x.split()[1:2] + [x.split()[x.split().index("--out") + 1].split("/")[-1]] for x in c if x.startswith("train")]
    # the LDP first, then its decoder tuned on the nominal actions into the served `rdp`
    assert trains[:3] == [["tokenizer", "tokenizer"], ["ldp", "ldp"], ["decoder", "rdp"]]
    tune = next(x for x in c if x.startswith("train decoder"))
    assert f"--init {out}/checkpoints/ldp" in tune and f"--dataset {out}/dataset" in tune
    assert res["demonstrations"] == {"recorded": 4, "successful_used": 3, "via": "inprocess"}
    md = (out / "results.md").read_text()
    assert "4 generated in process" in md
    oracle = [x for x in c if x.startswith("evaluate") and "--oracle" in x]
    assert len(oracle) == 3 and all("--seeds 101,102,103" in x for x in oracle)   # the written demos' seeds
    assert res["oracle"]["rdp"]["success_rate"] == 1.0 and "Oracle:" in md
    with pytest.raises(ValueError, match="demos-via"):
        settings(demos_via="carrier-pigeon")


def test_without_decoder_tuning_the_ldp_is_the_served_rdp(tmp_path, fake):
    Experiment(tmp_path / "exp", settings(demos_via="inprocess", tune_decoder=False), log=lambda s: None,
               slowfast=fake).run()
    c = calls(tmp_path)
    assert "--nominal" not in c[0] and not any(x.startswith("train decoder") for x in c)
    assert any(x.startswith("train ldp") and x.split()[x.split().index("--out") + 1].endswith("/rdp") for x in c)


def test_a_folder_made_before_a_setting_existed_resumes_at_its_default(tmp_path, fake):
    out = tmp_path / "exp"
    Experiment(out, settings(), log=lambda s: None, slowfast=fake).run()
    stored = json.loads((out / "experiment.json").read_text())
    del stored["demos_via"], stored["methods"]               # as written by an older slowfast
    (out / "experiment.json").write_text(json.dumps(stored))
    Experiment(out, settings(), log=lambda s: None, slowfast=fake).run()     # resumes, nothing refused
    # those runs recorded their demonstrations and had all three methods: not today's defaults
    with pytest.raises(ValueError, match="other settings.*methods"):
        Experiment(out, settings(methods=["rdp", "dp"]), log=lambda s: None, slowfast=fake).run()


def test_each_method_is_served_at_each_tasks_validated_rate_unless_told():
    """Lift's RDP must re-plan slowly (a new chunk restarts the slow-starting lift), wipe's fast;
    wipe's DP served best at 4 Hz on validation seeds, lift's at the published 1.5625."""
    assert settings(task="wipe").method_hz("rdp") == 8.0
    assert settings(task="lift").method_hz("rdp") == 1.5625
    assert settings(task="lift", rdp_slow_hz=4.0).method_hz("rdp") == 4.0
    assert settings(task="lift").method_hz("dp") == 1.5625 and settings(task="wipe").method_hz("dp") == 4.0
    assert settings(task="wipe", slow_hz=1.5625).method_hz("dp") == 1.5625   # the published rate, when asked


@pytest.mark.parametrize("task,rdp,dp", [("wipe", 8.0, 4.0), ("lift", 1.5625, 1.5625)])
def test_the_command_line_serves_each_task_at_its_own_rates(task, rdp, dp):
    """`slowfast experiment --task lift` once took wipe's rates (8 and 4 chunks/s): its
    defaults were read from the wipe settings, already resolved."""
    from slowfast_app.cli import build_parser
    from slowfast_app.cli.experiment import settings_from_args

    s = settings_from_args(build_parser().parse_args(["experiment", "rdp-vs-dp", "--task", task, "--out", "x"]))
    assert (s.method_hz("rdp"), s.method_hz("dp")) == (rdp, dp)
    s = settings_from_args(build_parser().parse_args(["experiment", "rdp-vs-dp", "--task", task, "--out", "x",
                                                      "--rdp-slow-hz", "3"]))
    assert s.method_hz("rdp") == 3.0


def test_every_stage_runs_on_the_arm_when_told(tmp_path, fake):
    """--embodiment arm reaches the demonstrations, the oracle and both evaluations; the
    default adds nothing to the commands."""
    Experiment(tmp_path / "exp", settings(demos_via="inprocess", embodiment="arm"), log=lambda s: None,
               slowfast=fake).run()
    c = [x for x in calls(tmp_path) if x.split()[0] in ("demos", "evaluate", "sim")]
    assert c and all(("--embodiment arm" if x.startswith(("demos", "sim")) else "--set sim_node.embodiment=arm") in x
                     for x in c)
    n = len(calls(tmp_path))
    Experiment(tmp_path / "exp2", settings(demos_via="inprocess"), log=lambda s: None, slowfast=fake).run()
    assert len(calls(tmp_path)) > n and not any("embodiment" in x for x in calls(tmp_path)[n:])
    with pytest.raises(ValueError, match="--embodiment: 'gantry' has no wipe scene"):
        settings(embodiment="gantry")


def test_the_arm_gets_its_own_model_recipe_and_a_given_model_config_wins(tmp_path, fake):
    """On the arm the models are trained with 8 latent channels (the arm's live orientation
    needs them) and a latent policy that predicts the clean chunk; on the floating tools with
    the CPU config's 4 and noise prediction; --model-config replaces both."""
    Experiment(tmp_path / "arm", settings(demos_via="inprocess", embodiment="arm"), log=lambda s: None,
               slowfast=fake).run()
    written = json.loads((tmp_path / "arm" / "model_config.json").read_text())
    assert written["tokenizer"] == {**CPU_MODEL_CONFIG["tokenizer"], "latent_dim": 8}
    assert written["diffusion"] == {"prediction_type": "sample"}
    assert {k: v for k, v in written.items() if k not in ("tokenizer", "diffusion")} == \
        {k: v for k, v in CPU_MODEL_CONFIG.items() if k not in ("tokenizer", "diffusion")}
    assert any(x.startswith("train tokenizer") and str(tmp_path / "arm" / "model_config.json") in x
               for x in calls(tmp_path))
    assert "latent_dim" not in settings().model_config.get("tokenizer", {})
    assert "diffusion" not in settings().model_config
    assert settings(embodiment="arm", model_config={"unet": {"down_dims": [8, 16]}}).model_config == \
        {"unet": {"down_dims": [8, 16]}}


def test_the_ros_evaluation_goes_through_the_robot_bridge_when_told(tmp_path, fake):
    """--interface ros2_control reaches the ROS evaluation's `slowfast sim` only (the other
    stages have no ROS), and the report says so."""
    out = tmp_path / "exp"
    Experiment(out, settings(demos_via="inprocess", embodiment="arm", interface="ros2_control"), log=lambda s: None,
               slowfast=fake).run()
    c = calls(tmp_path)
    assert [x for x in c if x.startswith("sim")] and all(("--interface ros2_control" in x) == x.startswith("sim")
                                                         for x in c)
    assert "through robot_bridge_node" in (out / "results.md").read_text()


def test_the_default_compares_rdp_with_dp_on_in_process_demos(tmp_path, fake):
    """The defaults are the shipped checkpoints' recipe: 60 in-process demonstrations with their
    nominal actions, RDP (decoder tuned) against DP; the DP fed the force history only when asked."""
    d = ExperimentSettings()
    assert (d.demos, d.demos_via, d.methods, d.tune_decoder) == (60, "inprocess", ["rdp", "dp"], True)
    from slowfast_app.cli import build_parser
    a = build_parser().parse_args(["experiment", "rdp-vs-dp", "--out", "x"])
    assert a.methods == ["rdp", "dp"] and a.demos_via == "inprocess"
    a = build_parser().parse_args(["experiment", "rdp-vs-dp", "--out", "x", "--methods", "rdp,dp,dp_contact"])
    assert a.methods == ["rdp", "dp", "dp_contact"]
    res = Experiment(tmp_path / "exp", settings(demos_via="inprocess", methods=["rdp", "dp"]), log=lambda s: None,
                     slowfast=fake).run()
    c = calls(tmp_path)
    assert not any("dp_contact" in x for x in c)
    assert sum(x.startswith("sim") for x in c) == 2 * 2 * 2 and sum(x.startswith("evaluate") for x in c) == 2 + 4
    assert set(res["methods"]) == {"rdp", "dp"} and "DP + force" not in (tmp_path / "exp" / "results.md").read_text()
