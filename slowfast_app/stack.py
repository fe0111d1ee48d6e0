"""Run a stack profile's nodes as plain processes (`slowfast up`, the benchmarks, the tests).

The profile model and loader live in :mod:`slowfast_ros.profiles` (the ROS 2 launch files read
it too); they are re-exported here so that application code needs one import.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from slowfast_ros.profiles import (  # noqa: F401 - re-exported for the application
    ROS_NODE_PARAMETERS,
    Argument,
    NodeSpec,
    Profile,
    _flatten,
    _started_with,
    available_profiles,
    check_parameters,
    config_dir,
    declared_parameters,
    file_parameters,
    load_profile,
    node_params,
    parse_sets,
    profile_dir,
    unknown_parameter_message,
)


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

# Seconds a node has, after SIGINT, to hold its arm and close its files before SIGKILL. A
# policy node with torch and onnxruntime loaded takes ~1.2 s to its exit on a 2-core machine;
# killed before, its DDS shared-memory segments stay in /dev/shm.
STOP_GRACE_S = 3.0
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
    """SIGTERM and SIGHUP unwind the command like Ctrl-C does (SIGINT stays KeyboardInterrupt).
    A process inherits its parent's blocked signals and ignored ones across exec (a supervisor,
    a test runner, ``nohup``): the command unblocks all three and takes SIGINT back, so a stop
    signal always reaches it and it always stops its nodes."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM, signal.SIGHUP})
    signal.signal(signal.SIGINT, signal.default_int_handler)
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
