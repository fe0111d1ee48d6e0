"""The sim's cameras on ROS 2: image, camera_info and aligned depth topics, and the episode video.

A :class:`CameraSink` is what a renderer (:class:`sim.render.ThreadRenderer` in the sim node's
process, :class:`sim.render_process.ProcessRenderer` in a child) hands its frames to. In the
child, :func:`render_process_sink` builds it with a ROS node of its own that publishes the
sim node's camera topics with the same QoS.
"""
from __future__ import annotations

from typing import Callable

import rclpy
from sensor_msgs.msg import CameraInfo, Image

from sim.report import EpisodeVideo
from slowfast_ros import msgs, qos


def camera_topics(cam: str, depth: bool) -> dict[str, str]:
    """A camera's topics, as a RealSense driver names them."""
    t = {"image": f"{cam}/color/image_raw", "info": f"{cam}/color/camera_info"}
    if depth:
        t["depth"] = f"{cam}/aligned_depth_to_color/image_raw"
    return t


def camera_publishers(node, topics: dict) -> dict:
    """``{(camera, kind): publisher}`` for ``{camera: camera_topics(...)}``."""
    return {(cam, k): node.create_publisher(CameraInfo if k == "info" else Image, t, qos.SENSOR_PUB)
            for cam, ts in topics.items() for k, t in ts.items()}


class CameraSink:
    """Publishes rendered frames (image, camera_info, depth when rendered; stamped with the
    snapshot's capture time) and writes the episode video."""

    def __init__(self, pubs: dict, infos: dict, video: EpisodeVideo | None, node=None):
        self.pubs, self.infos, self.video, self._node = pubs, infos, video, node

    def frame(self, episode: int, stamp: float, sim_t: float, frames) -> None:
        for cam, rgb, depth in frames:
            frame_id = f"{cam}_color_optical_frame"
            self.pubs[(cam, "image")].publish(msgs.image_msg(stamp, frame_id, rgb))
            self.pubs[(cam, "info")].publish(msgs.camera_info_msg(stamp, self.infos[cam]))
            if depth is not None:
                self.pubs[(cam, "depth")].publish(msgs.depth_msg_mm(stamp, frame_id, depth))
        if self.video is not None:
            self.video.add(episode, sim_t, frames[0][1])

    def end(self, _episode: int) -> None:
        if self.video is not None:
            self.video.close()

    def close(self) -> None:
        self.end(-1)
        if self._node is not None:
            context = self._node.context
            self._node.destroy_node()
            self._node = None
            rclpy.try_shutdown(context=context)


def render_process_sink(node_name: str, namespace: str, topics: dict, infos: dict, out_dir: str,
                        fps: float) -> CameraSink:
    """Built in the render process (:mod:`sim.render_process`): its own ROS context and node,
    the sim node's camera topics (resolved there) with the same QoS. No executor: it only
    publishes."""
    from rclpy.signals import SignalHandlerOptions  # noqa: PLC0415

    context = rclpy.Context()
    # args=[]: spawn hands the child the parent's argv, whose --ros-args (the node's name
    # remap, its parameter file) are the sim node's, not this one's
    rclpy.init(args=[], context=context, signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node(node_name, namespace=namespace or "/", context=context,
                             use_global_arguments=False, start_parameter_services=False)
    video = EpisodeVideo(out_dir, fps) if out_dir else None
    return CameraSink(camera_publishers(node, topics), infos, video, node=node)


def make_renderer(node, env, p, on_error: Callable):
    """The sim node's camera renderer (``p``: its parameters): a thread that publishes with
    ``node``, or with ``render_process`` a child
    process with a node of its own on the same topics."""
    cams = tuple(env.cameras)
    topics = {cam: {k: node.resolve_topic_name(t) for k, t in camera_topics(cam, p.depth).items()} for cam in cams}
    infos = {cam: env.camera_info(cam) for cam in cams}
    if p.render_process:
        from sim.render_process import ProcessRenderer  # noqa: PLC0415
        sink = dict(node_name=f"{node.get_name()}_render", namespace=node.get_namespace(), topics=topics,
                    infos=infos, out_dir=p.out_dir, fps=p.camera_hz)
        return ProcessRenderer(env.model, cams, p.camera_width, p.camera_height, depth=p.depth,
                               shadows=bool(getattr(env.cfg, "shadows", False)),
                               sink=f"{__name__}:render_process_sink", sink_kwargs=sink,
                               nice=p.render_nice, on_exit=on_error)
    from sim.render import ThreadRenderer  # noqa: PLC0415
    sink = CameraSink(camera_publishers(node, topics), infos,
                      EpisodeVideo(p.out_dir, p.camera_hz) if p.out_dir else None)
    return ThreadRenderer(env, cams, sink, depth=p.depth, on_error=on_error)
