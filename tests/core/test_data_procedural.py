"""The built-in procedural dSprites: official grid, binary images, geometry that follows each factor."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bvae_desktop.core.data import load_dataset
from bvae_desktop.core.data.procedural import ProceduralDSprites, render

SQUARE, ELLIPSE, HEART = 0, 1, 2  # shape classes


@pytest.fixture(scope="module")
def sprites() -> ProceduralDSprites:
    return ProceduralDSprites()


def image(ds: ProceduralDSprites, shape: int = SQUARE, scale: int = 5, orient: int = 0, x: int = 16, y: int = 16):
    index = ds.factors.index_of(np.array([[0, shape, scale, orient, x, y]]))
    return ds.batch(index)[0, 0].numpy()


def centroid(img: np.ndarray) -> tuple[float, float]:
    rows, cols = np.nonzero(img)
    return float(cols.mean()), float(rows.mean())


def test_grid_matches_official_dsprites(sprites: ProceduralDSprites) -> None:
    f = sprites.factors
    assert len(sprites) == 737_280
    assert f.names == ("color", "shape", "scale", "orientation", "posX", "posY")
    assert f.sizes == (1, 3, 6, 40, 32, 32)
    assert f.classes is None
    np.testing.assert_allclose(f.values[2], np.linspace(0.5, 1, 6))
    assert f.values[3][0] == 0 and f.values[3][-1] == pytest.approx(2 * np.pi)
    assert sprites.shape == (1, 64, 64) and sprites.binary
    assert sprites.name == "dSprites (procedural)" and sprites.source == "built-in"


def test_factor_index_round_trip(sprites: ProceduralDSprites) -> None:
    rng = np.random.default_rng(0)
    indices = rng.integers(0, len(sprites), 500)
    assert np.array_equal(sprites.factors.index_of(sprites.factors.classes_of(indices)), indices)
    classes = sprites.factors.sample_classes(100, rng)
    assert np.array_equal(sprites.factors.classes_of(sprites.factors.index_of(classes)), classes)
    assert sprites.factors.classes_of(np.array([1]))[0].tolist() == [0, 0, 0, 0, 0, 1]  # posY fastest


def test_batch_is_binary_uint8_and_deterministic(sprites: ProceduralDSprites) -> None:
    indices = np.random.default_rng(1).integers(0, len(sprites), 128)
    batch = sprites.batch(indices)
    assert batch.shape == (128, 1, 64, 64) and batch.dtype == torch.uint8
    assert set(torch.unique(batch).tolist()) <= {0, 255}
    assert (batch.reshape(128, -1) > 0).any(dim=1).all()  # every image shows a sprite
    assert torch.equal(batch, sprites.batch(indices))
    assert torch.equal(batch[:5], sprites.batch(torch.as_tensor(indices[:5])))


def test_three_distinct_shapes(sprites: ProceduralDSprites) -> None:
    imgs = [image(sprites, shape=s) for s in (SQUARE, ELLIPSE, HEART)]
    for a in range(3):
        for b in range(a + 1, 3):
            assert (imgs[a] != imgs[b]).sum() > 20


def test_square_looks_like_dsprites(sprites: ProceduralDSprites) -> None:
    img = image(sprites, shape=SQUARE, scale=5, orient=0) > 0
    width = int(img.any(axis=0).sum())
    assert 19 <= width <= 21
    ellipse = image(sprites, shape=ELLIPSE, orient=0) > 0
    ratio = ellipse.any(axis=0).sum() / ellipse.any(axis=1).sum()
    assert 1.6 <= ratio <= 2.4  # elongated, wider than tall at orientation 0


def test_heart_lobes_on_top(sprites: ProceduralDSprites) -> None:
    img = image(sprites, shape=HEART, orient=0) > 0
    rows = np.flatnonzero(img.any(axis=1))
    top, bottom = img[rows[0] + 1], img[rows[-1]]
    assert top.sum() > bottom.sum()  # wide lobes above the point
    top_cols = np.flatnonzero(top)
    assert (np.diff(top_cols) > 1).any()  # two lobes separated by the notch


def test_position_moves_centroid_monotonically(sprites: ProceduralDSprites) -> None:
    xs = [centroid(image(sprites, shape=ELLIPSE, x=x, y=16))[0] for x in range(0, 32, 3)]
    ys = [centroid(image(sprites, shape=HEART, x=16, y=y))[1] for y in range(0, 32, 3)]
    assert np.all(np.diff(xs) > 0) and np.all(np.diff(ys) > 0)  # x follows columns, y rows (downward)
    assert 7 <= xs[0] <= 13 and 51 <= centroid(image(sprites, x=31))[0] <= 57
    assert abs(centroid(image(sprites, x=16, y=16))[1] - centroid(image(sprites, x=16, y=16))[0]) < 1


def test_area_grows_with_scale(sprites: ProceduralDSprites) -> None:
    for shape in (SQUARE, ELLIPSE, HEART):
        areas = [int((image(sprites, shape=shape, scale=s) > 0).sum()) for s in range(6)]
        assert np.all(np.diff(areas) > 0), areas


def test_orientation_rotates(sprites: ProceduralDSprites) -> None:
    heart = [image(sprites, shape=HEART, orient=o) for o in (0, 5, 10, 20)]
    for later in heart[1:3]:
        assert (heart[0] != later).sum() > 20
    square_45 = image(sprites, shape=SQUARE, orient=5)  # ~46 degrees: a diamond is taller than a square
    assert (square_45 > 0).any(axis=1).sum() > (image(sprites, shape=SQUARE) > 0).any(axis=1).sum() + 4
    assert (heart[0] != image(sprites, shape=HEART, orient=39)).sum() <= 4  # 0 and 2π are the same pose


def test_render_helper_and_registry() -> None:
    out = render(
        torch.tensor([1.0, 3.0]),
        torch.tensor([1.0, 0.5]),
        torch.zeros(2),
        torch.tensor([0.5, 0.0]),
        torch.tensor([0.5, 1.0]),
    )
    assert out.shape == (2, 1, 64, 64) and out.dtype == torch.uint8
    assert render(*(torch.zeros(0) for _ in range(5))).shape == (0, 1, 64, 64)
    assert isinstance(load_dataset("dsprites-procedural"), ProceduralDSprites)


def test_out_of_range_index_raises(sprites: ProceduralDSprites) -> None:
    with pytest.raises(IndexError):
        sprites.batch([len(sprites)])
