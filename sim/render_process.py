"""Camera rendering in a child process: the physics process keeps its GIL to itself.

In a thread (:class:`sim.render.SnapshotRenderer`) a 20 ms software-EGL render holds the
physics process's GIL for most of that time (``update_scene`` and the image conversions are
Python-side work, and the GL calls themselves hold it in the bindings), so force and tactile
readings computed on time were published after the render: ~30 ms late with 30 Hz cameras.

:class:`ProcessRenderer` starts one child (``spawn``: a fresh interpreter, its own GL
context) with a copy of the model. Per frame, the physics thread copies the state the scene
is drawn from (poses of bodies, geoms, sites, cameras, lights; joint and mocap state) into a
free slot of a shared-memory ring and writes the slot's number down a pipe: ~10 µs of GIL
per frame (the 20-odd copies; the pipe write releases it), against ~7 µs for
``SnapshotRenderer.snapshot`` and 6-20 ms of render. The child copies the slot into its own ``MjData`` (and frees it at once),
renders every camera and hands the frames to a *sink* it built itself, e.g. a ROS node of its
own that publishes them (``slowfast_ros.camera_sink.CameraSink``) and writes the episode
video. No frame comes back through the parent. With every slot taken (the child is behind)
a frame is dropped, not queued.

The child ends when told to (:meth:`ProcessRenderer.close`, which waits for the sink to
finish, e.g. the last video), when its parent dies (end of file on the pipe, or a new parent
pid), or on SIGTERM (the sink is closed first). It ignores SIGINT and SIGHUP: a Ctrl-C reaches
the whole process group, and the parent closes it in order. If it dies on its own, the
parent's ``on_exit(exitcode)`` is called once (from a watcher thread) and frames stop.

Nothing here imports ROS; a sink is named ``"module:attribute"`` and built in the child as
``attribute(**sink_kwargs)``: an object with ``frame(episode, stamp, sim_t, frames)``
(``frames``: ``[(camera, rgb, depth or None), ...]``), ``end(episode)`` and ``close()``.
"""
from __future__ import annotations

import importlib
import multiprocessing as mp
import os
import pickle
import signal
import sys
import threading
import traceback
from multiprocessing import shared_memory
from multiprocessing.connection import wait as mp_wait

import numpy as np

#: MjData fields the scene is drawn from (``mjv_updateScene``): set in the child as they are in
#: the parent, never recomputed, so a frame is the parent's state exactly (after ``mj_step``
#: the poses are those of the step's start, as ``SnapshotRenderer`` renders them too).
STATE_FIELDS = ("qpos", "qvel", "act", "ctrl", "mocap_pos", "mocap_quat",
                "xpos", "xquat", "xmat", "xipos", "ximat", "subtree_com",
                "geom_xpos", "geom_xmat", "site_xpos", "site_xmat", "cam_xpos", "cam_xmat",
                "light_xpos", "light_xdir", "ten_wrapadr", "ten_wrapnum", "wrap_obj", "wrap_xpos",
                "ten_length", "flexvert_xpos", "sensordata")
_HEADER = 4            # float64 per slot: episode, stamp, sim time (the frame's), data.time
_FRAME, _END, _QUIT = b"F", b"E", b"Q"


class SnapshotLayout:
    """Where each field of one snapshot lives in a slot of the shared buffer."""

    def __init__(self, data):
        self.fields: list[tuple[str, str, tuple, int]] = []    # name, dtype, shape, byte offset
        off = _HEADER * 8
        for name in STATE_FIELDS:
            a = np.asarray(getattr(data, name))
            if a.size == 0:
                continue
            off = (off + 7) // 8 * 8
            self.fields.append((name, a.dtype.str, a.shape, off))
            off += a.nbytes
        self.slot_bytes = (off + 63) // 64 * 64

    def views(self, buf, slot: int) -> tuple[np.ndarray, list[tuple[str, np.ndarray]]]:
        base = slot * self.slot_bytes
        header = np.ndarray((_HEADER,), np.float64, buf, base)
        return header, [(name, np.ndarray(shape, dtype, buf, base + off)) for name, dtype, shape, off in self.fields]


def _load_sink(spec: str, kwargs: dict):
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)(**kwargs)


class ProcessRenderer:
    """Renders ``cameras`` of ``model`` in a child process from snapshots taken with
    :meth:`submit`; the child's sink (``"module:attribute"``) gets the frames.

    Construction waits until the child has its GL context and its sink (or raises
    ``RuntimeError`` with the child's error). ``slots``: snapshots in flight at most.
    ``nice``: added to the child's niceness, so that on a busy machine the render waits for
    the physics and the control loop rather than delaying them (frames drop instead)."""

    def __init__(self, model, cameras, width: int, height: int, *, depth: bool = False, shadows: bool = False,
                 sink: str, sink_kwargs: dict | None = None, slots: int = 2, nice: int = 0, on_exit=None,
                 start_timeout: float = 120.0):
        import mujoco

        if not 1 <= slots <= 255:
            raise ValueError(f"slots: {slots} outside 1..255")
        self.cameras = tuple(cameras)
        self.slots = slots
        self._on_exit = on_exit
        self._layout = SnapshotLayout(mujoco.MjData(model))
        # [slots x slot_bytes] snapshots, then one byte per slot (1 = in flight) and a frame counter
        size = slots * self._layout.slot_bytes + 64 + 8
        self._shm = shared_memory.SharedMemory(create=True, size=size)
        buf = self._shm.buf
        self._slot_views = [self._layout.views(buf, i) for i in range(slots)]
        self._busy = np.ndarray((slots,), np.uint8, buf, slots * self._layout.slot_bytes)
        self._count = np.ndarray((1,), np.int64, buf, slots * self._layout.slot_bytes + 64)
        self._busy[:] = 0
        self._count[:] = 0
        ctx = mp.get_context("spawn")
        cmd_r, self._cmd = ctx.Pipe(duplex=False)
        self._status, status_w = ctx.Pipe(duplex=False)
        self._closing = False
        self.failed = False
        self._source = None      # (data, [its field arrays in layout order]): views into one MjData
        self._send_lock = threading.Lock()
        self.proc = ctx.Process(
            target=_child_main, name="sim-render", daemon=True,
            args=(self._shm.name, slots, self._layout, cmd_r, status_w, self.cameras, int(width), int(height),
                  bool(depth), bool(shadows), sink, dict(sink_kwargs or {}), os.getpid(), int(nice)))
        try:
            self.proc.start()
        except BaseException:
            self._release_shm()
            raise
        cmd_r.close()       # the child's ends: only the child holds them now, so that
        status_w.close()    # either side sees end of file when the other goes away
        try:
            # The model goes down the pipe, not with the process's arguments: spawn writes
            # those into a pipe it also keeps open itself, and would block for ever on a
            # model over 64 KiB if the child died before reading it (here: a broken pipe).
            self._cmd.send_bytes(pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL))
            if not self._status.poll(start_timeout):
                raise RuntimeError(f"render process not ready after {start_timeout:.0f} s")
            msg = self._status.recv_bytes().decode()
        except (EOFError, OSError):
            self.proc.join(5.0)
            msg = f"error: render process exited during start (code {self.proc.exitcode})"
        except BaseException:
            self.close(timeout=2.0)
            raise
        if msg != "ready":
            self.close(timeout=2.0)
            raise RuntimeError(f"render process: {msg.removeprefix('error: ')}")
        self._watcher = threading.Thread(target=self._watch, name="sim-render-watch", daemon=True)
        self._watcher.start()

    # ------------------------------------------------------------ physics thread

    def submit(self, episode: int, stamp: float, sim_t: float, data) -> bool:
        """Copy ``data``'s scene state into a free slot and queue it; False (dropped) when
        every slot is in flight or the child is gone."""
        if self.failed or self._closing:
            return False
        busy = self._busy
        for i in range(self.slots):
            if not busy[i]:
                break
        else:
            return False
        header, views = self._slot_views[i]
        if self._source is None or self._source[0] is not data:
            # MjData's fields are views into its own buffers: fetched once per data, each
            # getattr would otherwise build a new numpy view (~4 µs x 25 fields per frame)
            self._source = (data, [getattr(data, name) for name, _ in views])
        for (_, view), src in zip(views, self._source[1]):
            view[...] = src
        header[0], header[1], header[2], header[3] = episode, stamp, sim_t, data.time
        busy[i] = 1
        if not self._send(_FRAME + bytes((i,))):
            busy[i] = 0
            return False
        return True

    def end_episode(self, episode: int) -> None:
        """The episode is over (the sink closes its video); frames keep their order."""
        self._send(_END + int(episode).to_bytes(8, "little", signed=True))

    def _send(self, msg: bytes) -> bool:
        try:
            with self._send_lock:
                self._cmd.send_bytes(msg)
            return True
        except (OSError, ValueError):    # broken pipe (the child is gone) or closed
            return False

    # ------------------------------------------------------------ state

    @property
    def frames(self) -> int:
        """Frames the child has rendered and handed to its sink."""
        return int(self._count[0]) if self._count is not None else 0

    @property
    def alive(self) -> bool:
        return self.proc.is_alive()

    def _watch(self) -> None:
        mp_wait([self.proc.sentinel])
        if not self._closing:
            self.failed = True
            self.proc.join()
            if self._on_exit is not None:
                self._on_exit(self.proc.exitcode)

    def close(self, timeout: float = 10.0) -> int | None:
        """Ask the child to finish (its sink closes: the last video is written) and wait up
        to ``timeout`` s; then SIGTERM, then SIGKILL. Returns its exit code. Idempotent."""
        self._closing = True
        if self.proc.pid is not None:
            self._send(_QUIT)
            self.proc.join(timeout)
            if self.proc.is_alive():
                self.proc.terminate()
                self.proc.join(2.0)
            if self.proc.is_alive():
                self.proc.kill()
                self.proc.join(2.0)
        for conn in (self._cmd, self._status):
            conn.close()
        self._release_shm()
        return self.proc.exitcode

    def _release_shm(self) -> None:
        if self._shm is None:
            return
        self._slot_views, self._busy, self._count = [], None, None
        try:
            self._shm.close()
        except BufferError:   # a view still held somewhere: the mapping goes with the process
            pass
        try:
            self._shm.unlink()
        except FileNotFoundError:
            pass
        self._shm = None


# ---------------------------------------------------------------- the child

class _Terminated(BaseException):
    pass


def _on_sigterm(_signum, _frame):
    raise _Terminated()


def _child_main(shm_name, slots, layout, cmd, status, cameras, width, height, depth, shadows,
                sink_spec, sink_kwargs, ppid, nice) -> None:
    import mujoco

    from sim.render import FrameRenderer

    signal.signal(signal.SIGINT, signal.SIG_IGN)    # the parent closes us in order
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_sigterm)
    if nice:
        os.nice(nice)
    shm = renderer = sink = None
    code = 0
    try:
        try:
            model = pickle.loads(cmd.recv_bytes())
            shm = shared_memory.SharedMemory(name=shm_name)
            buf = shm.buf
            views = [layout.views(buf, i) for i in range(slots)]
            busy = np.ndarray((slots,), np.uint8, buf, slots * layout.slot_bytes)
            count = np.ndarray((1,), np.int64, buf, slots * layout.slot_bytes + 64)
            data = mujoco.MjData(model)
            renderer = FrameRenderer(model, width, height, shadows)
            sink = _load_sink(sink_spec, sink_kwargs)
        except Exception as exc:  # noqa: BLE001 - the parent raises it
            status.send_bytes(f"error: {exc!r}".encode())
            raise
        status.send_bytes(b"ready")
        while True:
            if not cmd.poll(0.5):
                if os.getppid() != ppid:    # orphaned: the parent died without closing the pipe
                    break
                continue
            try:
                msg = cmd.recv_bytes()
            except EOFError:                # the parent is gone
                break
            kind = msg[:1]
            if kind == _QUIT:
                break
            if kind == _END:
                sink.end(int.from_bytes(msg[1:], "little", signed=True))
                continue
            slot = msg[1]
            header, fields = views[slot]
            episode, stamp, sim_t = int(header[0]), float(header[1]), float(header[2])
            data.time = float(header[3])
            for name, view in fields:
                getattr(data, name)[...] = view
            busy[slot] = 0                  # copied: the parent may reuse the slot
            frames = [(cam, *renderer.render(data, cam, depth=depth)) for cam in cameras]
            sink.frame(episode, stamp, sim_t, frames)
            count[0] += 1
    except _Terminated:
        pass
    except Exception:  # noqa: BLE001 - said once on stderr; the parent reports the exit code
        traceback.print_exc(file=sys.stderr)
        code = 1
    finally:
        try:
            if sink is not None:
                sink.close()
        except Exception:  # noqa: BLE001
            traceback.print_exc(file=sys.stderr)
            code = code or 1
        if renderer is not None:
            renderer.close()
        views = busy = count = None
        if shm is not None:
            try:
                shm.close()
            except BufferError:
                pass
    if code:
        sys.exit(code)


class NpzSink:
    """A sink that saves every frame as ``<dir>/frame_<n>.npz`` (episode, stamp, sim_t, and
    per camera ``<cam>_rgb`` / ``<cam>_depth``) and episode ends as ``end_<episode>``: for
    tests and for looking at what the child renders."""

    def __init__(self, out_dir: str):
        self.dir, self.n = out_dir, 0

    def frame(self, episode, stamp, sim_t, frames) -> None:
        arrays = {"episode": episode, "stamp": stamp, "sim_t": sim_t}
        for cam, rgb, depth in frames:
            arrays[f"{cam}_rgb"] = rgb
            if depth is not None:
                arrays[f"{cam}_depth"] = depth
        tmp = os.path.join(self.dir, f".frame_{self.n:05d}.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, os.path.join(self.dir, f"frame_{self.n:05d}.npz"))
        self.n += 1

    def end(self, episode) -> None:
        open(os.path.join(self.dir, f"end_{episode}"), "w").close()

    def close(self) -> None:
        open(os.path.join(self.dir, "closed"), "w").close()
