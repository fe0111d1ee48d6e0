"""Marker detection and tracking for vision-based tactile sensors (GelSight Mini style).

The gel carries a grid of dark dots on a bright background. Under load the dots move; the
marker field is each dot's displacement from where it was in a reference frame (taken at
start, or on a re-zero).

Detection (:class:`MarkerDetector`): grayscale, the slowly varying background estimated by
a large blur and subtracted, so the dots become positive "ink" ``b(x) = background - gray``;
ink above ``threshold`` forms connected components; components with an area in
``[min_area, max_area]`` are markers; each centre is the ink-weighted centroid over the
component's dilated bounding box, which is sub-pixel accurate for blurred or anti-aliased
dots (see tests/hardware/test_markers.py: on rendered dots with noise, RMS error below
0.1 px).

Tracking (:class:`MarkerTracker`): each reference marker is predicted where it was last seen
(its reference position when lost), detections are matched to predictions one-to-one,
nearest pairs first, only within ``gate_px``; a reference marker with no detection in its
gate is lost (NaN), a detection matching no marker is spurious and ignored. Output is in
metres with a configurable scale: x, y = reference position relative to the image centre,
dx, dy = displacement (image x to the right, image y down).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class DetectorConfig:
    threshold: float = 20.0       # ink (background - gray) above this is a dot, gray levels
    min_area: int = 4             # px; smaller components are noise
    max_area: int = 400           # px; larger ones are not a single dot (a shadow, an edge)
    background_px: int = 31       # blur kernel of the background estimate (odd, > dot size)
    dark_markers: bool = True     # dots darker than the gel (GelSight); False: bright dots

    def __post_init__(self):
        if not (0.0 < self.threshold < 255.0):
            raise ValueError(f"threshold: {self.threshold} outside (0, 255)")
        if not (1 <= self.min_area < self.max_area):
            raise ValueError(f"min_area, max_area: need 1 <= min_area < max_area, got {self.min_area}, {self.max_area}")
        if self.background_px < 3 or self.background_px % 2 == 0:
            raise ValueError(f"background_px: {self.background_px} must be odd and >= 3")


class MarkerDetector:
    def __init__(self, config: DetectorConfig = DetectorConfig()):
        self.cfg = config

    def ink(self, image: np.ndarray) -> np.ndarray:
        """Background-subtracted dot intensity, float32, >= 0."""
        gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        gray = gray.astype(np.float32)
        k = self.cfg.background_px
        # A max (min for bright dots) filter before the blur keeps dots out of the background.
        morph = cv2.dilate if self.cfg.dark_markers else cv2.erode
        bg = cv2.blur(morph(gray, np.ones((k // 2 | 1, k // 2 | 1), np.uint8)), (k, k))
        ink = bg - gray if self.cfg.dark_markers else gray - bg
        return np.clip(ink, 0.0, None)

    def detect(self, image: np.ndarray) -> np.ndarray:
        """(M, 2) float64 marker centres (x, y) in pixels, sub-pixel."""
        ink = self.ink(image)
        mask = (ink > self.cfg.threshold).astype(np.uint8)
        n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        h, w = ink.shape
        out = []
        for i in range(1, n):
            x, y, bw, bh, area = stats[i]
            if not (self.cfg.min_area <= area <= self.cfg.max_area):
                continue
            # Weighted centroid over the box grown by 1 px, so the anti-aliased rim counts;
            # the threshold is subtracted half-way so background noise weighs ~nothing.
            x0, y0, x1, y1 = max(x - 1, 0), max(y - 1, 0), min(x + bw + 1, w), min(y + bh + 1, h)
            wgt = np.clip(ink[y0:y1, x0:x1] - 0.5 * self.cfg.threshold, 0.0, None)
            s = float(wgt.sum())
            if s <= 0.0:
                continue
            ys, xs = np.mgrid[y0:y1, x0:x1]
            out.append(((wgt * xs).sum() / s, (wgt * ys).sum() / s))
        return np.array(out, dtype=np.float64).reshape(-1, 2)


def order_as_grid(points: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Sort (rows*cols, 2) points of a roughly axis-aligned grid row-major (rows along image
    y, columns along x). Raises ValueError when the count does not match the grid."""
    if len(points) != rows * cols:
        raise ValueError(f"found {len(points)} markers, the grid {rows}x{cols} needs {rows * cols}")
    by_y = points[np.argsort(points[:, 1], kind="stable")]
    out = [r[np.argsort(r[:, 0], kind="stable")] for r in by_y.reshape(rows, cols, 2)]
    return np.concatenate(out, axis=0)


def match_gated(pred: np.ndarray, det: np.ndarray, gate: float) -> np.ndarray:
    """One-to-one matching of predictions (N, 2) to detections (M, 2): nearest pairs first,
    only pairs closer than ``gate``. Returns (N,) detection index per prediction, -1 if none."""
    idx = np.full(len(pred), -1, dtype=np.int64)
    if len(pred) == 0 or len(det) == 0:
        return idx
    d = np.linalg.norm(pred[:, None, :] - det[None, :, :], axis=-1)
    pi, di = np.nonzero(d < gate)
    order = np.argsort(d[pi, di], kind="stable")
    used_p, used_d = np.zeros(len(pred), bool), np.zeros(len(det), bool)
    for k in order:
        p, q = pi[k], di[k]
        if not used_p[p] and not used_d[q]:
            idx[p] = q
            used_p[p] = used_d[q] = True
    return idx


@dataclass
class TrackResult:
    markers: np.ndarray        # (N, 4) float32 x, y, dx, dy in metres; lost rows all NaN
    tracked: int               # markers found this frame
    detected: int              # detections in the frame (tracked + spurious)

    @property
    def lost(self) -> int:
        return len(self.markers) - self.tracked

    @property
    def spurious(self) -> int:
        return self.detected - self.tracked


class MarkerTracker:
    """Tracks the markers of a reference frame. ``reset(image)`` takes the reference;
    ``update(image)`` returns the field. ``grid=(rows, cols)`` orders the reference
    row-major (and refuses a reference with another count); ``None`` orders by (y, x)."""

    def __init__(self, detector: MarkerDetector, gate_px: float, mm_per_px: float,
                 image_size: tuple[int, int], grid: tuple[int, int] | None = None,
                 min_markers: int = 4):
        if gate_px <= 0:
            raise ValueError(f"gate_px: {gate_px} must be > 0")
        if mm_per_px <= 0:
            raise ValueError(f"mm_per_px: {mm_per_px} must be > 0")
        self.detector = detector
        self.gate = float(gate_px)
        self.scale = mm_per_px * 1e-3           # metres per pixel
        self.centre = np.array([(image_size[0] - 1) / 2.0, (image_size[1] - 1) / 2.0])
        self.grid = grid
        self.min_markers = int(min_markers)
        self.reference: np.ndarray | None = None
        self._last: np.ndarray | None = None

    def reset(self, image: np.ndarray) -> int:
        """Take ``image`` as the reference. Returns the marker count; raises ValueError when
        the frame cannot serve as a reference (too few markers, or not the grid)."""
        pts = self.detector.detect(image)
        if len(pts) < self.min_markers:
            raise ValueError(f"reference frame has {len(pts)} markers, at least {self.min_markers} needed")
        if self.grid is not None:
            pts = order_as_grid(pts, *self.grid)
        else:
            pts = pts[np.lexsort((pts[:, 0], np.round(pts[:, 1])))]
        self.reference = pts
        self._last = pts.copy()
        return len(pts)

    def update(self, image: np.ndarray) -> TrackResult:
        if self.reference is None:
            raise RuntimeError("no reference frame: call reset() first")
        det = self.detector.detect(image)
        idx = match_gated(self._last, det, self.gate)
        found = idx >= 0
        pos = np.full_like(self.reference, np.nan)
        pos[found] = det[idx[found]]
        # Lost markers are predicted at their reference position, so they are found again.
        self._last = np.where(found[:, None], pos, self.reference)
        out = np.full((len(self.reference), 4), np.nan, np.float32)
        out[found, :2] = (self.reference[found] - self.centre) * self.scale
        out[found, 2:] = (pos[found] - self.reference[found]) * self.scale
        return TrackResult(out, int(found.sum()), len(det))

    def reference_field(self) -> np.ndarray:
        """The reference markers as a zero-displacement field (N, 4), metres."""
        out = np.zeros((len(self.reference), 4), np.float32)
        out[:, :2] = (self.reference - self.centre) * self.scale
        return out


def render_markers(centres: np.ndarray, size: tuple[int, int], radius: float = 2.5,
                   background: float = 200.0, ink: float = 120.0, blur: float = 0.7,
                   noise: float = 0.0, seed: int = 0, supersample: int = 8) -> np.ndarray:
    """A synthetic tactile frame: dark anti-aliased discs at ``centres`` (K, 2, pixels; any
    float position) on a bright, slightly shaded gel; uint8 RGB. For tests and demos."""
    w, h = size
    s = supersample
    yy, xx = np.mgrid[0:h * s, 0:w * s]
    # Pixel (i, j) covers [j, j+1) x [i, i+1); its centre is (j + 0.5, i + 0.5) - 0.5 = j.
    xs, ys = (xx + 0.5) / s - 0.5, (yy + 0.5) / s - 0.5
    hi = np.zeros((h * s, w * s), np.float32)
    r2 = radius * radius
    for cx, cy in np.asarray(centres, float):
        x0, x1 = int(max((cx - radius - 1) * s, 0)), int(min((cx + radius + 2) * s, w * s))
        y0, y1 = int(max((cy - radius - 1) * s, 0)), int(min((cy + radius + 2) * s, h * s))
        if x0 >= x1 or y0 >= y1:
            continue
        disc = (xs[y0:y1, x0:x1] - cx) ** 2 + (ys[y0:y1, x0:x1] - cy) ** 2 <= r2
        hi[y0:y1, x0:x1] = np.maximum(hi[y0:y1, x0:x1], disc)
    cover = cv2.resize(hi, (w, h), interpolation=cv2.INTER_AREA)
    shade = background + 15.0 * (np.linspace(-1, 1, w)[None, :] + 0.5 * np.linspace(-1, 1, h)[:, None])
    img = shade - ink * cover
    if blur > 0:
        img = cv2.GaussianBlur(img.astype(np.float32), (0, 0), blur)
    if noise > 0:
        img = img + np.random.default_rng(seed).normal(0.0, noise, img.shape)
    g = np.clip(np.round(img), 0, 255).astype(np.uint8)
    return np.repeat(g[:, :, None], 3, axis=2)


def grid_centres(rows: int, cols: int, size: tuple[int, int], margin: float = 0.12) -> np.ndarray:
    """Marker centres of a rows x cols grid inside an image of ``size`` (w, h), row-major."""
    w, h = size
    xs = np.linspace(margin * w, (1 - margin) * w, cols)
    ys = np.linspace(margin * h, (1 - margin) * h, rows)
    gx, gy = np.meshgrid(xs, ys)
    return np.column_stack([gx.ravel(), gy.ravel()])
