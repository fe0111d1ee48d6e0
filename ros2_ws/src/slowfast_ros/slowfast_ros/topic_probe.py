"""Measure what a running stack publishes: per-topic rate, stamp monotonicity, latency.

Used by `slowfast bench` and by the DDS tests. Runs its own node in a background executor
thread; subscribes with the sensor QoS and records, per message, the receipt time and the
header stamp (both ROS clock seconds).
"""
from __future__ import annotations

import threading
import time

from diagnostic_msgs.msg import DiagnosticArray
import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor

from slowfast_ros import msgs, qos
from slowfast_ros.node_util import node_now


class TopicProbe:
    def __init__(self, topics: dict[str, type], node_name: str = "slowfast_probe", reliable: bool = True,
                 keep: tuple[str, ...] = ()):
        """``keep``: topics whose messages are kept too (``messages``), from the start: a
        subscription made mid-test waits for discovery again and can miss what it needs."""
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(node_name, context=self.context)
        self._lock = threading.Lock()
        self.samples: dict[str, list[tuple[float, float]]] = {t: [] for t in topics}
        self._last: dict[str, object] = {}
        self.messages: dict[str, list] = {t: [] for t in keep}
        profile = qos.RECORD_SUB if reliable else qos.SENSOR_SUB
        for name, mtype in topics.items():
            self.node.create_subscription(mtype, name, lambda m, n=name: self._on(n, m), profile)
        # /diagnostics from the start: a subscription made when a test asks would wait for
        # discovery again (over 5 s once on a loaded CI machine)
        self._diag: dict[str, tuple[float, dict[str, str]]] = {}
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while self.context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except Exception:  # noqa: BLE001 - context shut down under us
                break

    def _on(self, name: str, msg) -> None:
        now = node_now(self.node)
        stamp = msgs.stamp_of(msg) if hasattr(msg, "header") else (
            msgs.from_time(msg.clock) if hasattr(msg, "clock") else float("nan"))
        with self._lock:
            self.samples[name].append((now, stamp))
            self._last[name] = msg
            if name in self.messages:
                self.messages[name].append(msg)

    def clear(self) -> None:
        with self._lock:
            for v in (*self.samples.values(), *self.messages.values()):
                v.clear()

    def wait_for(self, names, timeout: float = 20.0, count: int = 1, abort=None) -> bool:
        """Wait until every topic in ``names`` has ``count`` messages; False on timeout or as
        soon as ``abort()`` returns True (e.g. the node under test exited)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end and not (abort is not None and abort()):
            with self._lock:
                if all(len(self.samples[n]) >= count for n in names):
                    return True
            time.sleep(0.05)
        return False

    def kept(self, topic: str) -> list:
        """A copy of the messages kept so far on ``topic`` (one of ``keep``)."""
        with self._lock:
            return list(self.messages[topic])

    def collect(self, topic: str, mtype, seconds: float, profile=qos.SENSOR_SUB) -> list:
        """Every message on ``topic`` during the next ``seconds``."""
        got: list = []
        sub = self.node.create_subscription(mtype, topic, got.append, profile)
        time.sleep(seconds)
        self.node.destroy_subscription(sub)
        return got

    def now(self) -> float:
        """This node's ROS time (s)."""
        return node_now(self.node)

    def matched_publisher(self, topic: str, mtype, profile=qos.COMMAND, timeout: float = 15.0):
        """A publisher on ``topic`` once a subscription has matched it (discovery takes a
        state, not a duration: a fixed sleep lost the first messages on a loaded machine)."""
        pub = self.node.create_publisher(mtype, topic, profile)
        if not wait_until(lambda: pub.get_subscription_count() > 0, timeout):
            self.node.destroy_publisher(pub)
            raise TimeoutError(f"no subscriber matched {topic} in {timeout:g} s")
        return pub

    def latest(self, topic: str, mtype, timeout: float = 5.0, profile=qos.SENSOR_SUB):
        """The first message that arrives on ``topic`` (latched ones included, with the
        LATCHED profile), or None after ``timeout``. A topic the probe already subscribes
        to is read through that subscription (unless another QoS is asked for): a new one
        would wait for discovery again, which took longer than ``timeout`` once on a loaded
        machine (a clean-clone CI run)."""
        if topic in self.samples and profile is qos.SENSOR_SUB:
            with self._lock:
                seen = len(self.samples[topic])
            end = time.monotonic() + timeout
            while time.monotonic() < end:
                with self._lock:
                    if len(self.samples[topic]) > seen:
                        return self._last[topic]
                time.sleep(0.02)
            return None
        got: list = []
        sub = self.node.create_subscription(mtype, topic, got.append, profile)
        end = time.monotonic() + timeout
        while not got and time.monotonic() < end:
            time.sleep(0.02)
        self.node.destroy_subscription(sub)
        return got[-1] if got else None

    def trigger(self, service: str, timeout: float = 10.0) -> tuple[bool, str]:
        """Call a std_srvs/Trigger service: (its success, its message), or (False, why) when
        the service is not there or does not answer within ``timeout``."""
        from std_srvs.srv import Trigger  # noqa: PLC0415

        cli = self.node.create_client(Trigger, service)
        try:
            if not cli.wait_for_service(timeout_sec=timeout):
                return False, f"{service}: no such service after {timeout:g} s"
            future = cli.call_async(Trigger.Request())
            if not wait_until(future.done, timeout, poll=0.01):
                return False, f"{service}: no answer in {timeout:g} s"
            res = future.result()
            return bool(res.success), str(res.message)
        finally:
            self.node.destroy_client(cli)

    def _on_diagnostics(self, msg) -> None:
        now = time.monotonic()
        with self._lock:
            for st in msg.status:
                self._diag[st.name] = (now, msgs.diagnostics_values(st))

    def diagnostics(self, names, timeout: float = 5.0) -> dict[str, dict[str, str]]:
        """{status name: {key: value}} from /diagnostics reports received after this call,
        waiting until every name in ``names`` has reported (or ``timeout``); missing names
        are absent."""
        names = {names} if isinstance(names, str) else set(names)
        start = time.monotonic()
        end = start + timeout
        while True:
            with self._lock:
                got = {n: v for n, (t, v) in self._diag.items() if t >= start}
            if names <= set(got) or time.monotonic() >= end:
                return got
            time.sleep(0.05)

    def stats(self) -> dict[str, dict]:
        """Per topic: count, rate by stamps and by receipt (Hz), whether stamps are strictly
        increasing, latency from stamp to receipt p50/p99 (ms)."""
        out = {}
        with self._lock:
            data = {k: np.array(v, dtype=float).reshape(-1, 2) for k, v in self.samples.items()}
        for name, arr in data.items():
            n = len(arr)
            rec, st = arr[:, 0], arr[:, 1]
            d: dict = {"count": n}
            if n >= 2:
                d["rate_hz"] = (n - 1) / (st[-1] - st[0]) if st[-1] > st[0] else float("nan")
                d["receipt_rate_hz"] = (n - 1) / (rec[-1] - rec[0]) if rec[-1] > rec[0] else float("nan")
                d["stamps_monotonic"] = bool(np.all(np.diff(st) > 0))
                d["stamp_period_ms_p50"] = float(np.median(np.diff(st))) * 1e3
                lat = (rec - st) * 1e3
                d["latency_ms_p50"] = float(np.percentile(lat, 50))
                d["latency_ms_p99"] = float(np.percentile(lat, 99))
            out[name] = d
        return out

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
        if self.context.ok():
            rclpy.shutdown(context=self.context)
        self._thread.join(timeout=2.0)


class Newest:
    """The newest message on a topic, from one subscription kept open (a fresh subscription
    per look waits for discovery each time, seconds on a loaded machine)."""

    def __init__(self, node, topic: str, mtype, profile=qos.SENSOR_SUB):
        self.topic = topic
        self.msg = None
        self._sub = node.create_subscription(mtype, topic, self._on, profile)

    def _on(self, msg) -> None:
        self.msg = msg

    def get(self, timeout: float = 10.0):
        """The newest message; AssertionError when none came within ``timeout``."""
        assert wait_until(lambda: self.msg is not None, timeout), f"nothing on {self.topic} in {timeout:g} s"
        return self.msg


def wait_until(cond, timeout: float = 5.0, poll: float = 0.002) -> bool:
    """Wait for a state rather than for a duration (the same on an idle and a loaded machine);
    returns whether ``cond()`` became true within ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            return False
        time.sleep(poll)
    return True
