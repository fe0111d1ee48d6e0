"""GelSight-style marker field computed from MuJoCo contact forces.

Model (all in the pad frame, metres and newtons). Each contact ``c`` on the pad has a position
``r_c`` (x, y on the pad face), a compressive normal force ``n_c >= 0`` and a tangential force
``t_c`` (2-vector, the force the touched object exerts on the gel). A Gaussian kernel
``w(m, c) = exp(-|m - r_c|^2 / (2 sigma^2))`` spreads each contact over the markers ``m``:

* shear: ``d_shear(m) = k_shear * sum_c w(m, c) t_c`` — markers move along the local
  tangential contact force, proportionally to it;
* normal load: local pressure ``p(m) = sum_c w(m, c) n_c`` and pressure centre
  ``r0 = sum_c n_c r_c / sum_c n_c``; ``d_normal(m) = k_normal * p(m) * (m - r0)`` — the gel
  spreads radially away from the pressure centre, proportionally to local pressure.

The field is linear in the contact forces, so its magnitude grows monotonically with load
and with shear; the direction follows the contact geometry MuJoCo produced.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np


class TactileModel:
    def __init__(self, rows: int, cols: int, half: Tuple[float, float], sigma: float = 0.016,
                 k_shear: float = 5e-4, k_normal: float = 2.5e-3):
        xs = np.linspace(-half[0] * 0.85, half[0] * 0.85, cols)
        ys = np.linspace(-half[1] * 0.85, half[1] * 0.85, rows)
        gx, gy = np.meshgrid(xs, ys)              # row-major: rows along y, columns along x
        self.markers = np.column_stack([gx.ravel(), gy.ravel()])
        self.sigma = float(sigma)
        self.k_shear = float(k_shear)
        self.k_normal = float(k_normal)
        self._out0 = np.zeros((self.n_markers, 4), np.float32)      # the field at rest
        self._out0[:, :2] = self.markers
        self._two_sigma2 = 2.0 * self.sigma ** 2

    @property
    def n_markers(self) -> int:
        return self.markers.shape[0]

    def field(self, xy: np.ndarray, fn: np.ndarray, ft: np.ndarray,
              rng: Optional[np.random.Generator] = None, noise: float = 0.0) -> np.ndarray:
        """(n_markers, 4) float32: x, y, dx, dy for contacts at ``xy`` (k, 2) with normal ``fn`` (k,)
        and tangential ``ft`` (k, 2) forces on the pad."""
        out = self._out0.copy()
        disp = np.zeros((self.n_markers, 2))
        fn = np.clip(np.asarray(fn, float), 0.0, None)
        fsum = fn.sum() if len(fn) else 0.0
        if fsum > 1e-9:
            diff = self.markers[:, None, :] - np.asarray(xy, float)[None, :, :]      # (n, k, 2)
            w = np.exp(-(diff ** 2).sum(-1) / self._two_sigma2)                        # (n, k)
            disp += self.k_shear * (w @ np.asarray(ft, float))
            r0 = (fn[:, None] * xy).sum(0) / fsum
            disp += self.k_normal * (w @ fn)[:, None] * (self.markers - r0)
        if rng is not None and noise > 0.0:
            disp += rng.normal(0.0, noise, disp.shape)
        out[:, 2:] = disp
        return out
