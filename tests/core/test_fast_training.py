"""Issue 11: a step that never waits on the host (losses read in blocks, a guarded update on the
device), and compiled steps with a clean fallback. Everything here runs on the CPU, where
`sync_every > 1` exercises the very code path a GPU takes."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from training_fixtures import poison_loss_at, small_config, squares

from bvae_desktop.core.checkpoint import load_checkpoint
from bvae_desktop.core.errors import ConfigError, TrainingError
from bvae_desktop.core.runlog import read_runlog
from bvae_desktop.core.trainer import Trainer


def losses(trainer: Trainer) -> np.ndarray:
    return np.array([event.loss for event in trainer.steps()])


def test_cpu_default_reads_every_step_with_plain_adam():
    """On the CPU nothing changes: a read per step, torch's default Adam, the host check before the update."""
    trainer = Trainer(small_config(), dataset=squares())
    assert trainer.sync_every == 1
    assert not trainer.optimizer.param_groups[0]["fused"]


def test_blocked_reads_give_every_step_its_event_and_its_run_log_row(tmp_path):
    trainer = Trainer(small_config(steps=23, sync_every=8, val_every=10), dataset=squares(), run_dir=tmp_path)
    events = list(trainer.steps())
    assert [e.step for e in events] == list(range(1, 24))
    assert [e.step for e in events if e.validation is not None] == [10, 20, 23]
    history = read_runlog(tmp_path / "runlog.h5")
    assert list(history.train["step"]) == list(range(1, 24))
    assert np.allclose(history.train["loss"], [e.loss for e in events])
    assert np.isfinite(history.train["kl_per_dim"]).all()


def test_blocked_reads_train_the_same_model_as_reading_every_step():
    """The guarded (fused) Adam update computes what torch's default Adam does, up to float rounding.

    PyTorch's init: under He's the model learns fast enough by step 25 that the two updates' rounding
    differences compound past 1e-4 (0.2% by step 34), which says nothing about the update rule."""
    every_step = losses(Trainer(small_config(steps=40, weight_init="torch"), dataset=squares()))
    blocked = losses(Trainer(small_config(steps=40, sync_every=16, weight_init="torch"), dataset=squares()))
    assert blocked.shape == every_step.shape
    np.testing.assert_allclose(blocked, every_step, rtol=1e-4)
    assert blocked[-5:].mean() < blocked[:5].mean()  # and it learns


def test_blocked_reads_resume_exactly(tmp_path):
    full = losses(Trainer(small_config(steps=20, sync_every=8), dataset=squares()))
    first = Trainer(small_config(steps=20, sync_every=8), dataset=squares(), run_dir=tmp_path)
    for event in first.steps():
        if event.step == 10:  # a checkpoint step: the block ends there
            first.stop()
    assert first.step == 10
    resumed = Trainer(
        small_config(steps=20, sync_every=8), dataset=squares(), run_dir=tmp_path, resume=tmp_path / "checkpoint.pt"
    )
    tail = losses(resumed)
    np.testing.assert_array_equal(tail, full[10:])


def test_a_non_finite_step_in_a_block_leaves_the_weights_of_the_step_before(tmp_path):
    clean = Trainer(small_config(steps=12, sync_every=8), dataset=squares())
    list(clean.steps())
    trainer = Trainer(small_config(steps=30, sync_every=8, checkpoint_every=10), dataset=squares(), run_dir=tmp_path)
    poison_loss_at(trainer, {13})
    seen = []
    with pytest.raises(TrainingError, match=r"at step 13\b.*last good checkpoint .*checkpoint\.pt is kept"):
        for event in trainer.steps():
            seen.append(event.step)
    assert seen == list(range(1, 13))  # every good step of the block came out before the halt
    assert trainer.step == 12
    for name, tensor in clean.model.state_dict().items():  # steps 13..16 were computed but none applied
        assert torch.equal(tensor, trainer.model.state_dict()[name]), name
    assert load_checkpoint(tmp_path / "checkpoint.pt").step == 10
    assert list(read_runlog(tmp_path / "runlog.h5").train["step"]) == list(range(1, 13))
    rest = [event.step for event in trainer.steps()]  # lower β and go on: the model is good
    assert rest == list(range(13, 31))


def test_out_of_memory_names_the_setting(monkeypatch):
    trainer = Trainer(small_config(), dataset=squares())

    def out_of_memory(*args, **kwargs):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 81920000000 bytes")

    monkeypatch.setattr(trainer, "_loss", out_of_memory)
    with pytest.raises(ConfigError, match="out of memory on cpu at batch size 16 .*lower batch_size"):
        list(trainer.steps())


def test_compile_failure_falls_back_to_eager_once_and_trains_the_same(monkeypatch, caplog, tmp_path):
    def broken_compile(function, **kwargs):
        def call(*args, **kw):
            raise RuntimeError("inductor: no C++ compiler\nlong backtrace")

        return call

    monkeypatch.setattr(torch, "compile", broken_compile)
    eager = losses(Trainer(small_config(steps=6), dataset=squares()))
    with caplog.at_level(logging.WARNING, logger="bvae_desktop.core.trainer"):
        trainer = Trainer(small_config(steps=6, compile="on"), dataset=squares(), run_dir=tmp_path)
        assert trainer.compile_status == "compiling"
        fallback = losses(trainer)
    np.testing.assert_array_equal(fallback, eager)
    assert trainer.compile_status.startswith("failed, eager (RuntimeError: inductor: no C++ compiler)")
    warnings = [r for r in caplog.records if "torch.compile" in r.getMessage()]
    assert len(warnings) == 1


def test_compile_is_off_on_the_cpu_unless_asked():
    assert Trainer(small_config(), dataset=squares()).compile_status == "off"
    assert Trainer(small_config(compile="off"), dataset=squares()).compile_status == "off"


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch's own jit internals, not ours
def test_compiled_step_on_the_cpu_trains_like_eager_and_logs_its_compile_time(tmp_path):
    """A real torch.compile (inductor, C++ on the CPU): tens of seconds on a cold cache."""
    from torch._dynamo.utils import counters

    eager = losses(Trainer(small_config(steps=6), dataset=squares()))
    trainer = Trainer(small_config(steps=6, compile="on"), dataset=squares(), run_dir=tmp_path)
    counters.clear()
    compiled = losses(trainer)
    if trainer.compile_status.startswith("failed"):
        pytest.skip(f"torch.compile does not work on this machine: {trainer.compile_status}")
    assert trainer.compile_status.startswith("compiled in")
    assert counters["stats"]["unique_graphs"] == 1  # the step, β and C(t) are tensors: nothing recompiles
    np.testing.assert_allclose(compiled, eager, rtol=1e-4)
    train = read_runlog(tmp_path / "runlog.h5").train
    compile_seconds = train["compile_seconds"]
    assert compile_seconds[0] > 0 and np.isnan(compile_seconds[1:]).all()  # once, on the first step's row
