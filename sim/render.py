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
