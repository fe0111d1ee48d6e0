"""Small helpers every node shares: typed parameter declaration, a clean main(), rate meters.

A node declares its parameters from a dataclass of defaults and descriptions, so the
parameter list, its types and its documentation live in one place and the YAML in
``config/`` only overrides values.
"""
from __future__ import annotations

import signal
import sys
import threading
import time
from collections import deque

import rclpy
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.exceptions import InvalidParameterTypeException
from rclpy.node import Node

from slowfast_data.fields import build, described, field_default, flat_fields  # noqa: F401 (re-exported)

#: a node parameter field: default, description and optional range (``slowfast_data.fields.described``)
param = described


def declare_params(node: Node, spec) -> object:
    """Declare one ROS parameter per field of the dataclass ``spec`` (class or instance): the
    field default is the parameter default, its description and range (``described``) the
    parameter's; a field holding a core config dataclass becomes ``field.inner`` parameters
    (``safety.max_speed``). Returns an instance filled with the values the node was started
    with; the dataclasses' own validation runs on them, so a bad parameter stops the node."""
    values = {}
    for fl in flat_fields(spec):
        default = fl.default
        # A float parameter also takes an integer (`camera_hz:=0`): typed dynamically, checked here.
        is_float = isinstance(default, float)
        help_ = fl.help
        if fl.range is not None:
            lo, hi = fl.range
            help_ += f" [{'-inf' if lo is None else f'{lo:g}'}, {'inf' if hi is None else f'{hi:g}'}]"
        desc = ParameterDescriptor(description=help_, dynamic_typing=is_float)
        if isinstance(default, (list, tuple)):
            default = list(default)
        try:
            param = node.declare_parameter(fl.name, default, desc)
        except InvalidParameterTypeException as exc:
            raise ValueError(f"parameter {fl.name}: {exc}") from None
        value = param.value
        if is_float and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ValueError(f"parameter {fl.name}: {value!r} is not a number")
        values[fl.name] = value
    refuse_undeclared(node)
    return build(spec, values)


def refuse_undeclared(node: Node) -> None:
    """A parameter given to the node (``-p``, a parameter file) that it never declared is a
    typo or a stale setting: rclpy would ignore it silently, so the node refuses to start."""
    from slowfast_ros.profiles import unknown_parameter_message  # noqa: PLC0415

    declared = set(node._parameters)  # noqa: SLF001 - rclpy keeps no public list of names
    given = set(getattr(node, "_parameter_overrides", {}))
    unknown = sorted(n for n in given - declared if not n.startswith("qos_overrides."))
    if unknown:
        raise ValueError(unknown_parameter_message(node.get_name(), unknown[0], declared))


_STOP = threading.Event()


def helper_node(parent: Node, suffix: str) -> Node:
    """A second node in ``parent``'s process and context, named ``<parent>_<suffix>``, that no
    executor spins (its subscriptions are polled) and that serves no parameters. Its name is
    set by a node-local remap: the process's ``-r __node:=<name>`` (how ``slowfast up`` and
    launch_ros name a node) renames every node of the process, so the helper would otherwise
    take the parent's name, and ``ros2 node list`` would show two nodes of that name. The
    global topic remaps still apply to it."""
    name = f"{parent.get_name()}_{suffix}"
    return rclpy.create_node(name, namespace=parent.get_namespace(), context=parent.context,
                             cli_args=["--ros-args", "-r", f"__node:={name}"], start_parameter_services=False)


def wait_for_publishers(node: Node, topics, stop: threading.Event, timeout: float = 120.0) -> None:
    """Return once every topic in ``topics`` has a publisher, ``stop`` is set, or after
    ``timeout`` seconds (then with one warning: the caller starts anyway)."""
    topics, deadline = [t for t in topics if t], time.monotonic() + timeout
    while topics and not stop.is_set():
        if not (topics := [t for t in topics if node.count_publishers(t) == 0]):
            return
        if time.monotonic() > deadline:
            node.get_logger().warning(f"no publisher on {topics} after {timeout:g} s: starting anyway")
            return
        time.sleep(0.1)


def flush_events(publisher, timeout: float = 2.0) -> bool:
    """Wait until every subscriber has acknowledged what a reliable ``publisher`` sent (at most
    ``timeout`` s): a node about to exit after its last event (a sim's episode ``end``) would
    otherwise take the message down with its participant before a loaded reader got it."""
    from rclpy.duration import Duration  # noqa: PLC0415

    try:
        return bool(publisher.wait_for_all_acked(Duration(seconds=timeout)))
    except Exception:  # noqa: BLE001 - shutting down anyway: never fail the exit over this
        return False


def _raise_interrupt(_signum, _frame):
    _STOP.set()
    raise KeyboardInterrupt


def node_now(node: Node) -> float:
    """``node``'s ROS time (s), what ``node.get_clock().now()`` gives, at a tenth of its cost
    when no /clock drives it (``use_sim_time`` off): ROS time is then the system clock
    (CLOCK_REALTIME), read here directly. rclpy builds a Time object per call, ~23 us on the
    project's 2-core VM against ~2 us here; the control loop reads the clock twice a tick."""
    return node_now_ns(node) * 1e-9


def node_now_ns(node: Node) -> int:
    """:func:`node_now` in integer nanoseconds (bag timestamps)."""
    clock = node.get_clock()
    if clock.ros_time_is_active:
        return clock.now().nanoseconds
    return time.time_ns()


def run_node(factory, args=None, events_executor: bool = False) -> int:
    """Init rclpy, build the node with ``factory()``, spin until shutdown.

    ``events_executor``: spin with rclpy's EventsExecutor (callbacks dispatched from C++
    without rebuilding a wait set each time), for a node whose work is many small
    callbacks: the recorder. The others keep the SingleThreadedExecutor.

    A ``ValueError`` raised while building (an invalid parameter, a missing file) prints
    one line and exits with status 2: a node refuses to start rather than run misconfigured.

    SIGINT, SIGTERM and SIGHUP all end the spin the same way, with the ROS context still up,
    so that the node's ``close()`` can still publish (a policy node holds its arm there)
    before the node is destroyed; rclpy's own handlers would shut the context down first.
    """
    from rclpy.executors import SingleThreadedExecutor  # noqa: PLC0415
    from rclpy.signals import SignalHandlerOptions  # noqa: PLC0415

    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_interrupt)
    node = None
    try:
        try:
            node = factory()
        except (ValueError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        if events_executor:
            from rclpy.experimental import EventsExecutor  # noqa: PLC0415
            executor = EventsExecutor()
        else:
            executor = SingleThreadedExecutor()
        executor.add_node(node)
        while rclpy.ok():
            executor.spin_once(timeout_sec=0.1)  # wakes often enough for a signal to land promptly
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass
    except RuntimeError:
        # the interrupt landed inside rclpy's C++ (a message conversion), which re-raises it
        # as "RuntimeError: Unable to convert call argument": a signal, not a failure
        if not _STOP.is_set():
            raise
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # a second signal must not cut close() short
        if node is not None:
            close = getattr(node, "close", None)
            if close is not None:
                close()
            node.destroy_node()
        if rclpy.ok():
            rclpy.try_shutdown()
    return 0 if node is None or getattr(node, "exit_code", 0) == 0 else int(node.exit_code)


class RateMeter:
    """Counts events over a sliding window of wall time; thread-safe."""

    def __init__(self, window_s: float = 2.0):
        self.window = window_s
        self._times: deque[float] = deque()
        self._lock = threading.Lock()
        self.count = 0

    def tick(self, t: float | None = None) -> None:
        t = time.monotonic() if t is None else t
        with self._lock:
            self.count += 1
            self._times.append(t)
            while self._times and t - self._times[0] > self.window:
                self._times.popleft()

    def rate(self) -> float:
        with self._lock:
            if len(self._times) < 2:
                return 0.0
            span = self._times[-1] - self._times[0]
            return (len(self._times) - 1) / span if span > 0 else 0.0


class PacedLoop:
    """Calls ``tick()`` at ``hz`` from a dedicated thread, paced by the monotonic clock
    (never by an executor timer). Ticks that would start late by more than a period are
    skipped, not bunched up; every period error is recorded for diagnostics."""

    def __init__(self, hz: float, tick, name: str = "loop", history: int = 4000, rt_priority: int = 0, warn=None):
        """``rt_priority`` > 0: SCHED_FIFO for the loop thread where permitted; ``warn`` gets the
        one line saying it is not (see :func:`hardware.realtime.enter_realtime`)."""
        if not (0 < hz <= 2000):
            raise ValueError(f"loop rate {hz} Hz outside (0, 2000]")
        from hardware.realtime import check_scheduling  # noqa: PLC0415

        check_scheduling(rt_priority, -1)
        self.period = 1.0 / hz
        self.rt_priority = rt_priority
        self.rt_active = False
        self._warn = warn
        self._tick = tick
        self._stop = threading.Event()
        self.errors: deque[float] = deque(maxlen=history)  # start-time error of each tick, s
        self.overruns = 0
        self.meter = RateMeter()
        self.failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> "PacedLoop":
        from hardware.realtime import bound_gil_wait  # noqa: PLC0415

        bound_gil_wait(self.period)
        self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _run(self) -> None:
        if self.rt_priority:
            from hardware.realtime import enter_realtime  # noqa: PLC0415

            # SCHED_FIFO for this thread only; without CAP_SYS_NICE / an rtprio limit it runs
            # as a normal thread, and says so once
            self.rt_active = enter_realtime(self.rt_priority, -1, memory=False, warn=self._warn).realtime
        next_t = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            if now < next_t:
                # Coarse sleep, then a short spin for the last 0.3 ms: time.sleep overshoots.
                if next_t - now > 0.0004:
                    time.sleep(next_t - now - 0.0003)
                while time.monotonic() < next_t:
                    pass
                now = time.monotonic()
            self.errors.append(now - next_t)
            self.meter.tick(now)
            try:
                self._tick()
            except Exception as exc:  # noqa: BLE001 - a failing tick stops the loop, loudly
                if not rclpy.ok():
                    break   # Ctrl-C / stack stop: publishers die under a running tick
                self.failure = exc
                self._stop.set()
                raise
            next_t += self.period
            if time.monotonic() > next_t + self.period:
                skipped = int((time.monotonic() - next_t) / self.period)
                self.overruns += skipped
                next_t += skipped * self.period

    def period_error_ms(self) -> dict[str, float]:
        import numpy as np  # noqa: PLC0415

        if not self.errors:
            return {"p50": float("nan"), "p99": float("nan")}
        e = np.abs(np.fromiter(self.errors, float)) * 1e3
        return {"p50": float(np.percentile(e, 50)), "p99": float(np.percentile(e, 99))}
