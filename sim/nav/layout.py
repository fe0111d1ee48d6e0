"""Procedurally generated indoor layouts and their free-space graph. No MuJoCo, no ROS.

A layout is a grid of rooms (``rooms_x`` x ``rooms_y`` rooms of ``room_size`` metres) in the
world frame (x east, y north, z up, origin at the south-west outer corner). Interior walls get
doors: every wall on a random spanning tree of the rooms, plus each other wall with
probability ``extra_door_prob``, so every room is reachable. Each room holds furniture (neutral
boxes) and one *landmark*: a distinctively coloured and shaped object (``"red sofa"``), no two
alike in a layout.

Free space is an occupancy grid (``resolution`` m cells) of everything solid, inflated by the
robot's radius. The free-space graph joins 8-neighbouring free cells (edge length = centre
distance); geodesic distances are Dijkstra distances on it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from slowfast_data.fields import described

COLORS = {
    "red": (0.85, 0.12, 0.12), "blue": (0.12, 0.25, 0.9), "green": (0.1, 0.7, 0.15),
    "yellow": (0.95, 0.85, 0.1), "purple": (0.55, 0.15, 0.75), "orange": (1.0, 0.5, 0.05),
    "cyan": (0.1, 0.8, 0.85), "pink": (1.0, 0.45, 0.7),
}
# kind -> (footprint half sizes x, y in m, height m, MuJoCo geom type of the body)
KINDS = {
    "sofa": ((0.45, 0.25), 0.5, "box"),
    "lamp": ((0.12, 0.12), 1.6, "cylinder"),
    "plant": ((0.25, 0.25), 0.9, "sphere"),
    "cabinet": ((0.3, 0.2), 1.4, "box"),
    "table": ((0.4, 0.4), 0.75, "cylinder"),
    "ball": ((0.3, 0.3), 0.6, "sphere"),
}


def _check(name: str, ok: bool, rng: str, value) -> None:
    if not ok:
        raise ValueError(f"{name} must be {rng}, got {value!r}")


@dataclass(frozen=True)
class LayoutConfig:
    """The generated apartment: the one definition of each value (default, meaning, range).
    nav_sim_node declares them as ``nav.layout.<name>`` parameters."""

    rooms_x: int = described(3, "rooms along x", 1, 6)
    rooms_y: int = described(2, "rooms along y", 1, 6)
    room_size: float = described(4.0, "inner side of a room (m; walls on the grid lines)", 2.0, 20.0)
    wall_thickness: float = described(0.1, "wall thickness (m)", 0.02, 0.5)
    wall_height: float = described(2.2, "wall height (m)", 0.5, 5.0)
    door_width: float = described(1.0, "door width (m; at most room_size / 2)", 0.6, 10.0)
    extra_door_prob: float = described(0.3, "chance of a door between two rooms beyond the spanning tree", 0.0, 1.0)
    furniture_per_room: int = described(1, "furniture pieces per room", 0, 4)
    resolution: float = described(0.1, "occupancy grid cell (m)", 0.02, 0.25)
    robot_radius: float = described(0.2, "robot radius for free space (m)", 0.05, 0.5)

    def __post_init__(self) -> None:
        _check("rooms_x", isinstance(self.rooms_x, int) and 1 <= self.rooms_x <= 6, "an integer in [1, 6]", self.rooms_x)
        _check("rooms_y", isinstance(self.rooms_y, int) and 1 <= self.rooms_y <= 6, "an integer in [1, 6]", self.rooms_y)
        _check("room_size", 2.0 <= self.room_size <= 20.0, "in [2, 20] m", self.room_size)
        _check("door_width", 0.6 <= self.door_width <= self.room_size / 2, f"in [0.6, {self.room_size / 2}] m",
               self.door_width)
        _check("extra_door_prob", 0.0 <= self.extra_door_prob <= 1.0, "in [0, 1]", self.extra_door_prob)
        _check("furniture_per_room", isinstance(self.furniture_per_room, int) and 0 <= self.furniture_per_room <= 4,
               "an integer in [0, 4]", self.furniture_per_room)
        _check("resolution", 0.02 <= self.resolution <= 0.25, "in [0.02, 0.25] m", self.resolution)
        _check("robot_radius", 0.05 <= self.robot_radius <= 0.5, "in [0.05, 0.5] m", self.robot_radius)
        _check("wall_thickness", 0.02 <= self.wall_thickness <= 0.5, "in [0.02, 0.5] m", self.wall_thickness)
        _check("wall_height", 0.5 <= self.wall_height <= 5.0, "in [0.5, 5] m", self.wall_height)


@dataclass
class Box:
    """An axis-aligned solid: centre (x, y), half sizes (hx, hy), height; ``geom`` is how it
    looks (box, cylinder, sphere); its footprint is always the box."""
    name: str
    center: tuple[float, float]
    half: tuple[float, float]
    height: float
    rgb: tuple[float, float, float]
    geom: str = "box"
    room: int = -1
    kind: str = "wall"
    color: str = ""


@dataclass
class Door:
    center: tuple[float, float]
    rooms: tuple[int, int]
    axis: str  # "x": the wall runs along x (door crossed going north/south); "y": along y


@dataclass
class Layout:
    cfg: LayoutConfig
    seed: int
    walls: list[Box]
    furniture: list[Box]
    landmarks: list[Box]
    doors: list[Door]
    free: np.ndarray = field(repr=False)  # bool [nx, ny]: robot centre may be here
    _graph: object = field(default=None, repr=False)

    @property
    def size(self) -> tuple[float, float]:
        c = self.cfg
        return c.rooms_x * c.room_size, c.rooms_y * c.room_size

    @property
    def solids(self) -> list[Box]:
        return self.walls + self.furniture + self.landmarks

    def room_of(self, xy) -> int:
        c = self.cfg
        i = min(max(int(xy[0] // c.room_size), 0), c.rooms_x - 1)
        j = min(max(int(xy[1] // c.room_size), 0), c.rooms_y - 1)
        return j * c.rooms_x + i

    # ---- grid ------------------------------------------------------------------------------
    def cell(self, xy) -> tuple[int, int]:
        r = self.cfg.resolution
        nx, ny = self.free.shape
        return (min(max(int(math.floor(xy[0] / r)), 0), nx - 1), min(max(int(math.floor(xy[1] / r)), 0), ny - 1))

    def cell_center(self, ij) -> np.ndarray:
        r = self.cfg.resolution
        return np.array([(ij[0] + 0.5) * r, (ij[1] + 0.5) * r])

    def is_free(self, xy) -> bool:
        x, y = float(xy[0]), float(xy[1])
        w, h = self.size
        if not (0.0 <= x < w and 0.0 <= y < h):
            return False
        return bool(self.free[self.cell((x, y))])

    def segment_free(self, a, b, step: float | None = None) -> bool:
        """True when the robot can drive straight from ``a`` to ``b``."""
        a, b = np.asarray(a, float), np.asarray(b, float)
        step = step or self.cfg.resolution / 2
        n = max(int(math.ceil(np.linalg.norm(b - a) / step)), 1)
        return all(self.is_free(a + (b - a) * k / n) for k in range(n + 1))

    @property
    def graph(self) -> "FreeSpaceGraph":
        if self._graph is None:
            self._graph = FreeSpaceGraph(self)
        return self._graph


class FreeSpaceGraph:
    """8-connected graph of free cells; geodesic distances by Dijkstra (cached per goal)."""

    def __init__(self, layout: Layout):
        self.layout = layout
        self.shape = layout.free.shape
        r = layout.cfg.resolution
        self.steps = [(dx, dy, r * math.hypot(dx, dy)) for dx in (-1, 0, 1) for dy in (-1, 0, 1) if dx or dy]
        self._fields: dict[tuple, np.ndarray] = {}
        # Planning cost: cells within ``clearance`` of the inflated obstacles cost more to
        # cross, so planned paths keep off the walls (distances for metrics stay true).
        near = _inflate(~layout.free, 0.3 / r) & layout.free
        self.cost = np.where(near, 4.0, 1.0)

    def neighbours(self, ij):
        """Free 8-neighbours of a free cell with the edge length; diagonals never cut a corner."""
        free = self.layout.free
        nx, ny = self.shape
        i, j = ij
        for dx, dy, w in self.steps:
            a, b = i + dx, j + dy
            if 0 <= a < nx and 0 <= b < ny and free[a, b] and (not (dx and dy) or (free[a, j] and free[i, b])):
                yield (a, b), w

    def snap(self, xy) -> tuple[int, int]:
        """The free cell nearest to ``xy`` (its own cell when free)."""
        ij = self.layout.cell(xy)
        if self.layout.free[ij]:
            return ij
        cells = np.argwhere(self.layout.free)
        centers = (cells + 0.5) * self.layout.cfg.resolution
        k = int(np.argmin(np.sum((centers - np.asarray(xy, float)[:2]) ** 2, axis=1)))
        return tuple(int(v) for v in cells[k])

    def field(self, goal_xy, planning: bool = False) -> np.ndarray:
        """Geodesic distance (m) of every cell to the goal's cell, ``inf`` where unreachable.
        ``planning=True``: the clearance-weighted cost instead (for paths that keep off walls)."""
        import heapq

        g = self.snap(goal_xy)
        cost = self.cost if planning else None
        if (g, planning) not in self._fields:
            d = np.full(self.shape, np.inf)
            d[g] = 0.0
            heap = [(0.0, g)]
            while heap:
                dist, c = heapq.heappop(heap)
                if dist > d[c]:
                    continue
                for n, w in self.neighbours(c):
                    nd = dist + (w if cost is None else w * 0.5 * (cost[c] + cost[n]))
                    if nd < d[n] - 1e-12:
                        d[n] = nd
                        heapq.heappush(heap, (nd, n))
            self._fields[(g, planning)] = d
        return self._fields[(g, planning)]

    def distance(self, a_xy, b_xy) -> float:
        """Geodesic distance from ``a`` to ``b`` on the graph, plus the straight offsets of both
        points from their cell centres (so it is continuous and 0 at ``b`` itself)."""
        f = self.field(b_xy)
        a = self.snap(a_xy)
        b = self.snap(b_xy)
        lay = self.layout
        d = float(f[a])
        if a == b:
            return float(np.linalg.norm(np.asarray(a_xy, float)[:2] - np.asarray(b_xy, float)[:2]))
        return d + float(np.linalg.norm(np.asarray(a_xy, float)[:2] - lay.cell_center(a))) \
            + float(np.linalg.norm(np.asarray(b_xy, float)[:2] - lay.cell_center(b)))

    def shortest_path(self, a_xy, b_xy, planning: bool = True) -> np.ndarray:
        """Cell centres along a shortest path from ``a`` to ``b`` (inclusive), ``[n, 2]``; by
        default the clearance-weighted one (keeps ~0.3 m off obstacles where it can)."""
        f = self.field(b_xy, planning)
        cost = self.cost if planning else None
        cur = self.snap(a_xy)
        goal = self.snap(b_xy)
        if not np.isfinite(f[cur]):
            raise ValueError("goal not reachable from start")
        path = [cur]
        while cur != goal:
            best = min(self.neighbours(cur), default=None,
                       key=lambda nw: f[nw[0]] + (nw[1] if cost is None else nw[1] * 0.5 * (cost[cur] + cost[nw[0]])))
            if best is None or f[best[0]] >= f[cur]:
                break
            cur = best[0]
            path.append(cur)
        pts = np.array([self.layout.cell_center(c) for c in path])
        pts[0] = np.asarray(a_xy, float)[:2] if self.layout.is_free(a_xy) else pts[0]
        pts[-1] = np.asarray(b_xy, float)[:2] if self.layout.is_free(b_xy) else pts[-1]
        return pts


def _spanning_doors(rng: np.random.Generator, cfg: LayoutConfig) -> set:
    rx, ry = cfg.rooms_x, cfg.rooms_y
    edges = [((i, j), (i + 1, j)) for i in range(rx - 1) for j in range(ry)] + \
            [((i, j), (i, j + 1)) for i in range(rx) for j in range(ry - 1)]
    order = rng.permutation(len(edges))
    parent = {(i, j): (i, j) for i in range(rx) for j in range(ry)}

    def root(a):
        while parent[a] != a:
            a = parent[a]
        return a

    chosen = set()
    for k in order:
        a, b = edges[k]
        if root(a) != root(b):
            parent[root(a)] = root(b)
            chosen.add(edges[k])
        elif rng.random() < cfg.extra_door_prob:
            chosen.add(edges[k])
    return chosen


def generate_layout(seed: int, cfg: LayoutConfig | None = None) -> Layout:
    """A random layout; the same seed and config always give the same layout."""
    cfg = cfg or LayoutConfig()
    rng = np.random.default_rng(seed)
    S, T = cfg.room_size, cfg.wall_thickness / 2
    W, H = cfg.rooms_x * S, cfg.rooms_y * S
    wall_rgb = (0.82, 0.8, 0.75)
    walls: list[Box] = []
    doors: list[Door] = []

    def wall_x(y, x0, x1, name):  # a wall along x at height y from x0 to x1
        if x1 - x0 > 1e-6:
            walls.append(Box(name, ((x0 + x1) / 2, y), ((x1 - x0) / 2 + T, T), cfg.wall_height, wall_rgb))

    def wall_y(x, y0, y1, name):
        if y1 - y0 > 1e-6:
            walls.append(Box(name, (x, (y0 + y1) / 2), (T, (y1 - y0) / 2 + T), cfg.wall_height, wall_rgb))

    wall_x(0.0, 0.0, W, "wall_s")
    wall_x(H, 0.0, W, "wall_n")
    wall_y(0.0, 0.0, H, "wall_w")
    wall_y(W, 0.0, H, "wall_e")
    door_edges = _spanning_doors(rng, cfg)
    half = cfg.door_width / 2
    margin = half + 0.4
    for i in range(cfg.rooms_x - 1):  # vertical walls at x = (i + 1) S
        for j in range(cfg.rooms_y):
            x, y0, y1 = (i + 1) * S, j * S, (j + 1) * S
            if ((i, j), (i + 1, j)) in door_edges:
                c = float(rng.uniform(y0 + margin, y1 - margin))
                wall_y(x, y0, c - half, f"wall_v{i}_{j}a")
                wall_y(x, c + half, y1, f"wall_v{i}_{j}b")
                doors.append(Door((x, c), (j * cfg.rooms_x + i, j * cfg.rooms_x + i + 1), "y"))
            else:
                wall_y(x, y0, y1, f"wall_v{i}_{j}")
    for j in range(cfg.rooms_y - 1):
        for i in range(cfg.rooms_x):
            y, x0, x1 = (j + 1) * S, i * S, (i + 1) * S
            if ((i, j), (i, j + 1)) in door_edges:
                c = float(rng.uniform(x0 + margin, x1 - margin))
                wall_x(y, x0, c - half, f"wall_h{i}_{j}a")
                wall_x(y, c + half, x1, f"wall_h{i}_{j}b")
                doors.append(Door((c, y), (j * cfg.rooms_x + i, (j + 1) * cfg.rooms_x + i), "x"))
            else:
                wall_x(y, x0, x1, f"wall_h{i}_{j}")

    n_rooms = cfg.rooms_x * cfg.rooms_y
    combos = [(c, k) for c in COLORS for k in KINDS]
    picks = rng.choice(len(combos), size=n_rooms, replace=False)
    used_kinds_colors = [combos[p] for p in picks]
    landmarks: list[Box] = []
    furniture: list[Box] = []
    clear = 0.9  # keep objects this far from doors

    def place(room: int, half_xy, avoid: list[Box]) -> tuple[float, float] | None:
        i, j = room % cfg.rooms_x, room // cfg.rooms_x
        for _ in range(200):
            # against a wall (like real furniture), or anywhere with a clear margin
            x = float(rng.uniform(i * S + T + half_xy[0] + 0.05, (i + 1) * S - T - half_xy[0] - 0.05))
            y = float(rng.uniform(j * S + T + half_xy[1] + 0.05, (j + 1) * S - T - half_xy[1] - 0.05))
            if any(math.hypot(x - d.center[0], y - d.center[1]) < clear + max(half_xy) for d in doors):
                continue
            if any(abs(x - b.center[0]) < half_xy[0] + b.half[0] + 0.7 and
                   abs(y - b.center[1]) < half_xy[1] + b.half[1] + 0.7 for b in avoid):
                continue
            return x, y
        return None

    for room in range(n_rooms):
        color, kind = used_kinds_colors[room]
        half_xy, height, geom = KINDS[kind]
        if rng.random() < 0.5 and geom == "box":
            half_xy = (half_xy[1], half_xy[0])
        xy = place(room, half_xy, landmarks + furniture)
        if xy is None:
            raise RuntimeError(f"could not place a landmark in room {room} (seed {seed})")
        landmarks.append(Box(f"{color} {kind}", xy, half_xy, height, COLORS[color], geom, room, kind, color))
        for k in range(cfg.furniture_per_room):
            fh = (float(rng.uniform(0.2, 0.45)), float(rng.uniform(0.2, 0.45)))
            fxy = place(room, fh, landmarks + furniture)
            if fxy is not None:
                shade = float(rng.uniform(0.35, 0.6))
                furniture.append(Box(f"furniture_{room}_{k}", fxy, fh, float(rng.uniform(0.4, 0.9)),
                                     (shade, shade * 0.85, shade * 0.7), "box", room, "furniture"))

    r = cfg.resolution
    nx, ny = int(round(W / r)), int(round(H / r))
    occ = np.zeros((nx, ny), bool)
    xs = (np.arange(nx) + 0.5) * r
    ys = (np.arange(ny) + 0.5) * r
    for b in walls + furniture + landmarks:
        mx = np.abs(xs - b.center[0]) <= b.half[0]
        my = np.abs(ys - b.center[1]) <= b.half[1]
        occ[np.ix_(mx, my)] = True
    occ[0, :] = occ[-1, :] = occ[:, 0] = occ[:, -1] = True
    free = ~_inflate(occ, cfg.robot_radius / r)
    return Layout(cfg, seed, walls, furniture, landmarks, doors, free)


def _inflate(occ: np.ndarray, radius_cells: float) -> np.ndarray:
    """Cells within ``radius_cells`` (centre to centre, plus half a cell) of an occupied cell."""
    out = occ.copy()
    k = int(math.ceil(radius_cells))
    nx, ny = occ.shape
    for dx in range(-k, k + 1):
        for dy in range(-k, k + 1):
            if (dx or dy) and math.hypot(dx, dy) <= radius_cells + 0.5:
                src = occ[max(0, -dx):nx - max(0, dx), max(0, -dy):ny - max(0, dy)]
                out[max(0, dx):nx + min(0, dx), max(0, dy):ny + min(0, dy)] |= src
    return out
