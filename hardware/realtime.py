"""Running a control loop in real time on a host, without ROS.

Two things a fast control loop needs from the machine it runs on, whatever publishes its
readings:

* **When to tick** (:class:`TickLoop`). A loop paced by its own clock, out of phase with
  the sensor, uses each reading up to a whole period after it arrived; a loop woken by the
  arrival of each reading uses it at once. :class:`TickLoop` does the second when the
  contact sensor keeps up with the control rate (``mode="sensor"``, or ``"auto"`` when the
  measured rate of the readings is at least 95 % of it): exactly one tick per reading, none
  used twice, none skipped (``auto`` decimates a sensor several times faster than the
  control rate: one tick per ``n`` readings, the others only refresh the state; ``sensor``
  ticks on every reading whatever its rate). Otherwise it ticks on the monotonic clock at the control
  rate with the freshest reading (``mode="clock"``). A sensor that falls silent in sensor
  mode still gets a tick after ``sensor_timeout`` (a watchdog: the safety filter then sees
  the stale reading and holds), and ``auto`` falls back to the clock. With ``late_s`` a
  sensor tick waits at most that long past a reading's expected arrival (its stamp grid plus
  the transport's floor): then it ticks with the freshest readings, and the late reading
  refreshes the next tick without one of its own (an even period, a period of staleness on
  those ticks).
* **Scheduling** (:func:`enter_realtime`). SCHED_FIFO at a priority, one CPU core, and all
  memory locked (``mlockall(MCL_CURRENT | MCL_FUTURE)``: no page fault in the tick). Each is
  applied when the process may; what it may not is reported in one warning line and the
  loop runs without it.

Where a tick's time goes is counted per phase in fixed-size histograms
(:class:`PhaseTimes`): nothing is allocated per tick but Python floats.

The readings come from a *source* (duck-typed; ``slowfast_ros.arm_io.ArmInputs`` in polled
mode is the ROS one, the tests use a synthetic one)::

    source.take_trigger() -> float | None   # take pending readings until one whole trigger
                                            # reading (every arm's contact) is in; its capture
                                            # stamp, None when none is complete yet
    source.drain() -> None                  # take everything pending (clock mode)
    source.wait(timeout_s) -> None          # block until a reading may be pending (or timeout)
    source.wake() -> None                   # end a wait() at once (stop)
"""
from __future__ import annotations

import ctypes
import math
import os
import resource
import sys
import threading
import time
from dataclasses import dataclass, field

import numpy as np

MODES = ("auto", "sensor", "clock", "locked")
MCL_CURRENT, MCL_FUTURE = 1, 2
CAP_IPC_LOCK = 14


# ------------------------------------------------------------------------------ scheduling


def bound_gil_wait(period: float) -> None:
    """The GIL is handed over at most every switch interval (5 ms by default): a loop thread
    waking while another thread runs Python would wait that long. A tenth of the loop's
    period bounds that wait (process-wide; only ever lowered)."""
    sys.setswitchinterval(min(sys.getswitchinterval(), max(period / 10.0, 1e-4)))


@dataclass
class RealtimeState:
    """What :func:`enter_realtime` obtained for the calling thread (and its process)."""

    fifo_priority: int = 0        # SCHED_FIFO priority in effect, 0 = normal scheduling
    cpu: int = -1                 # the core the thread is pinned to, -1 = none
    memory_locked: bool = False   # mlockall(MCL_CURRENT | MCL_FUTURE) in effect (process-wide)
    other_threads: int = 0        # the process's other threads raised to SCHED_FIFO one below
    refused: list[str] = field(default_factory=list)   # requested and not permitted, with why

    @property
    def realtime(self) -> bool:
        return self.fifo_priority > 0


def _has_capability(bit: int) -> bool:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> bit & 1)
    except OSError:
        pass
    return False


def lock_memory() -> str | None:
    """``mlockall(MCL_CURRENT | MCL_FUTURE)``: every page of the process resident now and
    later, so a tick never waits on a page fault. None when done, else why not.

    Refused without trying when the memlock limit is finite and the process lacks
    CAP_IPC_LOCK: with MCL_FUTURE every later allocation would then count against that
    limit, and a later ``malloc`` past it fails (a crash in the middle of a run)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    if soft != resource.RLIM_INFINITY and not _has_capability(CAP_IPC_LOCK):
        return f"RLIMIT_MEMLOCK is {soft} bytes and no CAP_IPC_LOCK"
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.mlockall(MCL_CURRENT | MCL_FUTURE) != 0:
            return os.strerror(ctypes.get_errno())
    except (OSError, AttributeError) as exc:   # no libc mlockall (not Linux)
        return str(exc)
    return None


def check_scheduling(priority: int, cpu: int) -> None:
    """A SCHED_FIFO priority must be 0 (none) to 98, a core -1 (none) or an index."""
    if not (0 <= priority <= 98):
        raise ValueError(f"rt_priority {priority} outside 0..98")
    if cpu < -1:
        raise ValueError(f"cpu {cpu}: a core index, or -1 for none")


def enter_realtime(priority: int = 0, cpu: int = -1, memory: bool = True, warn=None) -> RealtimeState:
    """Real-time scheduling for the calling thread, as far as permitted.

    ``priority`` > 0: SCHED_FIFO at that priority (1..98) for this thread only; ``cpu`` >= 0:
    pin this thread to that core; ``memory``: lock the process's memory (only when real-time
    scheduling or a core is requested: locking alone buys nothing). Whatever is refused
    (no CAP_SYS_NICE / rtprio limit, a core outside the allowed set, a memlock limit) is
    listed in the result and reported through ``warn`` in exactly one line; the thread runs
    on without it."""
    check_scheduling(priority, cpu)
    state = RealtimeState()
    if memory and (priority > 0 or cpu >= 0):
        why = lock_memory()    # first: faulting every page in happens before the thread runs FIFO
        if why is None:
            state.memory_locked = True
        else:
            state.refused.append(f"mlockall: {why}")
    if cpu >= 0:
        try:   # pid 0: the calling thread (Linux)
            os.sched_setaffinity(0, {cpu})
            state.cpu = cpu
        except (OSError, ValueError, AttributeError) as exc:
            state.refused.append(f"cpu {cpu}: {_reason(exc)}")
    if priority > 0:
        try:   # pid 0: the calling thread only (Linux)
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
            state.fifo_priority = priority
        except (OSError, AttributeError) as exc:
            state.refused.append(f"SCHED_FIFO {priority}: {_reason(exc)}")
    if state.refused and warn is not None:
        warn("real-time setup not permitted (" + "; ".join(state.refused) + "): running without it "
             "(needs root or CAP_SYS_NICE + CAP_IPC_LOCK, or an rtprio/memlock limit, and an allowed core)")
    return state


def leave_realtime() -> None:
    """Ordinary scheduling for the calling thread (a process started from a SCHED_FIFO thread
    inherits its policy and must not keep it); nothing when it has it already or may not."""
    try:
        if os.sched_getscheduler(0) != os.SCHED_OTHER:
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    except (OSError, AttributeError):
        pass


def raise_other_threads(priority: int) -> int:
    """SCHED_FIFO at ``priority`` for every other thread of this process (the DDS receive
    threads, the executor): a Python control thread at a higher FIFO priority still waits for
    the GIL, and when the thread holding it is an ordinary one that the kernel has preempted
    for another process, the control thread waits out that process's time slice (priority
    inversion through the GIL: 12-20 ms period error p99 at 1 kHz under load). Threads
    started later inherit the policy of the thread that starts them. Returns how many threads
    were raised; the ones refused are left as they are."""
    if priority <= 0:
        return 0
    me = threading.get_native_id()
    raised = 0
    try:
        tids = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        return 0
    for tid in tids:
        if tid == me:
            continue
        try:
            os.sched_setscheduler(tid, os.SCHED_FIFO, os.sched_param(priority))
            raised += 1
        except (OSError, AttributeError):
            pass
    return raised


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno is not None:
        return f"{type(exc).__name__} ({os.strerror(exc.errno)})"
    return type(exc).__name__ + (f" ({exc})" if str(exc) else "")


# ------------------------------------------------------------------------------ measuring


class PhaseTimes:
    """Per named series (seconds): a count of every sample since the window started
    (:meth:`start_window`) in a fixed histogram of 2 us bins up to 20 ms (larger ones in one
    bin, with the largest kept). Recording bumps one count in a preallocated array; the
    percentiles come from the counts, so they cover the whole window however long it is (a
    one-minute benchmark, not its last few seconds) at 2 us resolution, and cost the same
    whatever its length."""

    BIN_S = 2e-6
    BINS = 10_000      # 2 us x 10 000 = 20 ms; the last bin (index BINS) holds everything above

    def __init__(self, names):
        self.names = tuple(names)
        self.index = {n: i for i, n in enumerate(self.names)}
        self._n = [0] * len(self.names)
        self._hist = np.zeros((len(self.names), self.BINS + 1), np.int64)
        self._max = [-math.inf] * len(self.names)
        self.window_start = time.monotonic()

    def record(self, i: int, seconds: float) -> None:
        """Record a sample of series ``i`` (its position in ``names``, see ``index``); a NaN
        (no figure for this tick) is counted by :meth:`count` only."""
        self._n[i] += 1
        if seconds >= 0.0:
            b = self.BINS if seconds >= self.BINS * self.BIN_S else int(seconds * (1.0 / self.BIN_S))
        elif seconds < 0.0:
            b = 0
        else:
            return
        self._hist[i, b] += 1
        if seconds > self._max[i]:
            self._max[i] = seconds

    def count(self, name: str) -> int:
        """Samples of ``name`` recorded since the start, NaN ones included."""
        return self._n[self.index[name]]

    def percentiles(self, name: str, qs=(50, 99), scale: float = 1.0) -> list[float]:
        """Percentiles of the samples since the window started: the centre of the 2 us bin
        that holds each (the largest sample for one above 20 ms); NaN when there is none."""
        i = self.index[name]
        cum = np.cumsum(self._hist[i])
        n = int(cum[-1])
        if n == 0:
            return [float("nan")] * len(qs)
        out = []
        for q in qs:
            b = int(np.searchsorted(cum, max(1, math.ceil(q / 100.0 * n))))
            out.append((self._max[i] if b >= self.BINS else (b + 0.5) * self.BIN_S) * scale)
        return out

    def window_count(self, name: str) -> int:
        """Samples of ``name`` since the window started (NaN ones left out)."""
        return int(self._hist[self.index[name]].sum())

    def start_window(self) -> None:
        """Start counting anew."""
        self._hist.fill(0)
        self._max = [-math.inf] * len(self.names)
        self.window_start = time.monotonic()


class StreamRate:
    """The rate of a stream of readings from their capture stamps over the last ``n``
    (stamps, not arrival times: transport jitter does not move it). 0 until ``n`` are in."""

    def __init__(self, n: int = 64):
        self.n = int(n)
        self._t = np.full(self.n, np.nan)
        self._count = 0

    def add(self, stamp: float) -> None:
        self._t[self._count % self.n] = stamp
        self._count += 1

    def rate(self, now: float | None = None, max_age: float = math.inf) -> float:
        """Readings per second; 0 when fewer than ``n`` were seen or the newest is older
        than ``max_age`` at ``now`` (a sensor that stopped has no rate)."""
        if self._count < self.n:
            return 0.0
        newest = self._t[(self._count - 1) % self.n]
        oldest = self._t[self._count % self.n]
        if now is not None and now - newest > max_age:
            return 0.0
        span = newest - oldest
        return float((self.n - 1) / span) if span > 0 else 0.0

    def reset(self) -> None:
        self._t.fill(np.nan)
        self._count = 0


def _reference_work(n: int) -> int:
    s = 0
    for i in range(n):
        s += i
    return s


def host_reference(seconds: float = 2.0, rt_priority: int = 0, cpu: int = -1, period: float = 0.001) -> dict:
    """How fast, and how evenly, this host runs a fixed piece of Python work now: the same
    ~0.1 ms of bytecode once a ``period`` for ``seconds``, in a thread scheduled as a control
    loop would be (``rt_priority``, ``cpu``, as permitted; no warning), wall time per run in
    microseconds (p50, p99, p99.9). A benchmark reports it beside its figures: on a shared or
    virtual machine the same code's timings move with the host's other load, and this is the
    reference to compare two runs, or two machines, by."""
    if not (0.1 <= seconds <= 60.0):
        raise ValueError(f"host reference: {seconds} s outside 0.1..60")
    check_scheduling(rt_priority, cpu)
    out: dict = {}

    def probe() -> None:
        state = enter_realtime(rt_priority, cpu, memory=False)
        _reference_work(2000)                                   # warm
        perf, times = time.perf_counter, []
        end = perf() + seconds
        while (t0 := perf()) < end:
            _reference_work(2000)
            times.append(perf() - t0)
            time.sleep(max(0.0, period - (perf() - t0)))
        us = np.percentile(np.asarray(times) * 1e6, (50, 99, 99.9))
        out.update({"work_us_p50": round(float(us[0]), 1), "work_us_p99": round(float(us[1]), 1),
                    "work_us_p99_9": round(float(us[2]), 1), "runs": len(times),
                    "realtime_scheduling": state.realtime, "cpu": state.cpu})

    t = threading.Thread(target=probe, name="host-reference")
    t.start()
    t.join()
    return out


def cpu_counters(path: str = "/proc/stat") -> dict[str, tuple[int, int]]:
    """(all time, stolen time) in clock ticks for the machine (``cpu``) and each CPU (``cpu0``,
    ...), from the kernel's accounting; {} where there is none (not Linux). Stolen time is
    what a virtual machine's hypervisor ran something else on a virtual CPU that had work."""
    try:
        lines = open(path).read().splitlines()    # noqa: SIM115 - a tiny procfs read
    except OSError:
        return {}
    out = {}
    for line in lines:
        if line.startswith("cpu"):
            name, *fields = line.split()
            ticks = [int(v) for v in fields[:8]]   # user nice system idle iowait irq softirq steal
            out[name] = (sum(ticks), ticks[7] if len(ticks) > 7 else 0)
    return out


def steal_percent(before: dict, after: dict) -> dict[str, float]:
    """Per CPU (and ``cpu``, all of them), the share of time the hypervisor stole between two
    :func:`cpu_counters` readings, in percent."""
    out = {}
    for name, (total, stolen) in after.items():
        if name in before and total > before[name][0]:
            out[name] = round(100.0 * (stolen - before[name][1]) / (total - before[name][0]), 2)
    return out


# ------------------------------------------------------------------------------ the loop


def check_late_s(late_s: float | None, hz: float, name: str = "late_s") -> None:
    """A sensor-tick deadline must be None (off) or in [0, one period at ``hz``)."""
    if late_s is not None and not (0.0 <= late_s < 1.0 / hz):
        raise ValueError(f"{name}: {late_s!r} is neither off nor in [0, one period {1.0 / hz:g} s)")


class TickLoop:
    """Calls ``tick(now, trigger_stamp)`` from a dedicated thread: phase-locked to the
    readings of ``source`` when the sensor keeps up, else paced by the monotonic clock.

    ``tick`` gets ``now`` (``stamp_clock()`` after the inputs were taken: the clock of the
    readings' stamps) and the capture stamp of the reading that triggered it (None for a
    clock tick or a watchdog tick). It may record its own phases with ``loop.times``.

    Per tick the loop records in ``times``: ``input`` (taking the readings), ``total`` (input
    to the end of the tick), ``cpu`` (the control thread's CPU time in that span) and
    ``off_cpu`` (``total`` less ``cpu``: how long the thread waited inside the tick, for the
    GIL or preempted; a long tick with a short ``off_cpu`` computed, one with a long ``off_cpu``
    waited), and ``error`` (clock mode: start against the ideal time; sensor
    mode: the tick's start after the reading's capture, less the smallest such delay of the
    recent ticks, i.e. how much later than it could have the tick started).

    ``overruns``: clock mode, ticks skipped because one ran late by more than a period;
    sensor mode, ticks that started more than a period later than they could have.
    """

    PHASES = ("input", "total", "cpu", "off_cpu", "error", "latency")
    RATE_WINDOW = 64          # readings over which the sensor's rate is measured
    ENTER, LEAVE = 0.95, 0.90   # auto: sensor mode at >= 95 % of the control rate, back below 90 %
    DWELL_S = 0.5               # auto: a mode is kept at least this long before a rate-based switch

    def __init__(self, hz: float, tick, source=None, mode: str = "clock", name: str = "loop",
                 rt_priority: int = 0, cpu: int = -1, lock_memory: bool = True, warn=None,
                 sensor_timeout: float = 0.05, stamp_clock=time.time, phases=(),
                 on_error=None, late_s: float | None = None):
        if not (0 < hz <= 2000):
            raise ValueError(f"loop rate {hz} Hz outside (0, 2000]")
        if mode not in MODES:
            raise ValueError(f"tick_source {mode!r}: one of {', '.join(MODES)}")
        if mode != "clock" and source is None:
            raise ValueError(f"tick_source {mode!r} needs a source of readings")
        check_scheduling(rt_priority, cpu)
        if sensor_timeout <= 0:
            raise ValueError(f"sensor_timeout {sensor_timeout} must be > 0")
        check_late_s(late_s, hz)
        self.hz, self.period = float(hz), 1.0 / hz
        self.requested_mode = mode
        self.mode = "clock" if mode == "auto" else mode   # auto starts on the clock and measures
        self.lock_offset = 0.5 / hz     # locked: how long after a reading's capture the tick comes (adapted)
        self.lock_misses = 0            # locked: ticks whose due reading was not in yet
        self.source, self._tick = source, tick
        self.rt_priority, self.cpu, self.lock_memory = rt_priority, cpu, lock_memory
        self.warn = warn
        self.sensor_timeout = float(sensor_timeout)
        self.late_s = None if late_s is None else float(late_s)
        self._covered = -math.inf      # sensor mode with late_s: the stamp a deadline tick stood in for
        self.stamp_clock = stamp_clock
        self.on_error = on_error
        self.times = PhaseTimes(self.PHASES + tuple(phases))
        self.rate = StreamRate(self.RATE_WINDOW)
        self.realtime = RealtimeState()
        self.decimation = 1
        self.ticks = {"clock": 0, "sensor": 0, "deadline": 0, "watchdog": 0}
        self.readings = 0           # trigger readings taken in sensor mode
        self.overruns = 0
        self.mode_switches = 0
        self.failure: BaseException | None = None
        self._reset = False         # a new statistics window asked for (reset_statistics)
        self._stop = threading.Event()
        self._tick_times = np.full(256, np.nan)   # start times of the last ticks (monotonic), for the rate
        self._n_ticks = 0
        self._floor_prev = self._floor_cur = math.inf   # smallest capture-to-tick delay, last/this block
        self._floor_n = 0
        self._next_t = self._last_reading = 0.0
        self._last_stamp: float | None = None   # the newest trigger stamp a sensor tick used
        self._lock_newest = -math.inf            # locked: the newest trigger stamp taken
        self._mode_since = -math.inf   # monotonic time of the last switch (auto's dwell)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    # ---------------------------------------------------------------- control

    def start(self) -> "TickLoop":
        bound_gil_wait(self.period)
        self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self.source is not None:
            self.source.wake()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def reset_statistics(self) -> None:
        """Start a new statistics window, from any thread: the control thread applies it before
        its next tick, and from then on the percentiles and the counters (ticks, readings,
        overruns, lock misses, mode switches) cover only the window (``window_s``)."""
        self._reset = True
        if self.source is not None:
            self.source.wake()      # a loop waiting for a reading applies it now

    def _apply_reset(self) -> None:
        self._reset = False
        self.times.start_window()
        for k in self.ticks:
            self.ticks[k] = 0
        self.readings = self.overruns = self.lock_misses = self.mode_switches = 0

    # ---------------------------------------------------------------- reports

    def loop_rate(self) -> float:
        """Ticks per second over the last ticks (up to 256)."""
        n = min(self._n_ticks, len(self._tick_times))
        if n < 2:
            return 0.0
        newest = self._tick_times[(self._n_ticks - 1) % len(self._tick_times)]
        oldest = self._tick_times[(self._n_ticks - n) % len(self._tick_times)]
        return float((n - 1) / (newest - oldest)) if newest > oldest else 0.0

    def report(self) -> dict:
        """Diagnostics values: mode, rates, period error and phase times (ms); the percentiles
        and counters over the statistics window (since the start or :meth:`reset_statistics`,
        ``window_s`` long), the rates over the last readings and ticks."""
        pe = self.times.percentiles("error", scale=1e3, qs=(50, 99))
        lat = self.times.percentiles("latency", scale=1e3, qs=(50, 99))
        out = {"window_s": time.monotonic() - self.times.window_start,
               "tick_source": self.mode, "tick_source_requested": self.requested_mode,
               "loop_rate_hz": self.loop_rate(), "sensor_rate_hz": self.rate.rate(),
               "decimation": self.decimation,
               "period_error_ms_p50": pe[0], "period_error_ms_p99": pe[1], "overruns": self.overruns,
               "reading_to_tick_ms_p50": lat[0], "reading_to_tick_ms_p99": lat[1],
               "ticks_clock": self.ticks["clock"], "ticks_sensor": self.ticks["sensor"],
               "ticks_watchdog": self.ticks["watchdog"], "ticks_deadline": self.ticks["deadline"],
               "lock_offset_ms": self.lock_offset * 1e3, "lock_misses": self.lock_misses,
               "trigger_readings": self.readings,
               "tick_source_switches": self.mode_switches,
               "realtime_scheduling": self.realtime.realtime, "rt_priority_active": self.realtime.fifo_priority,
               "cpu": self.realtime.cpu, "memory_locked": self.realtime.memory_locked,
               "rt_other_threads": self.realtime.other_threads}
        for name in self.times.names:
            if name in ("error", "latency"):
                continue
            p50, p99 = self.times.percentiles(name, scale=1e3)
            out[f"tick_ms/{name}_p50"], out[f"tick_ms/{name}_p99"] = p50, p99
        return out

    # ---------------------------------------------------------------- the thread

    def _run(self) -> None:
        self.realtime = enter_realtime(self.rt_priority, self.cpu, self.lock_memory, self.warn)
        if self.realtime.fifo_priority > 1:
            self.realtime.other_threads = raise_other_threads(self.realtime.fifo_priority - 1)
        try:
            self._loop()
        except Exception as exc:  # noqa: BLE001 - a failing tick stops the loop, loudly
            self._stop.set()
            if self.on_error is not None and self.on_error(exc):
                return          # the owner says it is shutting down: not a failure
            self.failure = exc
            raise

    def _loop(self) -> None:
        mono, perf, cpu_time, stop = time.monotonic, time.perf_counter, time.thread_time, self._stop
        rec, ix = self.times.record, self.times.index
        i_input, i_total, i_error, i_latency = ix["input"], ix["total"], ix["error"], ix["latency"]
        i_cpu, i_off = ix["cpu"], ix["off_cpu"]

        def spent(t0: float, c0: float) -> None:     # the tick's wall time, split
            wall, cpu = perf() - t0, cpu_time() - c0
            rec(i_total, wall)
            rec(i_cpu, cpu)
            rec(i_off, wall - cpu if wall > cpu else 0.0)

        source, tick, ticks = self.source, self._tick, self.ticks
        self._next_t = self._last_reading = self._mode_since = mono()
        spin = 0.0001 if self.realtime.realtime else 0.0003
        pending = 0
        while not stop.is_set():
            if self._reset:
                self._apply_reset()
            if self.mode == "sensor":
                # ---- phase-locked: one tick per (decimated) trigger reading
                t0, c0 = perf(), cpu_time()
                stamp = source.take_trigger()
                if stamp is None:
                    if mono() - self._last_reading > self.sensor_timeout:
                        self._watchdog()      # the sensor fell silent
                        continue
                    wait_s = self.sensor_timeout
                    due = self._deadline()
                    if due is not None:
                        wait_s = min(wait_s, due[0] - self.stamp_clock())
                        if wait_s <= 0.0:
                            self._deadline_tick(due[1])   # the reading is late: tick without it
                            continue
                    source.wait(wait_s)
                    continue
                self._last_reading = mono()
                self.readings += 1
                timed = -math.inf < stamp < math.inf    # an unreadable reading still ticks, untimed
                if timed:
                    self.rate.add(stamp)
                    if stamp <= self._covered + 0.25 / self.hz:
                        continue      # a deadline tick stood in for it: its data go to the next tick
                    self._last_stamp = stamp
                pending += 1
                if pending < self.decimation:
                    continue
                pending = 0
                now = self.stamp_clock()
                rec(i_input, perf() - t0)
                if timed:
                    delay = now - stamp
                    rec(i_latency, delay)
                    err = self._phase_error(delay)
                    rec(i_error, err)
                    if err > self.period:
                        self.overruns += 1
                self._mark(self._last_reading)
                ticks["sensor"] += 1
                tick(now, stamp)
                spent(t0, c0)
                if self.requested_mode == "auto" and self.rate.rate() < self.LEAVE * self.hz \
                        and self._dwelt():
                    self._switch("clock")
                continue
            # ---- clock-paced with the freshest reading (locked: on the sensor's phase)
            next_t = self._next_t
            now_m = mono()
            if now_m < next_t:
                # Coarse sleep, then a short spin: time.sleep overshoots (~0.1 ms p99 for a
                # normal thread with timer slack, ~0.05 ms for a SCHED_FIFO one, which has none).
                if next_t - now_m > spin + 0.0001:
                    time.sleep(next_t - now_m - spin)
                while mono() < next_t:
                    pass
                now_m = mono()
            rec(i_error, now_m - next_t)
            self._mark(now_m)
            t0, c0 = perf(), cpu_time()
            newest = -math.inf
            if source is not None:
                while (stamp := source.take_trigger()) is not None:
                    if -math.inf < stamp < math.inf:
                        self.rate.add(stamp)     # auto mode decides on the rate of these
                        newest = max(newest, stamp)
                source.drain()
            now = self.stamp_clock()
            rec(i_input, perf() - t0)
            ticks["clock"] += 1
            tick(now, None)
            spent(t0, c0)
            next_t += self.period
            if self.mode == "locked":
                next_t += self._lock_step(now, now_m, newest, next_t)
            late = mono() - next_t
            if late > self.period:
                skipped = int(late / self.period)
                self.overruns += skipped
                next_t += skipped * self.period
            self._next_t = next_t
            if self.requested_mode == "auto" and self._dwelt() and \
                    self.rate.rate(now, max_age=self.sensor_timeout) >= self.ENTER * self.hz:
                self._switch("sensor")
                pending = 0

    def _lock_step(self, now: float, now_m: float, newest: float, next_t: float) -> float:
        """Locked mode, after a tick that started at ``now_m`` (monotonic; ``now`` on the stamp
        clock) with ``newest`` the newest reading it took (-inf: none): how much to move the
        next tick, due at ``next_t`` (monotonic), at most a tenth of a period either way, so that ticks come ``lock_offset``
        after the sensor's captures. The offset grows by a tenth of a period when a tick's due
        reading (the one captured ``lock_offset`` before it) had not come, and shrinks by a
        two-thousandth when it had: about 1 tick in 200 misses, the rest use a reading captured
        ``lock_offset`` before. Nothing moves until the sensor's rate is within 5 % of the loop's."""
        if math.isfinite(newest):
            self._lock_newest = max(self._lock_newest, newest)
        ref, T = self._lock_newest, self.period
        rate = self.rate.rate()
        if not math.isfinite(ref) or not (0.95 * self.hz <= rate <= 1.05 * self.hz):
            return 0.0
        due = ref + math.floor((now - self.lock_offset - ref) / T + 1e-9) * T
        if self._lock_newest >= due - 0.25 * T:
            self.lock_offset = max(0.0, self.lock_offset - 0.0005 * T)
        else:
            self.lock_misses += 1
            self.lock_offset = min(0.95 * T, self.lock_offset + 0.1 * T)
        # the next tick on the grid: one capture period after a capture, plus the offset
        target = ref + math.ceil((now + 0.5 * T - self.lock_offset - ref) / T) * T + self.lock_offset
        want = target - (now - now_m)                  # on the monotonic clock
        return min(max(want - next_t, -0.1 * T), 0.1 * T)

    def _deadline(self) -> tuple[float, float] | None:
        """With ``late_s``: (the latest time, stamp clock, to tick at without the next reading;
        the stamp that reading should have), or None (no deadline: off, decimating, or the
        sensor's rate or the transport's floor not known yet)."""
        if self.late_s is None or self.decimation != 1 or self._last_stamp is None:
            return None
        rate = self.rate.rate()
        floor = self._floor()
        if rate <= 0.0 or not math.isfinite(floor):
            return None
        expected = max(self._last_stamp, self._covered) + 1.0 / rate
        return expected + floor + self.late_s, expected

    def _deadline_tick(self, expected: float) -> None:
        """The reading of ``expected`` has not come ``late_s`` after it should have: tick now
        with the freshest readings (its period error is ``late_s`` plus the wake-up), and let
        that reading, when it comes, refresh the state without a tick of its own."""
        self._covered = expected
        t0, now = self._unprompted_tick("deadline")
        rec, ix = self.times.record, self.times.index
        rec(ix["total"], time.perf_counter() - t0)
        err = now - (expected + self._floor())
        rec(ix["error"], err)
        if err > self.period:
            self.overruns += 1

    def _unprompted_tick(self, kind: str) -> tuple[float, float]:
        """A tick no reading started (``kind``: watchdog, deadline), with the freshest readings:
        (its perf_counter start, its stamp-clock time)."""
        t0 = time.perf_counter()
        self.source.drain()
        now = self.stamp_clock()
        self.times.record(self.times.index["input"], time.perf_counter() - t0)
        self._mark(time.monotonic())
        self.ticks[kind] += 1
        self._tick(now, None)
        return t0, now

    def _watchdog(self) -> None:
        """A tick with the freshest (stale) readings when the sensor fell silent in sensor
        mode, so that the owner's safety checks run; ``auto`` goes back to the clock."""
        self._last_reading = time.monotonic()
        self._unprompted_tick("watchdog")
        if self.requested_mode == "auto":
            self._switch("clock")

    def _dwelt(self) -> bool:
        """Whether the current mode has been held long enough for a rate-based switch: a
        sensor whose rate hovers at a threshold would otherwise flip the mode every few
        readings (seen with a sim delivering 180-192 Hz under a 200 Hz loop). A silent
        sensor (the watchdog) switches at once."""
        return time.monotonic() - self._mode_since >= self.DWELL_S

    def _switch(self, mode: str) -> None:
        self._mode_since = time.monotonic()
        if mode == "sensor":
            self._covered, self._last_stamp = -math.inf, None
            r = self.rate.rate()
            self.decimation = max(1, int(r / self.hz + 0.5)) if r > 0 else 1
            self._floor_prev = self._floor_cur = math.inf
            self._floor_n = 0
            self._last_reading = time.monotonic()
        else:
            self._next_t = time.monotonic()
        self.mode = mode
        self.mode_switches += 1

    def _floor(self) -> float:
        """The transport's floor: the smallest capture-to-tick delay of this block and the last."""
        return self._floor_prev if self._floor_prev < self._floor_cur else self._floor_cur

    def _phase_error(self, delay: float) -> float:
        """The delay from capture to tick less the smallest delay of the recent ticks (the
        transport's floor): a block minimum over ~1000 ticks, the previous block's kept."""
        if delay < self._floor_cur:
            self._floor_cur = delay
        self._floor_n += 1
        floor = self._floor()
        if self._floor_n >= 1000:
            self._floor_prev, self._floor_cur, self._floor_n = self._floor_cur, math.inf, 0
        return delay - floor

    def _mark(self, t: float) -> None:
        self._tick_times[self._n_ticks % len(self._tick_times)] = t
        self._n_ticks += 1
