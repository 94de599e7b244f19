"""Issue 11: K models in one pass. Each member must train as if alone: its own batches, noise, β,
Adam state, run folder and checkpoint. `loop` is bit-identical to separate runs; `vmap` (the GPU's
batched computation, run here on the CPU) matches within float rounding."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from training_fixtures import poison_loss_at, small_config, squares

from bvae_desktop.cli import main
from bvae_desktop.core.checkpoint import load_checkpoint
from bvae_desktop.core.errors import ConfigError
from bvae_desktop.core.experiment_run import MetricPlan
from bvae_desktop.core.experiments import Experiment, ExperimentSpec
from bvae_desktop.core.runlog import read_runlog
from bvae_desktop.core.stacked import StackedAdam, StackedTrainer, group_stackable, resolve_stack_size
from bvae_desktop.core.trainer import Trainer

MEMBERS = [(0, 1.0), (1, 4.0), (2, 8.0)]  # (seed, β)


def member_configs(**changes):
    """PyTorch's init: vmap's grouped convolutions round differently from separate ones, and under He's init
    these models learn fast enough that the differences compound past the 2e-4 tolerance within 15 steps
    (1.5% by step 17), which says nothing about the stacking."""
    changes = {"weight_init": "torch", **changes}
    return [small_config(seed=seed, beta=beta, **changes) for seed, beta in MEMBERS]


def solo_losses(config, data) -> np.ndarray:
    return np.array([e.loss for e in Trainer(config, dataset=data).steps()])


def stacked_losses(stack: StackedTrainer) -> dict[int, np.ndarray]:
    seen: dict[int, list[float]] = {i: [] for i in range(len(stack.members))}
    for index, event in stack.steps():
        seen[index].append(event.loss)
    return {i: np.array(v) for i, v in seen.items()}


def test_loop_mode_is_bit_identical_to_separate_runs():
    data = squares()
    configs = member_configs(steps=20)
    stack = StackedTrainer(configs, dataset=data, mode="loop")
    got = stacked_losses(stack)
    for index, config in enumerate(configs):
        np.testing.assert_array_equal(got[index], solo_losses(config, data))


def test_vmap_mode_matches_separate_runs_after_50_steps(tmp_path):
    data = squares()
    configs = member_configs(steps=50, checkpoint_every=25)
    dirs = [tmp_path / f"run{i}" for i in range(len(configs))]
    stack = StackedTrainer(configs, dataset=data, run_dirs=dirs, mode="vmap")
    assert stack.mode == "vmap"
    got = stacked_losses(stack)
    for index, config in enumerate(configs):
        alone = solo_losses(config, data)
        assert got[index].shape == (50,)
        np.testing.assert_allclose(got[index], alone, rtol=2e-4)
        checkpoint = load_checkpoint(dirs[index] / "checkpoint.pt")
        assert checkpoint.step == 50 and checkpoint.beta == config.beta and checkpoint.config.seed == config.seed
        assert list(read_runlog(dirs[index] / "runlog.h5").train["step"]) == list(range(1, 51))
        assert set(checkpoint.optimizer_state["state"][0]) == {"step", "exp_avg", "exp_avg_sq"}
        assert float(checkpoint.optimizer_state["state"][0]["step"]) == 50


def test_a_stacked_checkpoint_continues_alone_as_the_run_would_have(tmp_path):
    data = squares()
    configs = member_configs(steps=30, checkpoint_every=15)
    alone = solo_losses(configs[1], data)
    stopping = StackedTrainer(configs, dataset=data, run_dirs=[tmp_path / f"r{i}" for i in range(3)], mode="vmap")
    for _index, event in stopping.steps():
        if event.step == 15:
            stopping.stop()
    continued = Trainer(configs[1], dataset=data, run_dir=tmp_path / "r1", resume=tmp_path / "r1" / "checkpoint.pt")
    assert continued.step == 15
    tail = np.array([e.loss for e in continued.steps()])
    np.testing.assert_allclose(tail, alone[15:], rtol=2e-4)


def test_a_stopped_stack_resumes_every_member_from_its_checkpoint(tmp_path):
    data = squares()
    configs = member_configs(steps=24, checkpoint_every=8)
    whole = stacked_losses(StackedTrainer(configs, dataset=data, mode="vmap"))
    dirs = [tmp_path / f"r{i}" for i in range(3)]
    first = StackedTrainer(configs, dataset=data, run_dirs=dirs, mode="vmap")
    for _index, event in first.steps():
        if event.step >= 8:
            first.stop()
    assert [m.step for m in first.members] == [8, 8, 8]
    resumed = StackedTrainer(
        configs, dataset=data, run_dirs=dirs, resumes=[d / "checkpoint.pt" for d in dirs], mode="vmap"
    )
    assert [m.step for m in resumed.members] == [8, 8, 8]
    tail = stacked_losses(resumed)
    for index in range(3):
        np.testing.assert_allclose(tail[index], whole[index][8:], rtol=1e-5)


def test_members_resumed_at_different_steps_each_train_to_the_end(tmp_path):
    data = squares()
    configs = member_configs(steps=12, checkpoint_every=4)
    list(Trainer(dataclasses.replace(configs[0], steps=8), dataset=data, run_dir=tmp_path / "a").steps())
    stack = StackedTrainer(
        configs[:2],
        dataset=data,
        run_dirs=[tmp_path / "a", tmp_path / "b"],
        resumes=[tmp_path / "a" / "checkpoint.pt", None],
        mode="vmap",
    )
    got: dict[int, list[int]] = {0: [], 1: []}
    for index, event in stack.steps():
        got[index].append(event.step)
    assert got == {0: list(range(9, 13)), 1: list(range(1, 13))}
    assert load_checkpoint(tmp_path / "a" / "checkpoint.pt").step == 12


def test_each_member_has_its_own_beta_that_can_change_mid_run(tmp_path):
    data = squares()
    configs = member_configs(steps=10)
    dirs = [tmp_path / f"r{i}" for i in range(3)]
    stack = StackedTrainer(configs, dataset=data, run_dirs=dirs, mode="vmap")
    betas: dict[int, list[float]] = {0: [], 1: [], 2: []}
    for index, event in stack.steps():
        betas[index].append(event.beta)
        if index == 1 and event.step == 4:
            stack.set_beta(1, 16.0)
    assert betas[0] == [1.0] * 10 and betas[2] == [8.0] * 10
    assert betas[1][:4] == [4.0] * 4 and betas[1][5:] == [16.0] * 5
    changes = read_runlog(dirs[1] / "runlog.h5").beta_changes
    assert list(changes["beta"]) == [16.0] and list(changes["step"]) == [4]
    assert load_checkpoint(dirs[1] / "checkpoint.pt").beta == 16.0
    assert load_checkpoint(dirs[0] / "checkpoint.pt").beta == 1.0


@pytest.mark.parametrize("mode", ["vmap", "loop"])
def test_one_member_going_non_finite_halts_only_that_member(tmp_path, mode):
    data = squares()
    configs = member_configs(steps=16, checkpoint_every=4)
    dirs = [tmp_path / f"r{i}" for i in range(3)]
    stack = StackedTrainer(configs, dataset=data, run_dirs=dirs, mode=mode)
    last: dict[int, int] = {}
    for index, event in stack.steps():
        last[index] = event.step
        if mode == "vmap" and index == 1 and event.step == 6:
            stack._weights[1] = float("nan")  # member 1's next loss is NaN; nobody else's
        if mode == "loop" and index == 1 and event.step == 1:
            poison_loss_at(stack.members[1], {6})  # its 7th step
    assert set(stack.failures) == {1}
    assert "at step 7" in str(stack.failures[1])
    assert last == {0: 16, 1: 6, 2: 16}
    assert load_checkpoint(dirs[1] / "checkpoint.pt").step == 4  # its last good checkpoint
    assert all(torch.isfinite(p).all() for p in stack.members[1].model.parameters())
    assert load_checkpoint(dirs[0] / "checkpoint.pt").step == 16


def test_stacked_checkpoints_work_with_info_traverse_and_evaluate(tmp_path, capsys):
    configs = [
        small_config(steps=2, batch_size=8, val_batches=1, seed=s, beta=b, latent_dim=3, dataset="dsprites-procedural")
        for s, b in [(0, 1.0), (1, 4.0)]
    ]
    stack = StackedTrainer(configs, run_dirs=[tmp_path / "a", tmp_path / "b"], mode="vmap")
    list(stack.steps())
    checkpoint = tmp_path / "b" / "checkpoint.pt"
    assert main(["info", str(checkpoint)]) == 0
    assert "step         2 of 2" in capsys.readouterr().out
    assert main(["traverse", str(checkpoint), "--out", str(tmp_path / "grid.png"), "--steps", "3"]) == 0
    assert (tmp_path / "grid.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["evaluate", str(checkpoint), "--metrics", "unsupervised", "--quick", "--json", str(tmp_path / "m.json")]) == 0
    assert (tmp_path / "m.json").stat().st_size > 0


def test_stacked_adam_equals_torch_adam_per_member_and_skips_masked_members():
    torch.manual_seed(0)
    weights = [torch.randn(3, 4, 5), torch.randn(3, 7)]
    grads = [[torch.randn_like(w) for w in weights] for _ in range(4)]
    stacked = [w.clone().requires_grad_(True) for w in weights]
    adam = StackedAdam(stacked, lr=1e-2, steps=torch.zeros(3))
    singles = [[w[k].clone().requires_grad_(True) for w in weights] for k in range(3)]
    optimizers = [torch.optim.Adam(params, lr=1e-2) for params in singles]
    active = torch.tensor([True, False, True])
    for step_grads in grads:
        for param, grad in zip(stacked, step_grads, strict=True):
            param.grad = grad.clone()
        adam.step(active)
        for k in (0, 2):
            for param, grad in zip(singles[k], step_grads, strict=True):
                param.grad = grad[k].clone()
            optimizers[k].step()
    for k in (0, 2):
        for stacked_param, single in zip(stacked, singles[k], strict=True):
            torch.testing.assert_close(stacked_param[k], single, rtol=1e-5, atol=1e-6)
    for stacked_param, original in zip(stacked, weights, strict=True):
        assert torch.equal(stacked_param[1], original[1])  # masked: untouched
    assert adam.steps.tolist() == [4.0, 0.0, 4.0]


def test_stacks_group_compatible_runs_only():
    base = small_config()
    configs = [
        dataclasses.replace(base, seed=0),
        dataclasses.replace(base, seed=1, beta=8.0),
        dataclasses.replace(base, objective="vae", seed=2),  # β fixed at 1: the same loss, stacks
        dataclasses.replace(base, lr=1e-2),  # another learning rate: its own stack
        dataclasses.replace(base, seed=3),
    ]
    assert group_stackable(configs, 3) == [[0, 1, 2], [3], [4]]
    assert group_stackable(configs, 24) == [[0, 1, 2, 4], [3]]
    assert group_stackable(configs, 1) == [[0], [1], [2], [3], [4]]
    with pytest.raises(ConfigError, match="differ only in seed and β"):
        StackedTrainer([configs[0], configs[3]], dataset=squares())
    assert resolve_stack_size(0, "cpu") == 1 and resolve_stack_size(5, "cpu") == 5


def test_a_sweep_in_stacks_gives_the_results_of_one_run_at_a_time(tmp_path):
    base = small_config(steps=8, val_every=4, checkpoint_every=4, val_batches=1, batch_size=8)
    base = dataclasses.replace(base, dataset="dsprites-procedural")
    plan = MetricPlan(names=["unsupervised"], overrides={"unsupervised": {"num_points": 64}})
    results = {}
    for stack in (1, 3):
        spec = ExperimentSpec.sweep(base, [1.0, 4.0, 8.0], seeds=[0], metrics=plan, stack=stack)
        experiment = Experiment(tmp_path / f"stack{stack}", spec)
        events = []
        assert experiment.run(events.append)
        assert {e.run for e in events if e.kind == "finished"} == {"beta-1_seed-0", "beta-4_seed-0", "beta-8_seed-0"}
        results[stack] = experiment.results()
    for name, one_at_a_time in results[1].items():
        stacked = results[3][name]
        assert stacked["validation"] == one_at_a_time["validation"]
        assert stacked["kl_per_dim"] == one_at_a_time["kl_per_dim"]
    saved = Experiment(tmp_path / "stack3").spec
    assert saved.stack == 3
