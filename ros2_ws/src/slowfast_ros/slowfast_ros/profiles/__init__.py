"""Stack profiles: which nodes run together, with which parameter files.

A profile is ``slowfast_ros/profiles/<name>.yaml``, package data next to this module. The ROS 2
launch files in ``launch/`` read the same profiles (through :func:`load_profile`) to build
``launch_ros`` Node actions, and ``slowfast up`` (:mod:`slowfast_app.stack`) starts the same
nodes as plain processes on machines without ``launch``, so both paths run exactly the same
nodes with the same parameters. This module is the profile model and loader only; it starts
nothing.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

_PROFILE_DIR = Path(__file__).resolve().parent     # the profiles are package data: <name>.yaml here
_PKG_DIR = _PROFILE_DIR.parent                     # slowfast_ros; its config/ holds the parameter files
# The repository root in a source checkout (ros2_ws/src/slowfast_ros/slowfast_ros); only the Gazebo
# launch file's fallback for gazebo/ uses it. Installed, profiles and config need no checkout.
_SOURCE_ROOT = _PKG_DIR.parents[3] if len(_PKG_DIR.parents) > 3 else _PKG_DIR


def _share_dir() -> Path | None:
    try:
        from ament_index_python.packages import get_package_share_directory  # noqa: PLC0415

        return Path(get_package_share_directory("slowfast_ros"))
    except Exception:  # noqa: BLE001 - not a colcon install
        return None


def _first_with_yaml(candidates: list[Path]) -> Path | None:
    for c in candidates:
        if c.is_dir() and any(c.glob("*.yaml")):
            return c
    return None


def profile_dir() -> Path:
    """SLOWFAST_PROFILE_DIR, else this package's own profiles (a checkout or `pip install`),
    else the colcon install's share/slowfast_ros/launch/profiles."""
    env = os.environ.get("SLOWFAST_PROFILE_DIR")
    candidates = [Path(env)] if env else []
    candidates.append(_PROFILE_DIR)
    share = _share_dir()
    if share is not None:
        candidates.append(share / "launch" / "profiles")
    found = _first_with_yaml(candidates)
    if found is None:
        raise FileNotFoundError("no stack profiles folder found (set SLOWFAST_PROFILE_DIR)")
    return found


def config_dir() -> Path:
    """SLOWFAST_CONFIG_DIR, else this package's config/ (a checkout or `pip install`), else
    the colcon install's share/slowfast_ros/config."""
    env = os.environ.get("SLOWFAST_CONFIG_DIR")
    candidates = [Path(env)] if env else []
    candidates.append(_PKG_DIR / "config")
    share = _share_dir()
    if share is not None:
        candidates.append(share / "config")
    found = _first_with_yaml(candidates)
    if found is None:
        raise FileNotFoundError("no slowfast_ros config folder found (set SLOWFAST_CONFIG_DIR)")
    return found


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
    stated: bool = False        # the profile states the default (else: the value the node starts with)


@dataclass
class Profile:
    name: str
    description: str
    nodes: list[NodeSpec]
    arguments: list[Argument] = field(default_factory=list)

    def resolve(self, values: dict[str, str]) -> dict[str, dict]:
        """Argument values (strings, parsed as YAML scalars) -> per-node parameter overrides.
        An argument not given takes the default the profile states, as `ros2 launch` does
        (``DeclareLaunchArgument(default_value=...)``); without a stated default the parameter
        files' value stays."""
        known = {a.name: a for a in self.arguments}
        unknown = set(values) - set(known)
        if unknown:
            raise ValueError(f"profile '{self.name}' has no argument(s) {', '.join(sorted(unknown))} "
                             f"(arguments: {', '.join(known) or 'none'})")
        out: dict[str, dict] = {}
        stated = {a.name: a.default for a in self.arguments if a.stated and a.name not in values}
        for name, raw in {**stated, **values}.items():
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
        arguments.append(Argument(aname, default, targets, a.get("description", ""), stated="default" in a))
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

