"""The deployable pieces parse and point at things that exist: the ament package, the launch
files and profiles, the compose file and Dockerfile (no Docker engine or ros2 launch here)."""
import ast
import os
import re
import shlex
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from slowfast_app import stack
from slowfast_app.cli import SUBCOMMANDS

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "ros2_ws" / "src" / "slowfast_ros"
NODE_MODULES = sorted(p.stem for p in (PKG / "slowfast_ros" / "nodes").glob("*.py") if p.stem != "__init__")


def test_layout_of_the_design_exists():
    for rel in ("ros2_ws/src/slowfast_ros/package.xml", "ros2_ws/src/slowfast_ros/setup.py",
                "ros2_ws/src/slowfast_ros/resource/slowfast_ros", "policy", "teleop_tactar", "sim",
                "launch", "tests", "docker-compose.yml", "docker/Dockerfile", "README.md",
                "pyproject.toml", "Makefile", ".ci/run"):
        assert (ROOT / rel).exists(), rel


def test_package_xml_is_ament_python_with_the_message_packages():
    root = ET.parse(PKG / "package.xml").getroot()
    assert root.get("format") == "3"
    assert root.findtext("name") == "slowfast_ros"
    assert root.find("export/build_type").text == "ament_python"
    deps = {e.text for e in root.findall("exec_depend")}
    assert {"rclpy", "sensor_msgs", "geometry_msgs", "diagnostic_msgs", "launch_ros"} <= deps


def test_slowfast_ros_imports_nothing_from_the_application():
    """The dependency runs slowfast_app -> slowfast_ros -> cores, never back: the ament
    package installs without slowfast_app."""
    for py in sorted((PKG / "slowfast_ros").rglob("*.py")):
        for node in ast.walk(ast.parse(py.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.split(".")[0] == "slowfast_app" for n in names), py

def test_setup_py_installs_a_console_script_per_node(monkeypatch):
    """Run setup.py with setuptools.setup captured: what colcon would install."""
    import runpy

    import setuptools

    captured = {}
    monkeypatch.setattr(setuptools, "setup", lambda **kw: captured.update(kw))
    monkeypatch.chdir(PKG)
    runpy.run_path(str(PKG / "setup.py"), run_name="__main__")
    scripts = dict(e.replace(" ", "").split("=") for e in captured["entry_points"]["console_scripts"])
    assert NODE_MODULES, "no node modules"
    for name in NODE_MODULES:
        assert scripts[name] == f"slowfast_ros.nodes.{name}:main", name      # `ros2 run slowfast_ros NAME`
        mod = __import__(f"slowfast_ros.nodes.{name}", fromlist=["main"])
        assert callable(mod.main), name
    data = {dest: files for dest, files in captured["data_files"]}
    assert "package.xml" in data["share/slowfast_ros"]
    launch_files = {p.name for p in (ROOT / "launch").glob("*.launch.py")}
    assert launch_files == {f.rsplit("/", 1)[-1] for f in data["share/slowfast_ros/launch"]}


def test_every_profile_loads_and_names_real_node_modules_and_param_files():
    names = stack.available_profiles()
    assert {"sim", "sim-expert"} <= set(names)
    for name in names:
        prof = stack.load_profile(name)
        for spec in prof.nodes:
            assert spec.executable in NODE_MODULES, (name, spec.module)
            for f in spec.param_files():
                data = yaml.safe_load(f.read_text())
                assert "ros__parameters" in data[spec.name], f  # keyed by the node name


def test_launch_files_are_valid_python_and_name_existing_profiles():
    files = sorted((ROOT / "launch").glob("*.launch.py"))
    assert files
    for f in files:
        tree = ast.parse(f.read_text())
        assert any(isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description" for n in tree.body)
        profiles = re.findall(r'profile_launch_description\("([^"]+)"\)', f.read_text())
        assert profiles and all(p in stack.available_profiles() for p in profiles), f


def test_every_profile_has_a_launch_file():
    """What `slowfast up NAME` starts, `ros2 launch` can start on a ROS 2 machine."""
    launched = {p for f in (ROOT / "launch").glob("*.launch.py")
                for p in re.findall(r'profile_launch_description\("([^"]+)"\)', f.read_text())}
    assert set(stack.available_profiles()) <= launched, set(stack.available_profiles()) - launched


def test_profile_arguments_resolve_to_node_parameters():
    prof = stack.load_profile("sim-expert")
    assert prof.resolve({"task": "lift", "seed": "3"}) == {
        "sim_node": {"task": "lift", "seed": 3}, "expert_node": {"task": "lift"}}
    with pytest.raises(ValueError, match="no argument"):
        prof.resolve({"bogus": "1"})
    with pytest.raises(ValueError, match="expected an integer"):
        prof.resolve({"seed": "three"})
    serial = stack.load_profile("robot-sensors").resolve({"serial": "123622270136"})
    assert serial["realsense_node"]["serial"] == "123622270136"      # a string default keeps digits a string
    # a default the profile states applies when the argument is not given, as in `ros2 launch`
    nav = stack.load_profile("robot-nav")
    assert nav.resolve({})["streamvln_nav"] == {"device": "cuda", "dtype": "bfloat16"}
    assert nav.resolve({"device": "cpu"})["streamvln_nav"] == {"device": "cpu", "dtype": "bfloat16"}
    shipped = stack.load_profile("sim-nav").resolve({})["streamvln_nav"]["checkpoint"]
    assert (ROOT / shipped / "config.json").is_file(), shipped   # the small model ships (run from the repository root)
    with pytest.raises(ValueError, match="NODE.PARAM=VALUE"):
        stack.parse_sets(["task=lift"])
    cmd = stack.node_command(prof.nodes[0], {"out_dir": "", "perturb": False, "camera_hz": 30.0})
    assert cmd[cmd.index("-r") + 1] == "__node:=sim_node"
    assert 'out_dir:=""' in cmd and "perturb:=false" in cmd and "camera_hz:=30.0" in cmd


def _compose():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_parses_with_host_networking_and_gpu_for_the_policy():
    services = _compose()["services"]
    assert {"sim", "policy"} <= set(services)
    for name, svc in services.items():
        assert svc["network_mode"] == "host", name  # DDS discovery needs the host network
    devices = services["policy"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]


def test_every_process_gets_the_stacks_dds_transports_unless_the_user_configured_fast_dds():
    from slowfast_ros import qos  # noqa: PLC0415

    for name, svc in _compose()["services"].items():   # containers: the same value as slowfast up
        env = svc.get("environment", {})
        assert env.get(qos.TRANSPORTS_VAR) == f"${{{qos.TRANSPORTS_VAR}:-{qos.TRANSPORTS}}}", name
    assert qos.transport_env({}) == {qos.TRANSPORTS_VAR: qos.TRANSPORTS}
    assert qos.transport_env({qos.TRANSPORTS_VAR: "UDPv4"}) == {}            # the user's choice stays
    assert qos.transport_env({"FASTDDS_DEFAULT_PROFILES_FILE": "/etc/dds.xml"}) == {}
    assert qos.transport_env({"RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"}) == {}
    # LOCALHOST, where rmw_fastrtps would read no transports: the stack's profile in its place,
    # also when FASTDDS_BUILTIN_TRANSPORTS holds the stack's own value (the compose file's)
    on_host = {qos.RANGE_VAR: "SYSTEM_DEFAULT", "FASTDDS_DEFAULT_PROFILES_FILE": str(qos.LOCALHOST_PROFILE)}
    for env in ({qos.RANGE_VAR: "LOCALHOST"}, {qos.RANGE_VAR: "localhost", qos.TRANSPORTS_VAR: qos.TRANSPORTS}):
        assert qos.transport_env(env) == on_host, env
        assert qos.transport_env({**env, **qos.transport_env(env)}) == {}       # applied twice: the same
    assert qos.transport_env({"ROS_LOCALHOST_ONLY": "1"}) == {**on_host, "ROS_LOCALHOST_ONLY": ""}
    assert qos.transport_env({qos.RANGE_VAR: "LOCALHOST", qos.TRANSPORTS_VAR: "UDPv4"}) == {}
    assert qos.transport_env({qos.RANGE_VAR: "LOCALHOST", "ROS_STATIC_PEERS": "10.0.0.2"}) == {}
    assert qos.transport_env({qos.RANGE_VAR: "OFF"}) == {qos.TRANSPORTS_VAR: qos.TRANSPORTS}   # OFF reads them
    assert qos.LOCALHOST_PROFILE.is_file()
    mine = {"FASTDDS_DEFAULT_PROFILES_FILE": "", "FASTRTPS_DEFAULT_PROFILES_FILE": "", qos.TRANSPORTS_VAR: ""}
    s = stack.Stack(stack.Profile("t", "", []), env={**mine, qos.RANGE_VAR: "SUBNET"})
    assert s.env[qos.TRANSPORTS_VAR] == qos.TRANSPORTS
    s = stack.Stack(stack.Profile("t", "", []), env={**mine, qos.RANGE_VAR: "LOCALHOST"})
    assert {k: s.env[k] for k in on_host} == on_host


def test_doctor_says_which_transports_a_stack_gets():
    from slowfast_ros import qos  # noqa: PLC0415

    assert qos.transports_in_effect({}) == f"{qos.TRANSPORTS_VAR}={qos.TRANSPORTS} (the stack)"
    assert qos.transports_in_effect(qos.transport_env({})) == qos.transports_in_effect({})   # as slowfast sets it
    assert "(yours)" in qos.transports_in_effect({qos.TRANSPORTS_VAR: "UDPv4"})
    assert "XML profile /etc/dds.xml" in qos.transports_in_effect({"FASTDDS_DEFAULT_PROFILES_FILE": "/etc/dds.xml"})
    for env in ({"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}, {"ROS_LOCALHOST_ONLY": "1"}):
        assert "is not read" in qos.transports_in_effect({**env, qos.TRANSPORTS_VAR: "UDPv4"})
        assert qos.transports_in_effect(env).startswith("the stack's on this host"), env
        assert qos.transports_in_effect({**env, **qos.transport_env(env)}) == qos.transports_in_effect(env)
        assert qos.discovery_range({**env, **qos.transport_env(env)}) == "LOCALHOST"
    assert qos.transports_in_effect({"RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"}) == "those of rmw_cyclonedds_cpp"


def test_fast_dds_takes_the_stacks_transports_as_written():
    """Fast DDS reads FASTDDS_BUILTIN_TRANSPORTS with a regular expression and, on a value it
    does not parse (an option misspelt), logs an error and falls back to its default transports:
    a node starts either way, so only its log tells."""
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    from slowfast_ros import qos  # noqa: PLC0415

    code = "import rclpy; rclpy.init(); n = rclpy.create_node('transports_probe'); n.destroy_node(); rclpy.shutdown()"
    # discovery OFF: rmw_fastrtps then keeps Fast DDS's transport set-up (LOCALHOST, this test
    # run's setting, replaces it and reads no variable) and the probe talks to nobody
    env = {**os.environ, "ROS_AUTOMATIC_DISCOVERY_RANGE": "OFF"}
    for value, ok in ((qos.TRANSPORTS, True), ("DEFAULT?socket_size=4MB", False)):
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                           env={**env, qos.TRANSPORTS_VAR: value})
        assert r.returncode == 0, r.stderr[-1000:]
        assert ("Wrong value" not in r.stdout + r.stderr) == ok, (value, r.stdout[-500:], r.stderr[-500:])


PROFILE_PROBE = """
import os, time, psutil, rclpy
from std_msgs.msg import String
rclpy.init()
n = rclpy.create_node('profile_probe')
p = n.create_publisher(String, '/profile_probe', 10)
end = time.monotonic() + 20
while time.monotonic() < end and p.get_subscription_count() == 0:
    time.sleep(0.02)
for _ in range(100):
    p.publish(String(data='x'))
    time.sleep(0.01)
me = psutil.Process()
print('udp', sorted({c.laddr.ip for c in me.net_connections(kind='udp')}))
print('shm', max(os.path.getsize(m.path) for m in me.memory_maps(grouped=False)
                 if '/dev/shm/fastdds_' in m.path and 'port' not in m.path))
n.destroy_node()
rclpy.shutdown()
"""


@pytest.mark.dds
def test_the_localhost_profile_keeps_a_node_on_loopback_with_the_large_segment_and_talks_to_rmws_localhost():
    """The stack's form of LOCALHOST discovery (qos.LOCALHOST_PROFILE): Fast DDS parses the
    profile (a wrong element only logs XMLPARSER errors, and the node starts anyway), the
    node's UDP sockets are on 127.0.0.1 only, its shared-memory segment holds a camera frame
    (8 MB, against rmw_fastrtps's 512 KB), and a node of rmw_fastrtps's own LOCALHOST set-up
    (this test process) receives what it publishes."""
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415
    import time  # noqa: PLC0415

    import rclpy  # noqa: PLC0415
    from rclpy.context import Context  # noqa: PLC0415
    from rclpy.executors import SingleThreadedExecutor  # noqa: PLC0415
    from std_msgs.msg import String  # noqa: PLC0415

    from slowfast_ros import qos  # noqa: PLC0415

    base = {k: v for k, v in os.environ.items() if k not in ("FASTDDS_DEFAULT_PROFILES_FILE", qos.TRANSPORTS_VAR)}
    base[qos.RANGE_VAR] = "LOCALHOST"
    ctx = Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node("profile_listener", context=ctx)
    got = []
    node.create_subscription(String, "/profile_probe", lambda m: got.append(m.data), 10)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    proc = subprocess.Popen([sys.executable, "-c", PROFILE_PROBE], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**base, **qos.transport_env(base)})
    try:
        end = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < end:
            ex.spin_once(timeout_sec=0.05)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
        ex.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=ctx)
    assert proc.returncode == 0 and "XMLPARSER" not in err, err[-1500:]
    lines = dict(line.split(" ", 1) for line in out.splitlines() if line.startswith(("udp ", "shm ")))
    assert lines["udp"] == "['127.0.0.1']", out
    assert int(lines["shm"]) >= 8 * 1024 * 1024, out
    assert len(got) >= 50, (len(got), err[-500:])


def test_every_compose_command_names_an_entry_point_that_exists():
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    targets = set(re.findall(r"^FROM \S+ AS (\S+)", dockerfile, flags=re.M))
    for name, svc in _compose()["services"].items():
        if "build" in svc:
            assert svc["build"]["target"] in targets, name
        cmd = svc["command"]
        cmd = shlex.split(cmd) if isinstance(cmd, str) else cmd
        if cmd[0] == "slowfast":
            assert cmd[1] in SUBCOMMANDS, name
            assert (ROOT / "slowfast_app" / "cli" / f"{SUBCOMMANDS[cmd[1]][0]}.py").is_file(), name
            if cmd[1] == "up":
                assert cmd[2] in stack.available_profiles(), name
        elif cmd[:2] == ["ros2", "run"]:
            assert cmd[2] == "slowfast_ros" and cmd[3] in NODE_MODULES, name
        elif cmd[:2] == ["ros2", "launch"]:
            assert (ROOT / "launch" / cmd[3]).is_file(), name
        else:
            pytest.fail(f"service {name}: unknown entry point {cmd[0]}")


def test_ci_and_readme_use_make_test():
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert readme.index("make demo") < readme.index("make test")


def test_config_files_set_only_declared_parameters_and_none_at_its_default():
    """Each value is defined once: a node's dataclass holds the default, its parameter file
    only what a deployment changes (a value equal to the default would be a second copy that
    drifts). `slowfast params NODE` shows them all."""
    from slowfast_app.cli import params as params_cli

    nodes = params_cli._nodes()  # noqa: SLF001
    checked = 0
    for yml in sorted((PKG / "slowfast_ros" / "config").glob("*.yaml")):
        data = yaml.safe_load(yml.read_text())
        for node, body in data.items():
            keys = stack._flatten(body["ros__parameters"] or {})   # noqa: SLF001 - nested keys as ROS joins them
            assert node in nodes, (yml.name, node)
            defaults = {r["name"]: r["default"] for r in params_cli.describe(node, nodes[node])}
            unknown = set(keys) - set(defaults) - stack.ROS_NODE_PARAMETERS   # use_sim_time is ROS's own
            assert not unknown, (yml.name, unknown)   # no typo'd or stale key
            for k, v in keys.items():
                if k not in defaults:
                    continue
                d = list(defaults[k]) if isinstance(defaults[k], tuple) else defaults[k]
                same = float(v) == d if isinstance(d, float) and isinstance(v, (int, float)) else v == d
                assert not same, f"{yml.name}: {node}.{k} = {v!r} restates the default"
            checked += 1
    assert checked >= len([p for p in (PKG / "slowfast_ros" / "config").glob("*.yaml")])


def test_profile_arguments_default_to_what_their_node_starts_with():
    """A profile argument without a ``default`` takes the value its first target starts with
    (the node's parameter files, else its dataclass), so it is written once; an explicit
    ``default`` is there only where the profile starts the node differently (``robot-nav``
    runs the model on cuda)."""
    checked = 0
    for name in stack.available_profiles():
        raw = yaml.safe_load((stack.profile_dir() / f"{name}.yaml").read_text())
        prof = stack.load_profile(name)
        for a in prof.arguments:
            started = stack._started_with(prof.nodes, a.targets[0])   # noqa: SLF001
            if "default" in raw["arguments"][a.name]:
                assert a.default != started, f"{name}: argument {a.name} restates {started!r}"
            else:
                assert a.default == started and type(a.default) is type(started), (name, a.name)
            checked += 1
    assert checked >= 30
    assert stack.load_profile("teleop").arguments[0].default == 8082   # ServerConfig's port, typed
