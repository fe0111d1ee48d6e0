"""Mapping a device clock to ROS time.

A camera stamps each frame with its own clock (RealSense ``hardware_clock``: the device's
microsecond counter, in ms). The host sees the frame later, after exposure readout, USB
transfer and driver queues: ``arrival = capture + offset + latency`` with ``latency >= 0``
and varying. The smallest ``arrival - device_time`` over a recent window is the best
estimate of ``offset + min latency``: it never lets one slow frame pull the stamps late,
and it follows clock drift because the window slides.

    ros_stamp = device_time + min_{recent}(arrival - device_time)

so a stamp is the capture time shifted by the smallest transport latency seen, a constant
(typically 1-3 ms on USB 3) that ``latency_s`` removes when it is known. A device clock
that jumps (a reset, a counter wrap, a reconnect) restarts the estimate.

Timestamps already on the host clock (RealSense ``global_time`` and ``system_time``: ms
since the Unix epoch) need only the fixed ROS-minus-system offset, zero unless the node
runs on simulated time.
"""
from __future__ import annotations

from collections import deque


class DeviceClockMapper:
    def __init__(self, window_s: float = 10.0, jump_s: float = 1.0, latency_s: float = 0.0):
        if window_s <= 0:
            raise ValueError(f"window_s: {window_s} must be > 0")
        if jump_s <= 0:
            raise ValueError(f"jump_s: {jump_s} must be > 0")
        self.window = float(window_s)
        self.jump = float(jump_s)
        self.latency = float(latency_s)
        self._samples: deque[tuple[float, float]] = deque()   # (device_t, arrival - device_t)
        self._mins: deque[tuple[float, float]] = deque()      # monotonic deque for the window minimum
        self.resets = 0

    def reset(self) -> None:
        self._samples.clear()
        self._mins.clear()

    def map(self, device_t: float, arrival: float) -> float:
        """Device time (s) and its host arrival time (s, ROS clock) -> capture stamp (s, ROS)."""
        off = arrival - device_t
        # A device clock that steps back, or forward by more than ``jump_s`` against the host
        # clock, is a new clock (reset, wrap, reconnect). A late frame (offset far above the
        # minimum) is only a late frame: the minimum ignores it.
        if self._samples and (device_t < self._samples[-1][0] or off < self._mins[0][1] - self.jump):
            self.resets += 1
            self.reset()
        self._samples.append((device_t, off))
        while self._mins and self._mins[-1][1] >= off:
            self._mins.pop()
        self._mins.append((device_t, off))
        while self._samples and device_t - self._samples[0][0] > self.window:
            t_old, _ = self._samples.popleft()
            while self._mins and self._mins[0][0] <= t_old:
                self._mins.popleft()
        return device_t + self._mins[0][1] - self.latency

    @property
    def offset(self) -> float:
        """Current estimate of ROS time minus device time, s (NaN before the first sample)."""
        return self._mins[0][1] - self.latency if self._mins else float("nan")
