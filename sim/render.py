"""Rendering from another thread: copies of the physics state, rendered off the physics loop.

A 320x240 render costs ~20 ms on a CPU (software EGL); done inside the physics loop it would
stall the 1 kHz stepping and bunch up the force and tactile streams. The physics thread
takes a :meth:`SnapshotRenderer.snapshot` (a copy of MjData into a preallocated buffer,
microseconds), and the render thread renders it and hands the buffer back.
"""
from __future__ import annotations

import queue

import numpy as np


class SnapshotRenderer:
    def __init__(self, env, pool: int = 4):
        import mujoco

        self._mj = mujoco
        self.model = env.model
        self.width, self.height = env.cfg.camera_width, env.cfg.camera_height
        self.shadows = bool(getattr(env.cfg, "shadows", False))
        self._free: queue.SimpleQueue = queue.SimpleQueue()
        for _ in range(pool):
            self._free.put(mujoco.MjData(self.model))
        self._renderer = None

    def snapshot(self, data):
        """Copy ``data`` into a free buffer (physics thread). None when all buffers are in use
        (the render thread is behind): the caller drops that frame."""
        try:
            buf = self._free.get_nowait()
        except queue.Empty:
            return None
        self._mj.mj_copyData(buf, self.model, data)
        return buf

    def release(self, snap) -> None:
        self._free.put(snap)

    def render(self, snap, camera: str, depth: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """(rgb HxWx3 uint8, depth HxW float32 metres or None). Call from one thread only:
        the GL context is created in, and belongs to, the first thread that renders."""
        if self._renderer is None:
            self._renderer = FrameRenderer(self.model, self.width, self.height, self.shadows)
        return self._renderer.render(snap, camera, depth)

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None


class FrameRenderer:
    """One GL renderer with the look and cost of ``SimEnv.render()``: no reflections, shadows
    as configured. Shared by the render thread and the render process."""

    def __init__(self, model, width: int, height: int, shadows: bool = False):
        import mujoco

        self._mj = mujoco
        self._r = mujoco.Renderer(model, height, width)
        flags = self._r.scene.flags
        flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = False
        flags[mujoco.mjtRndFlag.mjRND_SHADOW] = bool(shadows)

    def render(self, data, camera: str, depth: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        r = self._r
        r.update_scene(data, camera=camera)
        rgb = r.render().copy()
        d = None
        if depth:
            r.enable_depth_rendering()
            try:
                r.update_scene(data, camera=camera)
                d = r.render().astype(np.float32)
            finally:
                r.disable_depth_rendering()
        return rgb, d

    def close(self) -> None:
        self._r.close()


class ThreadRenderer:
    """Cameras rendered in a thread of this process: the physics thread :meth:`submit`\\ s a
    snapshot, the render thread renders every camera and hands the frames to ``sink`` (an
    object with ``frame(episode, stamp, sim_t, frames)``, ``end(episode)`` and ``close()``,
    as :class:`sim.render_process.ProcessRenderer`'s sink). Two frames wait at most; more
    are dropped, not queued. ``on_error(exc)`` is called once if the thread stops on an error."""

    def __init__(self, env, cameras, sink, *, depth: bool = False, on_error=None):
        import threading

        self.cameras, self.sink, self.depth, self.on_error = tuple(cameras), sink, depth, on_error
        self.snapshots = SnapshotRenderer(env)
        self.frames = 0
        self.failed = False
        self._q: queue.Queue = queue.Queue(maxsize=2)
        self._thread = threading.Thread(target=self._loop, name="sim-render", daemon=True)
        self._thread.start()

    def submit(self, episode: int, stamp: float, sim_t: float, data) -> bool:
        """Queue a snapshot of ``data`` (physics thread, microseconds). False: dropped."""
        snap = self.snapshots.snapshot(data)
        if snap is None:
            return False
        try:
            self._q.put_nowait(("frame", episode, stamp, sim_t, snap))
        except queue.Full:
            self.snapshots.release(snap)
            return False
        return True

    def end_episode(self, episode: int) -> None:
        if self._thread.is_alive():
            self._q.put(("end", episode))

    def close(self, timeout: float = 10.0) -> None:
        """Finish what is queued (the episode video), then stop. Idempotent."""
        if self._thread.is_alive():
            self._q.put(None)
            self._thread.join(timeout=timeout)

    def _loop(self) -> None:
        try:
            while (item := self._q.get()) is not None:
                if item[0] == "end":
                    self.sink.end(item[1])
                    continue
                _, episode, stamp, sim_t, snap = item
                try:
                    frames = [(cam, *self.snapshots.render(snap, cam, depth=self.depth)) for cam in self.cameras]
                finally:
                    self.snapshots.release(snap)
                self.sink.frame(episode, stamp, sim_t, frames)
                self.frames += 1
        except Exception as exc:  # noqa: BLE001 - reported to the owner, never silent
            self.failed = True
            if self.on_error is not None:
                self.on_error(exc)
        finally:
            self.sink.close()
            self.snapshots.close()
