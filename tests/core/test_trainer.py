import threading

import numpy as np
import pytest
import torch
from training_fixtures import poison_loss_at, small_config, squares

from bvae_desktop.core.checkpoint import load_checkpoint
from bvae_desktop.core.config import TrainConfig
from bvae_desktop.core.errors import CheckpointError, TrainingError
from bvae_desktop.core.runlog import read_runlog
from bvae_desktop.core.trainer import Trainer


def test_loss_falls_over_a_short_run():
    trainer = Trainer(small_config(steps=150, lr=2e-3), dataset=squares())
    losses = [event.loss for event in trainer.steps()]
    assert len(losses) == 150
    assert np.mean(losses[-20:]) < 0.7 * np.mean(losses[:5])


def test_events_carry_every_metric():
    trainer = Trainer(small_config(steps=10, objective="beta-b", c_max=5.0, c_steps=10), dataset=squares())
    events = list(trainer.steps())
    last = events[-1]
    assert [e.step for e in events] == list(range(1, 11))
    assert len(last.kl_per_dim) == 4 and last.kl == pytest.approx(sum(last.kl_per_dim), rel=1e-4)
    assert last.capacity == pytest.approx(4.5)  # C(t) at the step the loss was computed (9 of 10)
    assert last.validation is not None and set(last.validation) == {"loss", "recon", "kl"}
    assert last.lr == pytest.approx(1e-3) and last.images_per_s > 0
    assert last.beta_norm == pytest.approx(last.beta * 4 / (32 * 32))


def test_run_folder_holds_checkpoint_log_and_config(tmp_path):
    trainer = Trainer(small_config(), dataset=squares(), run_dir=tmp_path / "run")
    events = list(trainer.steps())
    assert [e.checkpoint is not None for e in events].count(True) == 2
    checkpoint = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert checkpoint.step == 20 and checkpoint.config.latent_dim == 4
    history = read_runlog(tmp_path / "run" / "runlog.h5")
    assert list(history.train["step"]) == list(range(1, 21))
    np.testing.assert_allclose(history.train["loss"], [e.loss for e in events], rtol=1e-6)
    assert list(history.validation["step"]) == [10, 20]
    assert (tmp_path / "run" / "config.json").exists()


def test_resume_continues_exactly(tmp_path):
    full = [e.loss for e in Trainer(small_config(steps=20), dataset=squares()).steps()]
    first = Trainer(small_config(steps=20), dataset=squares(), run_dir=tmp_path / "a")
    head = []
    for event in first.steps():
        head.append(event.loss)
        if event.step == 8:
            first.stop()
    assert len(head) == 8
    resumed = Trainer(
        small_config(steps=20), dataset=squares(), run_dir=tmp_path / "a", resume=tmp_path / "a" / "checkpoint.pt"
    )
    assert resumed.step == 8
    tail = [e.loss for e in resumed.steps()]
    assert head + tail == full
    history = read_runlog(tmp_path / "a" / "runlog.h5")
    assert list(history.train["step"]) == list(range(1, 21))


def test_pause_holds_steps_until_resume_and_stop_ends_the_run(tmp_path):
    trainer = Trainer(small_config(steps=1000), dataset=squares(), run_dir=tmp_path)
    seen: list[int] = []
    paused_at = threading.Event()
    proceed = threading.Event()

    def run() -> None:
        for event in trainer.steps():
            seen.append(event.step)
            if event.step == 3:
                trainer.pause()
                paused_at.set()
            if event.step == 6:
                trainer.stop()

    thread = threading.Thread(target=run)
    thread.start()
    assert paused_at.wait(10)
    # While paused the worker sits in wait_while_paused: the count cannot move.
    count = len(seen)
    proceed.wait(0.2)
    assert len(seen) == count == 3
    trainer.resume()
    thread.join(10)
    assert not thread.is_alive()
    assert seen == [1, 2, 3, 4, 5, 6]
    assert load_checkpoint(tmp_path / "checkpoint.pt").step == 6


def test_set_beta_takes_effect_at_next_step_and_is_logged(tmp_path):
    trainer = Trainer(small_config(steps=6, beta=4.0), dataset=squares(), run_dir=tmp_path)
    betas, changed = [], []
    for event in trainer.steps():
        betas.append(event.beta)
        changed.append(event.beta_changed)
        if event.step == 2:
            trainer.set_beta(0.5)
    assert betas == [4.0, 4.0, 0.5, 0.5, 0.5, 0.5]
    assert changed == [False, False, True, False, False, False]
    history = read_runlog(tmp_path / "runlog.h5")
    assert list(history.beta_changes["step"]) == [2] and list(history.beta_changes["beta"]) == [0.5]
    assert load_checkpoint(tmp_path / "checkpoint.pt").beta == 0.5
    with pytest.raises(ValueError, match="β must be a finite number"):
        trainer.set_beta(float("inf"))


def test_non_finite_loss_stops_with_step_and_keeps_last_checkpoint(tmp_path):
    trainer = Trainer(small_config(steps=40), dataset=squares(), run_dir=tmp_path)
    before = None
    with pytest.raises(TrainingError, match=r"non-finite loss .* at step 13") as info:
        for event in trainer.steps():
            if event.step == 10:
                before = (tmp_path / "checkpoint.pt").read_bytes()
            if event.step == 12:
                with torch.no_grad():
                    trainer.model.encoder.fc[-1].bias.fill_(float("nan"))
    assert "checkpoint.pt is kept" in str(info.value)
    assert (tmp_path / "checkpoint.pt").read_bytes() == before
    assert load_checkpoint(tmp_path / "checkpoint.pt").step == 10


def test_after_a_non_finite_loss_steps_can_go_on_from_the_good_model(tmp_path):
    trainer = Trainer(small_config(steps=10), dataset=squares(), run_dir=tmp_path)
    poison_loss_at(trainer, {5})
    with pytest.raises(TrainingError, match="at step 5"):
        list(trainer.steps())
    assert trainer.step == 4
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    rest = [event.step for event in trainer.steps()]
    assert rest == list(range(5, 11))
    assert list(read_runlog(tmp_path / "runlog.h5").train["step"]) == list(range(1, 11))


def test_a_checkpoint_from_another_device_kind_resumes(tmp_path):
    """A GPU run continued on a CPU: the CUDA generator's state does not fit the CPU's, the weights do."""
    first = Trainer(small_config(steps=6), dataset=squares(), run_dir=tmp_path / "a")
    list(first.steps())
    checkpoint = load_checkpoint(tmp_path / "a" / "checkpoint.pt")
    checkpoint.rng_state["generator"] = torch.zeros(16, dtype=torch.uint8)  # the size a CUDA state has
    resumed = Trainer(small_config(steps=10), dataset=squares(), run_dir=tmp_path / "a", resume=checkpoint)
    assert resumed.step == 6
    for name, tensor in first.model.state_dict().items():
        assert torch.equal(tensor, resumed.model.state_dict()[name])
    assert [e.step for e in resumed.steps()] == [7, 8, 9, 10]


def test_validation_uses_a_seeded_sample_spread_over_the_split_not_its_first_images():
    """On a factor grid the split's first indices are all one kind of image (dSprites: small squares)."""
    from bvae_desktop.core.data import load_dataset

    config = TrainConfig(steps=1, batch_size=16, val_batches=2, device="cpu")
    trainer = Trainer(config, dataset=load_dataset("dsprites-procedural"))
    sample = trainer._validation_sample()
    assert len(sample) == 32 and set(sample) <= set(trainer.val_indices.tolist())
    assert np.array_equal(sample, Trainer(config, dataset=load_dataset("dsprites-procedural"))._validation_sample())
    classes = trainer.dataset.factors.classes_of(sample)
    assert len(np.unique(classes[:, 1])) == 3 and len(np.unique(classes[:, 2])) >= 4  # shapes and scales mixed


def test_resume_refuses_other_settings_naming_each_but_allows_steps_weight_and_device(tmp_path):
    list(Trainer(small_config(steps=4, val_fraction=0.2), dataset=squares(), run_dir=tmp_path).steps())
    saved = tmp_path / "checkpoint.pt"
    with pytest.raises(
        CheckpointError, match=r"lr: 0\.001 in the checkpoint, 0\.002 now; val_fraction: 0\.2 in the checkpoint, 0\.1 now"
    ):
        Trainer(small_config(steps=8, lr=2e-3), dataset=squares(), run_dir=tmp_path, resume=saved)
    with pytest.raises(CheckpointError, match="reconstruction: 'auto' in the checkpoint, 'gaussian' now"):
        Trainer(small_config(steps=8, val_fraction=0.2, reconstruction="gaussian"), dataset=squares(), resume=saved)
    resumed = Trainer(
        small_config(steps=8, val_fraction=0.2, beta=9.0, sync_every=2, checkpoint_every=3),
        dataset=squares(),
        run_dir=tmp_path,
        resume=saved,
    )
    assert resumed.step == 4


def test_opening_a_run_folder_removes_checkpoint_temp_files_a_kill_left(tmp_path):
    import os
    import time as clock

    list(Trainer(small_config(steps=2), dataset=squares(), run_dir=tmp_path).steps())
    stale = tmp_path / ".checkpoint.pt.abcd1234.tmp"  # what a kill in the middle of a write leaves
    stale.write_bytes(b"half a checkpoint")
    old = clock.time() - 3600
    os.utime(stale, (old, old))
    fresh = tmp_path / ".checkpoint.pt.efgh5678.tmp"  # another process writing right now: kept
    fresh.write_bytes(b"being written")
    Trainer(small_config(steps=4), dataset=squares(), run_dir=tmp_path, resume=tmp_path / "checkpoint.pt")
    assert not stale.exists() and fresh.exists()
