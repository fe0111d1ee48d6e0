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
import threading
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
        default = a["default"] if "default" in a else _started_with(nodes, targets[0] if targets else "")
        arguments.append(Argument(aname, default, targets, a.get("description", "")))
    return Profile(name=name, description=data.get("description", ""), nodes=nodes, arguments=arguments)


def _started_with(nodes: list[NodeSpec], target: str):
    """The value node parameter ``target`` ("node.param") starts with in a profile: its
    overrides, else its parameter files, else the node's own default. A profile argument
    without a ``default`` takes it, so the value is written once (in the node's dataclass)."""
    import importlib  # noqa: PLC0415

    from slowfast_data.fields import flat_fields  # noqa: PLC0415

    node, _, pname = target.partition(".")
    spec = next((n for n in nodes if n.name == node), None)
    if spec is None:
        raise ValueError(f"argument target {target!r}: no node {node!r} in the profile")
    given = {}
    for path in spec.param_files():
        given.update(file_parameters(path, spec.name, spec.namespace))
    given.update(_flatten(spec.overrides))
    if pname in given:
        return given[pname]
    defaults = {f.name: f.default for f in flat_fields(importlib.import_module(spec.module).PARAMS)}
    if pname not in defaults:
        raise ValueError(f"argument target {target!r}: {spec.module} declares no parameter {pname!r}")
    d = defaults[pname]
    return list(d) if isinstance(d, tuple) else d


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


# Parameters every rclpy node declares itself, besides its own.
ROS_NODE_PARAMETERS = frozenset({"use_sim_time", "start_type_description_service"})


def declared_parameters(module: str) -> frozenset[str] | None:
    """The parameter names a node module declares (its ``PARAMS`` dataclass), or None for a
    module that does not say (it is then not checked here)."""
    import importlib  # noqa: PLC0415

    from slowfast_data.fields import flat_fields  # noqa: PLC0415

    params = getattr(importlib.import_module(module), "PARAMS", None)
    if params is None:
        return None
    return frozenset(f.name for f in flat_fields(params)) | ROS_NODE_PARAMETERS


def node_params(node: str, module: str, overrides: dict | None = None):
    """The ``PARAMS`` dataclass of node ``module`` as the node gets it from its shipped
    parameter file (``<config>/<node>.yaml``) with ``overrides`` on top: for code that runs a
    node's core in-process with the node's own settings. ValueError on an undeclared name or
    a value the dataclass refuses."""
    import importlib  # noqa: PLC0415

    from slowfast_data.fields import build, flat_fields  # noqa: PLC0415

    cls = importlib.import_module(module).PARAMS
    names = {f.name for f in flat_fields(cls)}
    given = file_parameters(config_dir() / f"{node}.yaml", node)
    given.update(_flatten(overrides or {}))
    for k in given:
        if k not in names and not _is_known(k, ROS_NODE_PARAMETERS):
            raise ValueError(unknown_parameter_message(node, k, names))
    return build(cls, {k: v for k, v in given.items() if k in names})


def unknown_parameter_message(node: str, name: str, declared) -> str:
    import difflib  # noqa: PLC0415

    close = difflib.get_close_matches(name, sorted(declared), n=1, cutoff=0.6)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"{node} declares no parameter '{name}'{hint}"


def _is_known(name: str, declared) -> bool:
    return name in declared or name.startswith("qos_overrides.")


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def file_parameters(path: Path, node: str, namespace: str = "") -> dict:
    """The parameters a ROS 2 parameter file gives ``node`` (its own section, its namespaced
    name, and the ``/**`` wildcard), nested keys joined with dots as ROS does."""
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a ROS 2 parameter file (a mapping of node names expected)")
    ns = namespace.strip("/")
    names = {node, f"/{node}", "/**", "**"}
    if ns:
        names |= {f"{ns}/{node}", f"/{ns}/{node}", f"/{ns}/**"}
    out = {}
    for key, section in data.items():
        if str(key) in names and isinstance(section, dict):
            out.update(_flatten(section.get("ros__parameters") or {}))
    return out


def check_parameters(spec: NodeSpec, overrides: dict | None = None) -> None:
    """Refuse, before anything starts, a parameter the node does not declare: from the
    profile, an argument or ``--set`` (``overrides``), or a key in one of its parameter files."""
    declared = declared_parameters(spec.module)
    if declared is None:
        return
    for f in spec.param_files():
        if f.is_file():
            for name in file_parameters(f, spec.name, spec.namespace):
                if not _is_known(name, declared):
                    raise ValueError(f"{f}: {unknown_parameter_message(spec.name, name, declared)}")
    for name in {**spec.overrides, **(overrides or {})}:
        if not _is_known(name, declared):
            raise ValueError(f"parameter {spec.name}.{name}: {unknown_parameter_message(spec.name, name, declared)}")


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


_DOMAIN_LOCKS: list = []   # lock files held (open) until this process exits


def claim_domain(first: int = 20, count: int = 80) -> int:
    """A ROS 2 domain id in ``first..first+count-1`` that no other process on this machine
    has claimed this way (an exclusive lock file per id, held until this process exits): a
    benchmark's or a test run's stack then hears nothing but itself."""
    import fcntl  # noqa: PLC0415
    import tempfile  # noqa: PLC0415

    start = os.getpid() % count
    for i in range(count):
        domain = first + (start + i) % count
        fh = open(os.path.join(tempfile.gettempdir(), f"slowfast-ros-domain-{domain}.lock"), "w")  # noqa: SIM115
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            continue
        _DOMAIN_LOCKS.append(fh)
        return domain
    raise RuntimeError(f"no free ROS_DOMAIN_ID in {first}..{first + count - 1}")


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
        for n in profile.nodes:
            check_parameters(n, overrides.get(n.name))
        self.profile = profile
        self.commands = {n.name: node_command(n, overrides.get(n.name)) for n in profile.nodes}
        self.log_dir = log_dir
        from slowfast_ros.qos import transport_env  # noqa: PLC0415

        self.env = {**os.environ, **(env or {})}
        self.env.update(transport_env(self.env))
        self.procs: dict[str, subprocess.Popen] = {}
        self._logs = []

    def __enter__(self) -> "Stack":
        try:
            for name, cmd in self.commands.items():
                out = None
                if self.log_dir is not None:
                    self.log_dir.mkdir(parents=True, exist_ok=True)
                    out = open(self.log_dir / f"{name}.log", "w")  # noqa: SIM115 - closed in stop()
                    self._logs.append(out)
                self.procs[name] = start_child(cmd, stdout=out, stderr=subprocess.STDOUT if out else None,
                                               env=self.env)
        except BaseException:
            self.stop()
            raise
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

    def stop(self, grace: float | None = None) -> None:
        """SIGINT to every node's process group (nodes hold their arm and close their files),
        SIGKILL to whatever is left after ``grace`` seconds. Signals that arrive meanwhile
        (a second Ctrl-C, SIGTERM) do not interrupt it."""
        with deferred_signals():
            stop_children(list(self.procs.values()), STOP_GRACE_S if grace is None else grace)
            for f in self._logs:
                f.close()
            self._logs.clear()


# ----------------------------------------------------------------- child processes

# Seconds a node has, after SIGINT, to hold its arm and close its files before SIGKILL.
STOP_GRACE_S = 1.0
_PR_SET_PDEATHSIG = 1


def _child_setup(parent_pid: int) -> None:  # pragma: no cover - runs in the child before exec
    """Own process group (so a stop reaches the node's own children too), and SIGTERM when
    the parent dies, however it dies (SIGKILL included): no node outlives its launcher."""
    import ctypes  # noqa: PLC0415

    os.setsid()
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: the parent's own signal handling still stops the node
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def start_child(cmd: list[str], **kwargs) -> subprocess.Popen:
    """Start a node (or any helper process) that dies with this process."""
    parent = os.getpid()
    return subprocess.Popen(cmd, preexec_fn=lambda: _child_setup(parent), **kwargs)  # noqa: PLW1509


def stop_children(procs: list[subprocess.Popen], grace: float | None = None) -> None:
    """SIGINT to each child's process group, then SIGKILL to the groups still alive after
    ``grace`` seconds; returns once every child has been reaped."""
    def signal_groups(sig) -> None:
        for p in procs:
            try:
                os.killpg(p.pid, sig)   # the child's group: it and what it started
            except (ProcessLookupError, PermissionError):
                pass

    alive = [p for p in procs if p.poll() is None]
    signal_groups(signal.SIGINT)
    end = time.monotonic() + (STOP_GRACE_S if grace is None else grace)
    while time.monotonic() < end and any(p.poll() is None for p in alive):
        time.sleep(0.02)
    signal_groups(signal.SIGKILL)
    for p in procs:
        try:
            p.wait(timeout=5.0)
        except subprocess.TimeoutExpired:  # pragma: no cover - a process in uninterruptible sleep
            pass


class Stop(BaseException):
    """Raised in the main thread on SIGTERM or SIGHUP so that every ``with Stack(...)`` and
    ``finally`` unwinds (stopping the nodes) before the command exits."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_stop(signum, _frame):
    raise Stop(signum)


def install_stop_handlers() -> None:
    """SIGTERM and SIGHUP unwind the command like Ctrl-C does (SIGINT stays KeyboardInterrupt)."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_stop)


class deferred_signals:  # noqa: N801 - used as a context manager
    """Hold SIGINT/SIGTERM/SIGHUP while the nodes are being stopped; re-deliver the first one
    afterwards so the command still exits for it."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __enter__(self):
        self.pending: list[int] = []
        self.saved = {}
        if threading.current_thread() is not threading.main_thread():
            return self
        for sig in self.SIGNALS:
            self.saved[sig] = signal.signal(sig, lambda s, _f: self.pending.append(s))
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self.saved.items():
            signal.signal(sig, handler)
        if self.pending and exc[0] is None:
            os.kill(os.getpid(), self.pending[0])
