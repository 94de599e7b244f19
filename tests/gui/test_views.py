"""The pure views: loss curves, KL bars, the sample strip, and the tiling they share."""

from __future__ import annotations

import numpy as np
import pytest

from bvae_desktop.gui.kl_bars import KlBarView
from bvae_desktop.gui.loss_plot import LOG_FLOOR, LossPlotView
from bvae_desktop.gui.pg_setup import configure_pyqtgraph
from bvae_desktop.gui.sample_strip import SampleStripView
from bvae_desktop.gui.tiling import GAP_VALUE, tile_rows

# --- helpers -------------------------------------------------------------------------------


def _curves(steps: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Realistic-looking β-VAE curves: recon falls, KL rises then settles, plus noise."""
    rng = np.random.default_rng(seed)
    s = steps.astype(np.float64)
    recon = 40 + 160 * np.exp(-s / 1500) + rng.normal(0, 3, len(s))
    kl = 22 * (1 - np.exp(-s / 800)) + rng.normal(0, 0.8, len(s))
    kl = np.maximum(kl, 0.0)
    return recon + 4 * kl, recon, kl


@pytest.fixture
def loss_view(qtbot):
    view = LossPlotView()
    qtbot.addWidget(view)
    view.resize(640, 360)
    return view


# --- pg_setup ------------------------------------------------------------------------------


def test_configure_pyqtgraph_is_idempotent():
    import pyqtgraph as pg

    configure_pyqtgraph()
    configure_pyqtgraph()
    assert pg.getConfigOption("imageAxisOrder") == "row-major"
    assert pg.getConfigOption("antialias") is False


# --- LossPlotView --------------------------------------------------------------------------


def test_loss_plot_has_object_names(loss_view):
    from PySide6.QtWidgets import QCheckBox

    assert loss_view.objectName() == "lossPlot"
    assert loss_view.findChild(QCheckBox, "logYCheck") is not None


def test_training_points_show_up_in_curves(loss_view):
    steps = np.arange(0, 100)
    loss, recon, kl = _curves(steps)
    loss_view.add_steps(steps[:60], loss[:60], recon[:60], kl[:60])
    loss_view.add_steps(steps[60:], loss[60:], recon[60:], kl[60:])
    assert loss_view.train_point_count() == 100
    for name, expected in (("loss", loss), ("recon", recon), ("kl", kl)):
        x, y = loss_view.curve("train", name).getData()
        np.testing.assert_array_equal(x, steps)
        np.testing.assert_allclose(y, expected)
    assert loss_view.validation_point_count() == 0


def test_empty_batch_is_a_no_op(loss_view):
    loss_view.add_steps(np.array([]), np.array([]), np.array([]), np.array([]))
    assert loss_view.train_point_count() == 0


def test_mismatched_lengths_are_rejected(loss_view):
    with pytest.raises(ValueError, match="same length"):
        loss_view.add_steps(np.arange(3), np.ones(3), np.ones(2), np.ones(3))


def test_validation_points(loss_view):
    loss_view.add_validation(np.array([100, 200]), np.array([5.0, 4.0]), np.array([3.0, 2.5]), np.array([2.0, 1.5]))
    loss_view.add_validation([300], [3.5], [2.2], [1.3])
    assert loss_view.validation_point_count() == 3
    x, y = loss_view.curve("val", "recon").getData()
    np.testing.assert_array_equal(x, [100, 200, 300])
    np.testing.assert_allclose(y, [3.0, 2.5, 2.2])
    assert loss_view.train_point_count() == 0


def test_beta_markers(loss_view):
    import pyqtgraph as pg

    loss_view.add_beta_marker(1000, 0.5)
    loss_view.add_beta_marker(2500, 4)
    assert loss_view.beta_markers() == [(1000, 0.5), (2500, 4.0)]
    lines = [item for item in loss_view.plot_item.items if isinstance(item, pg.InfiniteLine)]
    assert sorted(line.value() for line in lines) == [1000, 2500]
    assert {line.label.format for line in lines} == {"β=0.5", "β=4"}
    assert not any(line.movable for line in lines)
    # a second β at the same step replaces the first
    loss_view.add_beta_marker(2500, 8)
    assert loss_view.beta_markers() == [(1000, 0.5), (2500, 8.0)]


def test_clear_removes_points_and_markers(loss_view):
    import pyqtgraph as pg

    steps = np.arange(50)
    loss_view.add_steps(steps, *_curves(steps))
    loss_view.add_validation([10, 20], [1, 2], [1, 2], [1, 2])
    loss_view.add_beta_marker(25, 2.0)
    loss_view.clear()
    assert loss_view.train_point_count() == 0
    assert loss_view.validation_point_count() == 0
    assert loss_view.beta_markers() == []
    assert not any(isinstance(item, pg.InfiniteLine) for item in loss_view.plot_item.items)
    x, _ = loss_view.curve("train", "loss").getData()
    assert x is None or len(x) == 0
    # and it still works afterwards
    loss_view.add_steps([1, 2], [3, 4], [2, 3], [1, 1])
    assert loss_view.train_point_count() == 2


def test_set_history_replaces_everything(loss_view):
    loss_view.add_steps([0, 1], [9, 9], [9, 9], [9, 9])
    loss_view.add_beta_marker(1, 9.0)
    steps = np.arange(0, 5000)
    val_steps = np.arange(0, 5000, 500)
    loss_view.set_history(
        steps,
        *_curves(steps),
        val_steps,
        *_curves(val_steps, seed=1),
        beta_steps=[0, 2000],
        beta_values=[1.0, 4.0],
    )
    assert loss_view.train_point_count() == 5000
    assert loss_view.validation_point_count() == 10
    assert loss_view.beta_markers() == [(0, 1.0), (2000, 4.0)]
    x = loss_view.curve("train", "kl").xData  # raw data (getData is downsampled to the view)
    np.testing.assert_array_equal(x, steps)


def test_set_history_without_validation_or_markers(loss_view):
    steps = np.arange(10)
    loss_view.set_history(steps, *_curves(steps))
    assert loss_view.train_point_count() == 10
    assert loss_view.validation_point_count() == 0
    assert loss_view.beta_markers() == []


def test_log_y_toggle(loss_view, qtbot):
    from PySide6.QtWidgets import QCheckBox

    steps = np.arange(10)
    kl = np.array([0.0, -1e-9, 0.5, 1, 2, 3, 4, 5, 6, 7])
    loss_view.add_steps(steps, kl + 10, kl + 5, kl)
    check = loss_view.findChild(QCheckBox, "logYCheck")
    curve = loss_view.curve("train", "kl")
    assert loss_view.log_y is False
    assert curve.opts["logMode"][1] is False

    check.setChecked(True)
    assert loss_view.log_y is True
    assert loss_view.plot_item.ctrl.logYCheck.isChecked()
    assert curve.opts["logMode"][1] is True
    assert loss_view.plot_item.getAxis("left").logMode is True
    _, y = curve.getData()  # in log mode getData returns log10 of the values handed over
    assert np.all(np.isfinite(y))  # non-positive values were clipped, not turned into NaN holes
    # clipped at the smallest positive value in the plot (0.5), not at a far-away 1e-6
    np.testing.assert_allclose(y, np.log10(np.maximum(kl, 0.5)))

    loss_view.log_y = False
    assert check.isChecked() is False
    assert curve.opts["logMode"][1] is False
    _, y = curve.getData()
    np.testing.assert_allclose(y, kl)  # raw values again

    # pyqtgraph's own context-menu box keeps ours in step
    loss_view.plot_item.ctrl.logYCheck.setChecked(True)
    assert loss_view.log_y is True
    assert loss_view.curve("train", "kl").getData()[1].min() == pytest.approx(np.log10(0.5))


def test_points_added_in_log_mode_are_clipped_at_the_smallest_positive_value(loss_view):
    loss_view.log_y = True
    loss_view.add_steps([0, 1], [1.0, 2.0], [1.0, 2.0], [0.0, 2.0])
    np.testing.assert_allclose(loss_view.curve("train", "kl").getData()[1], np.log10([1.0, 2.0]))
    loss_view.add_validation([0, 1], [0.0, 2.0], [0.0, 2.0], [0.0, 2.0])
    np.testing.assert_allclose(loss_view.curve("val", "kl").getData()[1], np.log10([1.0, 2.0]))
    # a smaller positive value lowers the floor for every curve, validation included
    loss_view.add_steps([2], [2.0], [2.0], [0.01])
    np.testing.assert_allclose(loss_view.curve("train", "kl").getData()[1], np.log10([0.01, 2.0, 0.01]))
    np.testing.assert_allclose(loss_view.curve("val", "kl").getData()[1], np.log10([0.01, 2.0]))
    # but never below LOG_FLOOR
    loss_view.add_steps([3], [2.0], [2.0], [1e-12])
    assert loss_view.curve("train", "kl").getData()[1].min() == pytest.approx(np.log10(LOG_FLOOR))
    # linear y shows the raw values
    loss_view.log_y = False
    np.testing.assert_allclose(loss_view.curve("train", "kl").getData()[1], [0.0, 2.0, 0.01, 1e-12])


def test_many_batches_keep_capacity_bounded(loss_view):
    rng = np.random.default_rng(0)
    batch = 500
    for b in range(200):
        steps = np.arange(b * batch, (b + 1) * batch)
        loss_view.add_steps(steps, rng.random(batch) + 1, rng.random(batch), rng.random(batch))
        count = loss_view.train_point_count()
        assert count == (b + 1) * batch
        # the initial allocation (4096) aside, capacity never reaches twice the count
        assert loss_view.train_capacity() < max(2 * count, 4097)
    assert loss_view.train_point_count() == 100_000
    assert loss_view.train_capacity() < 200_000
    curve = loss_view.curve("train", "loss")
    x, y = curve.xData, curve.yData  # raw data (getData is downsampled to the view)
    assert len(x) == len(y) == 100_000 and x[-1] == 99_999


def test_loss_plot_renders(loss_view, qtbot):
    steps = np.arange(0, 12_000)
    loss_view.show()
    for chunk in np.array_split(steps, 24):
        loss_view.add_steps(chunk, *_curves(chunk))
    val_steps = np.arange(0, 12_000, 1000)
    loss_view.add_validation(val_steps, *(c * 1.05 for c in _curves(val_steps, seed=3)))
    loss_view.add_beta_marker(0, 1.0)
    loss_view.add_beta_marker(4000, 4.0)
    loss_view.add_beta_marker(8000, 0.5)
    qtbot.wait(50)
    assert loss_view.grab().save("/tmp/views_loss_plot.png")
    loss_view.log_y = True
    qtbot.wait(50)
    assert loss_view.grab().save("/tmp/views_loss_plot_log.png")
    loss_view.resize(420, 300)  # a narrow dock
    qtbot.wait(50)
    assert loss_view.grab().save("/tmp/views_loss_plot_narrow.png")


# --- KlBarView -----------------------------------------------------------------------------


@pytest.fixture
def kl_view(qtbot):
    view = KlBarView()
    qtbot.addWidget(view)
    view.resize(640, 360)
    return view


def test_kl_bars_sorted_and_counted(kl_view):
    from PySide6.QtWidgets import QLabel

    kl = [0.02, 5.0, 0.3, 0.0, 12.5, 0.05, 0.11, 3.0, 0.09, 2.4]
    kl_view.set_kl(kl)
    assert kl_view.objectName() == "klBarPlot"
    assert kl_view.order() == [4, 1, 7, 9, 2, 6, 8, 5, 0, 3]
    assert kl_view.active_count() == 6
    heights = kl_view.bars.opts["height"]
    np.testing.assert_allclose(heights, sorted(kl, reverse=True))
    ticks = kl_view.plot_item.getAxis("bottom")._tickLevels[0]
    assert [label for _, label in ticks][:3] == ["z4", "z1", "z7"]
    label = kl_view.findChild(QLabel, "klSummaryLabel")
    text = label.text()
    assert "6 of 10 dimensions active (KL > 0.1 nats)" in text
    assert f"total KL {sum(kl):.1f} nats" in text
    assert "target" not in text
    # active bars in colour, inactive grey
    brushes = kl_view.bars.opts["brushes"]
    assert brushes[0].color() != brushes[-1].color()
    assert len({b.color().name() for b in brushes[:6]}) == 1


def test_kl_capacity_text_only_when_given(kl_view):
    kl_view.set_kl(np.array([1.0, 2.0, 0.0]), capacity=12.5)
    assert "· target C(t) 12.5 nats" in kl_view.summary_text()
    kl_view.set_kl(np.array([1.0, 2.0, 0.0]))
    assert "target" not in kl_view.summary_text()


def test_kl_threshold_is_adjustable(kl_view):
    kl_view.set_kl([0.2, 0.5, 1.0])
    assert kl_view.threshold == 0.1
    assert kl_view.active_count() == 3
    kl_view.threshold = 0.6
    assert kl_view.active_count() == 1
    assert kl_view.threshold_line.value() == 0.6
    assert "(KL > 0.6 nats)" in kl_view.summary_text()


def test_kl_panel_says_when_no_latent_carries_information(kl_view):
    from bvae_desktop.core.latent_activity import NO_ACTIVE_LATENT

    kl_view.set_kl([0.001, 0.04, 0.0, 0.02])  # a model a few hundred steps in: every latent collapsed
    text = kl_view.summary_text()
    assert text.startswith(NO_ACTIVE_LATENT) and "0 of 4 dimensions above 0.1 nats" in text
    kl_view.set_kl([0.001, 1.5, 0.0, 0.02])
    assert NO_ACTIVE_LATENT not in kl_view.summary_text()
    assert "1 of 4 dimensions active" in kl_view.summary_text()


def test_kl_clear(kl_view):
    kl_view.set_kl([1.0, 2.0])
    kl_view.clear()
    assert kl_view.active_count() == 0
    assert kl_view.order() == []
    assert len(kl_view.bars.opts["height"]) == 0


def test_kl_bars_render(kl_view, qtbot):
    rng = np.random.default_rng(2)
    kl = np.concatenate([[14.2, 6.1, 3.3, 1.8], rng.uniform(0, 0.08, 6)])
    rng.shuffle(kl)
    kl_view.show()
    kl_view.set_kl(kl, capacity=25.0)
    qtbot.wait(50)
    assert kl_view.grab().save("/tmp/views_kl_bars.png")
    kl_view.set_kl(np.concatenate([rng.uniform(0.5, 8, 12), rng.uniform(0, 0.09, 52)]))
    qtbot.wait(50)
    assert kl_view.grab().save("/tmp/views_kl_bars_64.png")
    kl_view.resize(360, 260)
    qtbot.wait(50)
    assert kl_view.grab().save("/tmp/views_kl_bars_64_narrow.png")


# --- tiling --------------------------------------------------------------------------------


def test_tile_rows_grey_layout_and_values():
    n, h, w = 3, 4, 5
    # give each image its own value: row r, image k -> 10*(r*n+k+1)
    rows = [np.stack([np.full((1, h, w), 10 * (r * n + k + 1), np.uint8) for k in range(n)]) for r in range(2)]
    out = tile_rows(rows, gap=2)
    assert out.shape == (2 * h + 2, 3 * w + 2 * 2)
    assert out.dtype == np.uint8
    for r in range(2):
        for k in range(n):
            y, x = r * (h + 2), k * (w + 2)
            assert np.all(out[y : y + h, x : x + w] == 10 * (r * n + k + 1))
    assert np.all(out[h : h + 2, :] == GAP_VALUE)  # gap between rows
    assert np.all(out[:, w : w + 2] == GAP_VALUE)  # gap between columns


def test_tile_rows_pixel_position_and_rgb():
    rows = [np.zeros((4, 3, 8, 6), dtype=np.uint8) for _ in range(2)]
    rows[1][2, :, 5, 3] = (200, 100, 50)  # row 1, image 2, pixel (y=5, x=3)
    out = tile_rows(rows, gap=2)
    assert out.shape == (2 * 8 + 2, 4 * 6 + 3 * 2, 3)
    assert tuple(out[8 + 2 + 5, 2 * (6 + 2) + 3]) == (200, 100, 50)
    assert np.count_nonzero(out == 200) == 1


def test_tile_rows_short_row_is_padded_and_bad_input_rejected():
    out = tile_rows([np.full((3, 1, 2, 2), 255, np.uint8), np.full((1, 1, 2, 2), 255, np.uint8)], gap=1)
    assert out.shape == (5, 8)
    assert np.all(out[3:, 3:] == GAP_VALUE)
    with pytest.raises(ValueError):
        tile_rows([])
    with pytest.raises(ValueError):
        tile_rows([np.zeros((2, 1, 4, 4), np.float32)])
    with pytest.raises(ValueError):
        tile_rows([np.zeros((2, 1, 4, 4), np.uint8), np.zeros((2, 1, 4, 5), np.uint8)])
    with pytest.raises(ValueError):
        tile_rows([np.zeros((2, 2, 4, 4), np.uint8)])


# --- SampleStripView -----------------------------------------------------------------------


@pytest.fixture
def strip_view(qtbot):
    view = SampleStripView()
    qtbot.addWidget(view)
    view.resize(640, 360)
    return view


def _blobs(n: int, channels: int, size: int = 64, seed: int = 0, blur: float = 0.0) -> np.ndarray:
    """Simple shapes (ellipses) on black, optionally softened to look like reconstructions."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    out = np.zeros((n, channels, size, size), dtype=np.uint8)
    for i in range(n):
        cy, cx = rng.uniform(16, 48, 2)
        ry, rx = rng.uniform(6, 14, 2)
        d = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2
        mask = np.clip((1.0 + blur - d) / (2 * blur), 0, 1) if blur else (d <= 1).astype(float)
        colour = rng.uniform(120, 255, channels)
        out[i] = (mask[None] * colour[:, None, None]).astype(np.uint8)
    return out


def test_sample_strip_grey(strip_view):
    originals = _blobs(4, 1)
    recons = _blobs(4, 1, blur=0.4)
    strip_view.set_samples(originals, recons, step=1200)
    tiled = strip_view.tiled()
    assert strip_view.objectName() == "sampleStrip"
    assert tiled.shape == (2 * 64 + 2, 4 * 64 + 3 * 2)
    assert tiled.dtype == np.uint8
    np.testing.assert_array_equal(tiled[:64, 66:130], originals[1, 0])
    np.testing.assert_array_equal(tiled[66:, :64], recons[0, 0])
    assert strip_view.image_item.levels is not None
    assert tuple(np.ravel(strip_view.image_item.levels)) == (0, 255)
    assert strip_view.caption() == "validation images (top) and reconstructions (bottom), step 1200"


def test_sample_strip_rgb_and_clear(strip_view):
    strip_view.set_samples(_blobs(3, 3), _blobs(3, 3, blur=0.3), step=5)
    assert strip_view.tiled().shape == (130, 3 * 64 + 2 * 2, 3)
    strip_view.clear()
    assert strip_view.tiled() is None


def test_sample_strip_rejects_mismatched_shapes(strip_view):
    with pytest.raises(ValueError, match="same shape"):
        strip_view.set_samples(_blobs(4, 1), _blobs(3, 1), step=0)


def test_sample_strip_renders(strip_view, qtbot):
    strip_view.show()
    strip_view.set_samples(_blobs(6, 3, seed=4), _blobs(6, 3, seed=4, blur=0.5), step=24_000)
    qtbot.wait(50)
    assert strip_view.grab().save("/tmp/views_sample_strip.png")
    strip_view.set_samples(_blobs(4, 1, seed=5), _blobs(4, 1, seed=5, blur=0.5), step=1200)
    qtbot.wait(50)
    assert strip_view.grab().save("/tmp/views_sample_strip_grey.png")


def test_the_sample_strip_draws_a_seeded_spread_of_the_split_not_its_first_images():
    import numpy as np

    from bvae_desktop.gui.worker import spread_sample

    split = np.arange(1000, 5000)
    picked = spread_sample(split, 6, seed=0)
    assert len(picked) == 6 and list(picked) == sorted(picked) and set(picked) <= set(split)
    assert picked[-1] - picked[0] > 1000  # spread over the split, not its first six
    assert list(spread_sample(split, 6, seed=0)) == list(picked)  # the same images every refresh
    assert list(spread_sample(split[:4], 6, seed=0)) == list(split[:4])
