"""Latent traversals: values, KL order, the batched grid, factor labels, and the PNG/GIF files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from bvae_desktop.core.config import TrainConfig
from bvae_desktop.core.data import ArrayImageSet, load_dataset
from bvae_desktop.core.errors import DatasetError
from bvae_desktop.core.model_source import ModelSource
from bvae_desktop.core.nets import BetaVAE
from bvae_desktop.core.traversal import (
    Traversal,
    factor_entropy,
    factor_labels,
    factor_mutual_information,
    gif_frames,
    label_dimensions,
    latent_order,
    latent_summary,
    load_image_file,
    normalised_factor_mutual_information,
    reference_code,
    render_gif,
    render_grid_png,
    row_label,
    tile_grid,
    traversal_grid,
    traversal_values,
    traverse,
)


class CentroidEncoder(nn.Module):
    """A constructed encoder: mean = (centroid x, centroid y, ink mass, 0...), so we know what each dim tracks."""

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        img = x.sum(dim=1)
        n, h, w = img.shape
        mass = img.sum(dim=(1, 2)).clamp_min(1e-6)
        cx = (img * torch.arange(w, dtype=img.dtype)[None, None, :]).sum(dim=(1, 2)) / mass
        cy = (img * torch.arange(h, dtype=img.dtype)[None, :, None]).sum(dim=(1, 2)) / mass
        mean = torch.zeros(n, self.latent_dim)
        mean[:, 0], mean[:, 1], mean[:, 2] = cx, cy, mass
        return mean, torch.zeros_like(mean)


def small_source(latent_dim: int = 4, size: int = 32, count: int = 40, seed: int = 0) -> ModelSource:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    images = (rng.random((count, 1, size, size)) > 0.7).astype(np.uint8) * 255
    dataset = ArrayImageSet(images, name="noise")
    model = BetaVAE((1, size, size), latent_dim)
    return ModelSource.from_state(
        model.state_dict(),
        TrainConfig(latent_dim=latent_dim),
        (1, size, size),
        step=0,
        beta=1.0,
        dataset=dataset,
        val_indices=np.arange(count),
    )


# --- values and order ------------------------------------------------------------------------


def test_traversal_values_span_the_range():
    values = traversal_values(2.0, 5)
    np.testing.assert_allclose(values, [-2, -1, 0, 1, 2])
    assert values.dtype == np.float32 and len(traversal_values()) == 9


@pytest.mark.parametrize(("range_", "steps", "match"), [(3.0, 1, "steps"), (3.0, 32, "steps"), (0.0, 9, "range")])
def test_traversal_values_reject_bad_settings(range_, steps, match):
    with pytest.raises(ValueError, match=match):
        traversal_values(range_, steps)


def test_latent_order_is_kl_descending_and_stable():
    assert latent_order([0.1, 2.0, 0.5, 2.0, 0.0]).tolist() == [1, 3, 2, 0, 4]


# --- grid ------------------------------------------------------------------------------------


def test_grid_rows_sweep_one_dimension_each():
    source = small_source()
    reference = np.array([0.3, -0.2, 0.1, 0.0], dtype=np.float32)
    values = traversal_values(3.0, 5)
    dims = [2, 0, 3]
    grid = traversal_grid(source, reference, dims, values)
    assert grid.shape == (3, 5, 1, 32, 32) and grid.dtype == np.uint8
    codes = np.repeat(reference[None], 5, axis=0)
    codes[:, 0] = values
    np.testing.assert_array_equal(grid[1], source.decode(codes))  # row 1 sweeps dim 0, others at the reference
    tiled = tile_grid(grid)
    assert tiled.shape == (3 * 32 + 2 * 2, 5 * 32 + 4 * 2)


def test_grid_rejects_bad_dims_and_reference():
    source = small_source()
    with pytest.raises(ValueError, match="dimensions"):
        traversal_grid(source, np.zeros(3), [0], traversal_values())
    with pytest.raises(ValueError, match="0..3"):
        traversal_grid(source, np.zeros(4), [4], traversal_values())


def test_reference_code_is_the_encoder_mean_or_the_prior_mean():
    source = small_source()
    image = source.dataset.batch([3]).numpy()[0]
    np.testing.assert_allclose(reference_code(source, image), source.encode(image[None])[0][0])
    assert reference_code(source, None).tolist() == [0.0] * 4
    with pytest.raises(ValueError, match="uint8"):
        reference_code(source, image.astype(np.float32))


def test_traverse_sorts_rows_by_kl_and_labels_them():
    source = small_source()
    source.kl_per_dim = np.array([0.05, 3.0, 1.0, 2.0])
    result = traverse(source, steps=3)
    assert isinstance(result, Traversal)
    assert result.dims.tolist() == [1, 3, 2, 0] and result.grid.shape == (4, 3, 1, 32, 32)
    assert result.row_labels()[0] == "z1 · KL 3.00" and result.factors is None


def test_load_image_file_converts_channels_and_size(tmp_path):
    path = tmp_path / "colour.png"
    Image.new("RGB", (50, 40), (200, 10, 10)).save(path)
    image = load_image_file(path, (1, 32, 32))
    assert image.shape == (1, 32, 32) and image.dtype == np.uint8
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(DatasetError, match="bad.png"):
        load_image_file(tmp_path / "bad.png", (1, 32, 32))


# --- mutual information and labels -----------------------------------------------------------


def test_mutual_information_finds_the_factor_each_dim_encodes():
    rng = np.random.default_rng(0)
    n = 3000
    classes = np.stack([np.zeros(n, int), rng.integers(0, 4, n), rng.integers(0, 8, n)], axis=1)
    means = np.stack(
        [
            classes[:, 2] + rng.normal(0, 0.05, n),  # dim 0 <- factor 2
            rng.normal(size=n),  # dim 1: noise
            -2.0 * classes[:, 1] + rng.normal(0, 0.05, n),  # dim 2 <- factor 1
        ],
        axis=1,
    )
    mi = factor_mutual_information(means, classes, bins=20)
    assert mi.shape == (3, 3) and np.all(mi >= 0)
    np.testing.assert_allclose(mi[:, 0], 0.0)  # a single class shares nothing
    np.testing.assert_allclose(mi[0, 2], np.log(8), rtol=0.02)
    assert mi[1].max() < 0.05
    normalised = normalised_factor_mutual_information(means, classes)
    assert np.isnan(normalised[:, 0]).all()
    np.testing.assert_allclose(normalised[[0, 2], [2, 1]], 1.0, atol=0.02)
    np.testing.assert_allclose(factor_entropy(classes)[1:], [np.log(4), np.log(8)], rtol=0.01)
    labels = label_dimensions(normalised, ["color", "shape", "posX"])
    assert labels[0][0] == "posX" and labels[2][0] == "shape" and labels[0][1] > 0.95
    assert labels[1][1] < 0.05
    assert label_dimensions(np.zeros((1, 2)), ["a", "b"]) == [("", 0.0)]
    assert row_label(3, 2.314, ("posX", 0.823)) == "z3 · KL 2.31 · posX (0.82)"


def test_constructed_encoder_is_labelled_with_the_right_dsprites_factors():
    """Centroid x/y and ink mass must come out as posX, posY and scale on procedural dSprites."""
    dataset = load_dataset("dsprites-procedural")
    rng = np.random.default_rng(1)
    val = np.sort(rng.choice(len(dataset), 600, replace=False))
    model = BetaVAE((1, 64, 64), 5)
    source = ModelSource.from_state(
        model.state_dict(), TrainConfig(latent_dim=5), (1, 64, 64), step=0, beta=1.0, dataset=dataset, val_indices=val
    )
    source.model.encoder = CentroidEncoder(5)
    labels = factor_labels(source, count=600)
    assert [name for name, _ in labels[:3]] == ["posX", "posY", "scale"]
    assert labels[0][1] > 0.6 and labels[1][1] > 0.6
    assert labels[3] == ("", 0.0) and labels[4] == ("", 0.0)  # constant dims share nothing
    kl, factors = latent_summary(source, count=600)
    assert kl.shape == (5,) and factors == labels


# --- files -----------------------------------------------------------------------------------


def test_png_is_the_tiled_grid_with_a_label_column(tmp_path):
    grid = np.random.default_rng(0).integers(0, 256, (3, 7, 1, 16, 16), dtype=np.uint8)
    plain = render_grid_png(grid, tmp_path / "plain.png")
    with Image.open(plain) as img:
        assert img.size == (7 * 16 + 6 * 2, 3 * 16 + 2 * 2) and img.mode == "L"
        np.testing.assert_array_equal(np.asarray(img), tile_grid(grid))
    labelled = render_grid_png(grid, tmp_path / "labelled.png", row_labels=["z0 · KL 1.00", "z1", "z2"])
    with Image.open(labelled) as img:
        assert img.size[1] == 3 * 16 + 2 * 2 and img.size[0] > 7 * 16 + 6 * 2
    with pytest.raises(ValueError, match="row labels"):
        render_grid_png(grid, tmp_path / "x.png", row_labels=["one"])
    assert not (tmp_path / "x.png").exists()


def test_gif_has_one_frame_per_step_and_loops(tmp_path):
    grid = np.zeros((5, 9, 3, 8, 8), dtype=np.uint8)  # all frames alike: must still be 9 frames
    grid[:, :, 0] = np.arange(9, dtype=np.uint8)[None, :, None, None] * 25
    path = render_gif(grid, tmp_path / "t.gif", frame_ms=80)
    frames = gif_frames(grid)
    with Image.open(path) as img:
        assert img.n_frames == 9 and img.info.get("loop") == 0
        assert img.size == (frames[0].shape[1], frames[0].shape[0])
    flat = render_gif(np.full((2, 4, 1, 8, 8), 128, np.uint8), tmp_path / "flat.gif")
    with Image.open(flat) as img:
        assert img.n_frames == 4
    assert not list(tmp_path.glob(".*.tmp"))


def test_dead_latents_get_no_factor_label():
    """A latent with KL < 0.1 nats follows nothing; its faint correlation with a factor is not a label."""
    from bvae_desktop.core.traversal import summary_from_codes

    dataset = load_dataset("dsprites-procedural")
    rng = np.random.default_rng(2)
    indices = np.sort(rng.choice(len(dataset), 400, replace=False))
    classes = dataset.factors.classes_of(indices)
    posx = dataset.factors.names.index("posX")
    means = np.stack([classes[:, posx] / 31.0 * 4 - 2, classes[:, posx] / 31.0 * 0.02], axis=1)  # z1: faint copy
    logvars = np.stack([np.full(400, -4.0), np.zeros(400)], axis=1)  # z1: KL ~ 0, the prior's own spread
    model = BetaVAE((1, 64, 64), 2)
    source = ModelSource.from_state(
        model.state_dict(),
        TrainConfig(latent_dim=2),
        (1, 64, 64),
        step=0,
        beta=1.0,
        dataset=dataset,
        val_indices=indices,
    )
    kl, labels = summary_from_codes(source, indices, means, logvars)
    assert kl[0] > 0.1 > kl[1]
    assert labels[0][0] == "posX" and labels[1] == ("", 0.0)
