"""A user's image prepared as the model's training data was: MNIST digits padded, not stretched."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from bvae_desktop.core.data import mnist
from bvae_desktop.core.errors import DatasetError
from bvae_desktop.core.image_input import (
    FIT_AS_IS,
    FIT_PADDED,
    FIT_RESIZED,
    Origin,
    fit_image,
    load_image,
    native_input,
    restore,
)

MNIST_SHAPE = (1, 32, 32)


def _digit(seed: int = 0) -> np.ndarray:
    """A 28x28 'digit': a bright blob with a few grey levels, so any stretching changes pixels."""
    rng = np.random.default_rng(seed)
    digit = np.zeros((28, 28), np.uint8)
    digit[6:22, 9:19] = rng.integers(120, 256, (16, 10), dtype=np.uint8)
    return digit


def test_mnist_declares_its_padding_and_other_sets_declare_none():
    declared = native_input("mnist")
    assert declared is mnist.NATIVE_INPUT and declared.shape == (1, 28, 28) and declared.transform is mnist.pad_digits
    for name in ("dsprites", "dsprites-procedural", "shapes3d", "folder", "no-such-set", "", None):
        assert native_input(name) is None, name


def test_a_28x28_digit_from_a_file_is_exactly_the_training_image(tmp_path):
    digit = _digit()
    np.savez(tmp_path / "mnist.npz", x_train=digit[None], y_train=np.array([7]))
    trained_on = mnist.load_mnist(tmp_path / "mnist.npz").batch([0]).numpy()[0]
    Image.fromarray(digit).save(tmp_path / "seven.png")

    fitted = load_image(tmp_path / "seven.png", MNIST_SHAPE, "mnist", resize=False)  # no resize needed
    np.testing.assert_array_equal(fitted.image, trained_on)
    assert fitted.origin == Origin(28, 28, FIT_PADDED, "seven.png")
    assert fitted.note == "padded from 28x28 as in MNIST training" and fitted.changed and not fitted.resized
    np.testing.assert_array_equal(restore(fitted.image, fitted.origin), digit[None])  # the border cropped off


def test_an_image_of_the_model_size_is_used_as_is():
    image = np.random.default_rng(1).integers(0, 256, (1, 64, 64), dtype=np.uint8)
    fitted = fit_image(image, (1, 64, 64), "dsprites", resize=False, name="sprite.png")
    np.testing.assert_array_equal(fitted.image, image)
    assert fitted.origin == Origin(64, 64, FIT_AS_IS, "sprite.png") and fitted.note == "" and not fitted.changed
    assert restore(fitted.image, fitted.origin) is fitted.image


def test_other_sizes_are_resized_and_say_from_what(tmp_path):
    Image.fromarray(np.full((30, 40), 200, np.uint8)).save(tmp_path / "wide.png")
    for dataset in ("mnist", None):  # an MNIST model pads only 28x28 images
        fitted = load_image(tmp_path / "wide.png", MNIST_SHAPE, dataset)
        assert fitted.image.shape == MNIST_SHAPE and (fitted.image == 200).all()
        assert fitted.origin == Origin(30, 40, FIT_RESIZED, "wide.png")
        assert fitted.note == "resized from 40x30" and fitted.resized
        back = restore(fitted.image, fitted.origin)
        assert back.shape == (1, 30, 40) and (back == 200).all()


def test_without_resize_only_the_model_size_or_the_data_sets_own_form_is_taken():
    with pytest.raises(DatasetError, match=r"^x\.png: image is 40x30; the model takes 32x32 \(or 28x28 as in MNIST "):
        fit_image(np.zeros((30, 40), np.uint8), MNIST_SHAPE, "mnist", resize=False, what="x.png")
    with pytest.raises(DatasetError, match=r"image is 28x28 colour; the model takes 32x32 with 1 channel"):
        fit_image(np.zeros((3, 28, 28), np.uint8), MNIST_SHAPE, "mnist", resize=False)
    with pytest.raises(DatasetError, match=r"image is 28x28; the model takes 32x32 \(use --resize"):
        fit_image(np.zeros((28, 28), np.uint8), MNIST_SHAPE, None, resize=False)  # not an MNIST model: no padding


def test_a_colour_digit_is_made_grey_then_padded():
    digit = _digit(2)
    colour = np.repeat(digit[None], 3, axis=0)
    fitted = fit_image(colour, MNIST_SHAPE, "mnist", name="c.png")
    np.testing.assert_array_equal(fitted.image, mnist.pad_digits(digit)[None])
    assert fitted.origin.fit == FIT_PADDED and fitted.resized  # its pixels were converted
    assert fitted.note == "converted to grey, padded from 28x28 as in MNIST training"
    grey_to_colour = fit_image(digit, (3, 28, 28), None)
    assert grey_to_colour.image.shape == (3, 28, 28) and (grey_to_colour.image == digit).all()
    assert grey_to_colour.note == "converted to colour"


def test_sixteen_bit_greys_are_scaled_into_eight_bits(tmp_path):
    Image.fromarray(np.full((28, 28), 65535, np.uint16)).save(tmp_path / "deep.png")
    fitted = load_image(tmp_path / "deep.png", MNIST_SHAPE, "mnist", resize=False)
    assert fitted.origin.fit == FIT_PADDED and fitted.image[0, 2:30, 2:30].min() == 255 and fitted.image[0, 0, 0] == 0


def test_unreadable_files_and_bad_arrays_name_what_is_wrong(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(DatasetError, match=r"bad\.png: cannot read the image"):
        load_image(tmp_path / "bad.png", MNIST_SHAPE)
    with pytest.raises(DatasetError, match=r"missing\.png: cannot read the image"):
        load_image(tmp_path / "missing.png", MNIST_SHAPE)
    with pytest.raises(DatasetError, match=r"frame: an image must be uint8 \(C, H, W\).*float64"):
        fit_image(np.zeros((28, 28)), MNIST_SHAPE, what="frame")
    with pytest.raises(ValueError, match="cannot come from"):
        restore(np.zeros((1, 32, 32), np.uint8), Origin(40, 40, FIT_PADDED))
