"""Marker detection and tracking on rendered GelSight-style frames with known displacements.

Stated accuracy (rendered anti-aliased dots, radius 2.5 px, blur 0.7 px, Gaussian noise of
2 gray levels, 320x240, 7x9 grid, displacements up to 3 px): displacement RMS error below
0.05 px and every marker within 0.15 px. Lost markers come back as NaN rows, spurious dots
are ignored, an empty frame tracks nothing and cannot become a reference."""
import numpy as np
import pytest

from hardware.markers import (DetectorConfig, MarkerDetector, MarkerTracker, grid_centres, match_gated,
                              order_as_grid, render_markers)

SIZE = (320, 240)
GRID = (7, 9)
MM_PER_PX = 0.06


def _tracker(gate=8.0, grid=GRID):
    return MarkerTracker(MarkerDetector(), gate_px=gate, mm_per_px=MM_PER_PX, image_size=SIZE, grid=grid)


@pytest.fixture(scope="module")
def ref():
    return grid_centres(*GRID, SIZE)


def _disp_px(result):
    return result.markers[:, 2:].astype(float) / (MM_PER_PX * 1e-3)


def test_detection_is_subpixel_on_noisy_frames(ref):
    rng = np.random.default_rng(0)
    truth = ref + rng.uniform(-0.5, 0.5, ref.shape)        # arbitrary sub-pixel positions
    found = order_as_grid(MarkerDetector().detect(render_markers(truth, SIZE, noise=2.0, seed=1)), *GRID)
    err = np.linalg.norm(found - truth, axis=1)
    assert np.sqrt((err ** 2).mean()) < 0.05 and err.max() < 0.15


def test_known_displacements_are_recovered_in_metres(ref):
    rng = np.random.default_rng(1)
    tr = _tracker()
    assert tr.reset(render_markers(ref, SIZE, noise=2.0, seed=2)) == 63
    for k in range(3):
        d = rng.uniform(-3.0, 3.0, ref.shape)
        res = tr.update(render_markers(ref + d, SIZE, noise=2.0, seed=3 + k))
        assert res.tracked == 63 and res.lost == 0 and res.spurious == 0
        err = np.linalg.norm(_disp_px(res) - d, axis=1)
        assert np.sqrt((err ** 2).mean()) < 0.05, k
        assert err.max() < 0.15, k
    # x, y are the reference positions about the image centre, in metres, row-major.
    centre = np.array([(SIZE[0] - 1) / 2, (SIZE[1] - 1) / 2])
    np.testing.assert_allclose(res.markers[:, :2], (ref - centre) * MM_PER_PX * 1e-3, atol=0.15 * MM_PER_PX * 1e-3)


def test_large_shear_is_tracked_frame_to_frame(ref):
    """A slow shear to 6 px (beyond a 4 px gate from the reference) stays tracked because
    each marker is predicted where it was last seen."""
    tr = _tracker(gate=4.0)
    tr.reset(render_markers(ref, SIZE))
    for s in np.linspace(0.5, 6.0, 12):
        res = tr.update(render_markers(ref + [s, 0.0], SIZE))
    assert res.tracked == 63
    np.testing.assert_allclose(_disp_px(res)[:, 0], 6.0, atol=0.1)


def test_lost_markers_are_nan_rows_and_come_back(ref):
    tr = _tracker()
    tr.reset(render_markers(ref, SIZE))
    keep = np.ones(len(ref), bool)
    keep[[0, 10, 40]] = False
    res = tr.update(render_markers(ref[keep] + 1.0, SIZE))
    assert res.tracked == 60 and res.lost == 3
    assert np.isnan(res.markers[~keep]).all()
    assert np.isfinite(res.markers[keep]).all()
    np.testing.assert_allclose(_disp_px(res)[keep], 1.0, atol=0.1)
    res = tr.update(render_markers(ref + 1.0, SIZE))    # they reappear where they were
    assert res.tracked == 63


def test_spurious_dots_are_ignored(ref):
    tr = _tracker()
    tr.reset(render_markers(ref, SIZE))
    # Dirt between markers (half a spacing away, outside every gate of 8 px) and at a corner.
    spacing = ref[1, 0] - ref[0, 0]
    extra = np.array([[ref[0, 0] + spacing / 2, ref[0, 1] + 12.0], [5.0, 5.0], [ref[30, 0] + spacing / 2, ref[30, 1]]])
    res = tr.update(render_markers(np.vstack([ref + 0.5, extra]), SIZE))
    assert res.tracked == 63 and res.spurious == 3
    np.testing.assert_allclose(_disp_px(res), 0.5, atol=0.1)


def test_one_to_one_matching_never_gives_a_detection_twice():
    pred = np.array([[0.0, 0.0], [1.0, 0.0]])
    det = np.array([[0.6, 0.0]])                      # nearer to the second prediction
    np.testing.assert_array_equal(match_gated(pred, det, gate=2.0), [-1, 0])
    np.testing.assert_array_equal(match_gated(pred, det, gate=0.3), [-1, -1])


def test_a_frame_without_markers_tracks_nothing_and_is_no_reference(ref):
    blank = render_markers(np.zeros((0, 2)), SIZE, noise=2.0)
    tr = _tracker()
    with pytest.raises(ValueError, match="reference frame has 0 markers"):
        tr.reset(blank)
    tr.reset(render_markers(ref, SIZE))
    res = tr.update(blank)
    assert res.tracked == 0 and np.isnan(res.markers).all()


def test_reference_must_match_the_grid(ref):
    tr = _tracker()
    with pytest.raises(ValueError, match="grid 7x9 needs 63"):
        tr.reset(render_markers(ref[:-1], SIZE))


def test_bad_detector_and_tracker_settings_name_the_field():
    with pytest.raises(ValueError, match="threshold"):
        DetectorConfig(threshold=0)
    with pytest.raises(ValueError, match="background_px"):
        DetectorConfig(background_px=30)
    with pytest.raises(ValueError, match="gate_px"):
        MarkerTracker(MarkerDetector(), gate_px=0, mm_per_px=0.06, image_size=SIZE)
