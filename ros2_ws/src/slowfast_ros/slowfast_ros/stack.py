"""Stack profiles: which nodes run together, with which parameter files.

A profile is ``launch/profiles/<name>.yaml``. The ROS 2 launch files in ``launch/`` read the
same profiles (through :func:`load_profile`) to build ``launch_ros`` Node actions, and
``slowfast up`` starts the same nodes as plain processes on machines without ``launch``,
so both paths run exactly the same nodes with the same parameters.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

_PKG_DIR = Path(__file__).resolve().parent          # .../slowfast_ros/slowfast_ros
_SOURCE_ROOT = _PKG_DIR.parents[3]                   # repository root in a source checkout


def _share_dir() -> Path | None:
    try:
        from ament_index_python.packages import get_package_share_directory  # noqa: PLC0415

        return Path(get_package_share_directory("slowfast_ros"))
    except Exception:  # noqa: BLE001 - not a colcon install
        return None


def profile_dir() -> Path:
    env = os.environ.get("SLOWFAST_PROFILE_DIR")
    candidates = [Path(env)] if env else []
    candidates.append(_SOURCE_ROOT / "launch" / "profiles")
    share = _share_dir()
    if share is not None:
        candidates.append(share / "launch" / "profiles")
    for c in candidates:
        if c.is_dir():
            return c
    raise FileNotFoundError("no launch/profiles folder found (set SLOWFAST_PROFILE_DIR)")


def config_dir() -> Path:
    env = os.environ.get("SLOWFAST_CONFIG_DIR")
    candidates = [Path(env)] if env else []
    candidates.append(_PKG_DIR.parent / "config")
    share = _share_dir()
    if share is not None:
        candidates.append(share / "config")
    for c in candidates:
        if c.is_dir():
            return c
    raise FileNotFoundError("no slowfast_ros config folder found (set SLOWFAST_CONFIG_DIR)")


@dataclass
class NodeSpec:
    name: str
    module: str
    params: list[str] = field(default_factory=list)     # YAML files, relative to config_dir()
    namespace: str = ""
    overrides: dict = field(default_factory=dict)

    @property
    def executable(self) -> str:
        """The console script of the ament package (what `ros2 run` and launch_ros start)."""
        return self.module.rsplit(".", 1)[-1]

    def param_files(self) -> list[Path]:
        return [config_dir() / p for p in self.params]


@dataclass
class Argument:
    """A profile argument (`ros2 launch ... NAME:=VALUE`, `slowfast up ... NAME:=VALUE`)
    that sets one or more node parameters."""
    name: str
    default: object
    targets: list[str]          # "node.param"
    description: str = ""


@dataclass
class Profile:
    name: str
    description: str
    nodes: list[NodeSpec]
    arguments: list[Argument] = field(default_factory=list)

    def resolve(self, values: dict[str, str]) -> dict[str, dict]:
        """Argument values (strings, parsed as YAML scalars) -> per-node parameter overrides.
        Arguments not given keep the parameter files' values."""
        known = {a.name: a for a in self.arguments}
        unknown = set(values) - set(known)
        if unknown:
            raise ValueError(f"profile '{self.name}' has no argument(s) {', '.join(sorted(unknown))} "
                             f"(arguments: {', '.join(known) or 'none'})")
        out: dict[str, dict] = {}
        for name, raw in values.items():
            value = _typed(known[name], raw)
            for target in known[name].targets:
                node, _, pname = target.partition(".")
                out.setdefault(node, {})[pname] = value
        return out


def _typed(arg: Argument, raw):
    """A profile argument's value in the type of its default, as `ros2 launch` would pass
    it: a serial number like 123622270136 stays a string when the default is a string."""
    if not isinstance(raw, str):
        return raw
    default = arg.default
    try:
        if isinstance(default, bool):
            v = yaml.safe_load(raw)
            if not isinstance(v, bool):
                raise ValueError
            return v
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
    except ValueError:
        kinds = {bool: "true or false", int: "an integer", float: "a number"}
        raise ValueError(f"argument {arg.name}:={raw!r}: expected {kinds[type(default)]}") from None
    if isinstance(default, str) or default is None:
        return raw
    return yaml.safe_load(raw) if raw != "" else raw


def available_profiles() -> list[str]:
    return sorted(p.stem for p in profile_dir().glob("*.yaml"))


def load_profile(name: str) -> Profile:
    path = profile_dir() / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(f"unknown profile '{name}' (available: {', '.join(available_profiles())})")
    data = yaml.safe_load(path.read_text()) or {}
    nodes = []
    for i, n in enumerate(data.get("nodes", [])):
        missing = {"name", "module"} - set(n)
        if missing:
            raise ValueError(f"{path}: node {i} lacks {', '.join(sorted(missing))}")
        nodes.append(NodeSpec(name=n["name"], module=n["module"], params=list(n.get("params", [])),
                              namespace=n.get("namespace", ""), overrides=dict(n.get("overrides", {}))))
    if not nodes:
        raise ValueError(f"{path}: profile has no nodes")
    arguments = []
    node_names = {n.name for n in nodes}
    for aname, a in (data.get("arguments") or {}).items():
        targets = list(a.get("sets", []))
        bad = [t for t in targets if t.partition(".")[0] not in node_names or "." not in t]
        if bad:
            raise ValueError(f"{path}: argument {aname} sets unknown node parameter(s) {', '.join(bad)}")
        arguments.append(Argument(aname, a.get("default"), targets, a.get("description", "")))
    return Profile(name=name, description=data.get("description", ""), nodes=nodes, arguments=arguments)


def parse_sets(items: list[str]) -> dict[str, dict]:
    """``["sim_node.task=lift", "expert_node.control_hz=500"]`` -> {node: {param: value}};
    values parse as YAML scalars (numbers, booleans, strings)."""
    out: dict[str, dict] = {}
    for item in items:
        key, sep, value = item.partition("=")
        node, dot, pname = key.partition(".")
        if not sep or not dot or not node or not pname:
            raise ValueError(f"--set {item!r}: expected NODE.PARAM=VALUE")
        out.setdefault(node, {})[pname] = yaml.safe_load(value) if value != "" else ""
    return out


def _ros_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)  # a YAML double-quoted string, so '' and 'true' stay strings
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(_ros_value(x) for x in v) + "]"
    return repr(v)


def node_command(spec: NodeSpec, overrides: dict | None = None) -> list[str]:
    cmd = [sys.executable, "-m", spec.module, "--ros-args", "-r", f"__node:={spec.name}"]
    if spec.namespace:
        cmd += ["-r", f"__ns:=/{spec.namespace.strip('/')}"]
    for f in spec.param_files():
        if not f.is_file():
            raise FileNotFoundError(f"parameter file {f} of node {spec.name} not found")
        cmd += ["--params-file", str(f)]
    for k, v in {**spec.overrides, **(overrides or {})}.items():
        cmd += ["-p", f"{k}:={_ros_value(v)}"]
    return cmd


class Stack:
    """The processes of one profile. Use as a context manager: leaving it stops them all
    (SIGINT first so nodes shut down cleanly, then SIGTERM, then SIGKILL)."""

    def __init__(self, profile: Profile, overrides: dict[str, dict] | None = None,
                 log_dir: Path | None = None, env: dict | None = None):
        overrides = overrides or {}
        unknown = set(overrides) - {n.name for n in profile.nodes}
        if unknown:
            raise ValueError(f"--set names node(s) {', '.join(sorted(unknown))} not in profile "
                             f"'{profile.name}' ({', '.join(n.name for n in profile.nodes)})")
        self.profile = profile
        self.commands = {n.name: node_command(n, overrides.get(n.name)) for n in profile.nodes}
        self.log_dir = log_dir
        self.env = {**os.environ, **(env or {})}
        self.procs: dict[str, subprocess.Popen] = {}
        self._logs = []

    def __enter__(self) -> "Stack":
        for name, cmd in self.commands.items():
            out = None
            if self.log_dir is not None:
                self.log_dir.mkdir(parents=True, exist_ok=True)
                out = open(self.log_dir / f"{name}.log", "w")  # noqa: SIM115 - closed in stop()
                self._logs.append(out)
            self.procs[name] = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT if out else None,
                                                env=self.env, start_new_session=out is not None)
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def wait(self, primary: str | None = None, timeout: float | None = None,
             poll=None) -> tuple[str, int | None]:
        """Wait until ``primary`` exits (or any node, when None), the timeout passes, or
        Ctrl-C. Returns (name of the node that ended, its exit code) or ("timeout", None)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            for name, p in self.procs.items():
                rc = p.poll()
                if rc is not None and (primary is None or name == primary or rc != 0):
                    return name, rc
            if deadline is not None and time.monotonic() > deadline:
                return "timeout", None
            if poll is not None:
                poll()
            time.sleep(0.2)

    def any_exited(self) -> bool:
        return any(p.poll() is not None for p in self.procs.values())

    def last_line(self, name: str) -> str:
        if self.log_dir is None:
            return ""
        try:
            lines = [ln for ln in (self.log_dir / f"{name}.log").read_text().splitlines() if ln.strip()]
        except OSError:
            return ""
        return lines[-1] if lines else ""

    def stop(self, grace: float = 5.0) -> None:
        alive = [p for p in self.procs.values() if p.poll() is None]
        for sig, wait in ((signal.SIGINT, grace), (signal.SIGTERM, 2.0), (signal.SIGKILL, 2.0)):
            for p in alive:
                if p.poll() is None:
                    p.send_signal(sig)
            end = time.monotonic() + wait
            while time.monotonic() < end and any(p.poll() is None for p in alive):
                time.sleep(0.05)
            alive = [p for p in alive if p.poll() is None]
            if not alive:
                break
        for f in self._logs:
            f.close()
        self._logs.clear()
