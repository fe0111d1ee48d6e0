"""MuJoCo navigation sim: procedural indoor layouts, a differential-drive base with an RGB-D
camera, episodes with template instructions, a shortest-path expert and VLN metrics. No ROS.

    from sim.nav import NavConfig, NavEnv, make_episode, NavExpert, metrics_on_layout
"""
import sim as _sim  # noqa: F401 - headless rendering default (MUJOCO_GL)

from .env import FORWARD_STEP_M, TURN_STEP_RAD, NavConfig, NavEnv
from .episodes import Episode, make_episode
from .expert import NavExpert
from .layout import Layout, LayoutConfig, generate_layout
from .metrics import episode_metrics, metrics_on_layout, summarize

__all__ = ["FORWARD_STEP_M", "TURN_STEP_RAD", "NavConfig", "NavEnv", "Episode", "make_episode", "NavExpert",
           "Layout", "LayoutConfig", "generate_layout", "episode_metrics", "metrics_on_layout", "summarize"]
