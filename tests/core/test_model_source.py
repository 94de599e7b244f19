import hashlib

import numpy as np
import pytest
import torch

from bvae_desktop.core.checkpoint import Checkpoint, save_checkpoint
from bvae_desktop.core.config import TrainConfig
from bvae_desktop.core.errors import CheckpointError
from bvae_desktop.core.model_source import ModelSource
from bvae_desktop.core.nets import BetaVAE
from bvae_desktop.core.trainer import Trainer


def test_checkpoint_and_live_snapshot_give_the_same_model(tmp_path):
    trainer = Trainer(TrainConfig(steps=3, batch_size=8, latent_dim=4, device="cpu"), run_dir=tmp_path)
    list(trainer.steps())
    from_file = ModelSource.from_checkpoint(tmp_path / "checkpoint.pt")
    live = ModelSource.from_state(
        trainer.model_snapshot(),
        trainer.config,
        trainer.image_shape,
        step=3,
        beta=4.0,
        dataset=trainer.dataset,
        val_indices=trainer.val_indices,
    )
    assert from_file.fingerprint() == live.fingerprint() and len(from_file.fingerprint()) == 64
    images = from_file.dataset.batch(from_file.val_indices[:6]).numpy()
    mean_a, logvar_a = from_file.encode(images)
    mean_b, _ = live.encode(images)
    np.testing.assert_allclose(mean_a, mean_b, rtol=1e-5, atol=1e-6)
    assert mean_a.shape == logvar_a.shape == (6, 4)
    decoded = from_file.decode(mean_a)
    assert decoded.shape == (6, 1, 64, 64) and decoded.dtype == np.uint8
    assert from_file.kl_from_data(32).shape == (4,)


def test_fingerprint_changes_with_the_weights(tmp_path):
    trainer = Trainer(TrainConfig(steps=1, batch_size=8, latent_dim=3, device="cpu"), run_dir=tmp_path)
    list(trainer.steps())
    source = ModelSource.from_checkpoint(tmp_path / "checkpoint.pt", load_data=False)
    before = source.fingerprint()
    other = ModelSource.from_checkpoint(tmp_path / "checkpoint.pt", load_data=False)
    with torch.no_grad():
        other.model.decoder.fc[0].bias.add_(1e-3)
    assert other.fingerprint() != before and source.dataset is None


def test_missing_training_data_is_noted_not_fatal(tmp_path):
    config = TrainConfig(steps=1, batch_size=8, latent_dim=3, device="cpu")
    trainer = Trainer(config, run_dir=tmp_path)
    list(trainer.steps())
    checkpoint = trainer.checkpoint()
    checkpoint.config = TrainConfig(dataset="mnist", data_path=str(tmp_path / "gone"), latent_dim=3)
    source = ModelSource.from_checkpoint(checkpoint)
    assert source.dataset is None and "gone" in source.dataset_error


def test_checkpoint_with_non_finite_weights_is_refused_for_inference(tmp_path):
    """A diverged run's weights decoded only black images (compress) or crashed traverse: refuse them."""
    state = BetaVAE((1, 32, 32), 3).state_dict()
    state["decoder.fc.0.weight"][0, 0] = float("nan")
    path = tmp_path / "nan.pt"
    save_checkpoint(path, Checkpoint(TrainConfig(latent_dim=3), (1, 32, 32), 5, 4.0, state))
    with pytest.raises(
        CheckpointError, match=r"nan\.pt: its weights hold NaN or infinite values \(in decoder\.fc\.0\.weight\)"
    ):
        ModelSource.from_checkpoint(path)


def test_inference_runs_on_channels_last_weights_and_agrees_with_the_default_layout(tmp_path):
    trainer = Trainer(TrainConfig(steps=2, batch_size=8, latent_dim=4, device="cpu"), run_dir=tmp_path)
    list(trainer.steps())
    source = ModelSource.from_checkpoint(tmp_path / "checkpoint.pt")
    convs = [p for p in source.model.parameters() if p.dim() == 4 and p.shape[1] > 1]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    plain = BetaVAE(source.image_shape, source.latent_dim).eval()
    plain.load_state_dict({k: v.contiguous() for k, v in source.model.state_dict().items()})
    images = source.dataset.batch(source.val_indices[:8]).numpy()
    mean, _ = source.encode(images)
    with torch.no_grad():
        expected = plain.encode(torch.as_tensor(images).float() / 255.0)[0].numpy()
        expected_images = torch.sigmoid(plain.decode(torch.as_tensor(mean))).mul(255).round().numpy()
    np.testing.assert_allclose(mean, expected, rtol=1e-4, atol=1e-5)
    assert np.abs(source.decode(mean).astype(np.float64) - expected_images).max() <= 1  # a rounding step at most
    digest = hashlib.sha256()  # the fingerprint names the weights, not their layout: old .bvz files still match
    for name, tensor in sorted(plain.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.numpy().tobytes())
    assert source.fingerprint() == digest.hexdigest()
