"""A parameter that no node declares is refused before anything starts: from `--set`, from a
profile argument's target, from a key in a parameter file, and by the node itself when it is
started another way (`ros2 run`, `ros2 launch`). One line naming it and the closest declared
name, exit 2."""
import shutil
import subprocess
import sys
from pathlib import Path

import psutil
import yaml

from slowfast_app import stack
from tests.ros.test_cli import assert_one_line_error, slowfast


def _node_pids() -> set[int]:
    return {p.pid for p in psutil.process_iter(["cmdline"])
            if "slowfast_ros.nodes" in " ".join(p.info["cmdline"] or [])}


def _no_node_left_behind(before: set[int]) -> None:
    assert not (_node_pids() - before)


def test_a_typo_in_set_is_refused_with_the_closest_name():
    before = _node_pids()
    r = slowfast("up", "teleop", "--set", "safety_node.safety.max_sped=0.1", timeout=60)
    assert r.returncode == 2
    assert_one_line_error(r, "safety_node", "'safety.max_sped'", "did you mean 'safety.max_speed'")
    _no_node_left_behind(before)


def test_an_unknown_key_in_a_parameter_file_is_refused(tmp_path):
    cfg = tmp_path / "config"
    shutil.copytree(stack.config_dir(), cfg)
    data = yaml.safe_load((cfg / "safety_node.yaml").read_text())
    data["safety_node"]["ros__parameters"]["safety"] = {"force_limt": 10.0}
    (cfg / "safety_node.yaml").write_text(yaml.safe_dump(data))
    r = slowfast("up", "teleop", "--print", env={"SLOWFAST_CONFIG_DIR": str(cfg)}, timeout=60)
    assert r.returncode == 2
    assert_one_line_error(r, str(cfg / "safety_node.yaml"), "'safety.force_limt'", "did you mean 'safety.force_limit'")


def test_the_node_itself_refuses_an_undeclared_parameter():
    """Started without `slowfast` (as `ros2 run` would), the node checks what it was given."""
    r = subprocess.run([sys.executable, "-m", "slowfast_ros.nodes.safety_node", "--ros-args",
                        "-p", "safety.max_sped:=0.1"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "declares no parameter 'safety.max_sped'" in r.stderr and "safety.max_speed" in r.stderr


def test_every_profile_passes_the_check_as_shipped():
    """The shipped profiles and parameter files name only declared parameters."""
    for name in stack.available_profiles():
        prof = stack.load_profile(name)
        for node in prof.nodes:
            stack.check_parameters(node)
        for arg in prof.arguments:
            for target in arg.targets:
                node, _, pname = target.partition(".")
                spec = next(n for n in prof.nodes if n.name == node)
                declared = stack.declared_parameters(spec.module)
                assert declared is None or pname in declared, (name, target)


def test_the_declared_names_come_from_the_node_module():
    declared = stack.declared_parameters("slowfast_ros.nodes.safety_node")
    assert {"safety.max_speed", "safety.max_step", "episode_topic", "use_sim_time"} <= declared
    assert Path(stack.config_dir(), "safety_node.yaml").is_file()
