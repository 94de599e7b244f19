"""Issue 16: the Experiments tab's executor choice (from the registry), the Ray fields, "Test connection"
(the cluster query is mocked: starting Ray in a GUI test is too slow) and the missing-Ray line."""

from __future__ import annotations

import json
import sys
import threading

import pytest

from bvae_desktop.core.config import TrainConfig
from bvae_desktop.core.errors import ConfigError
from bvae_desktop.core.executors import RAY_INSTALL_HINT, ExecutorSpec, executors
from bvae_desktop.core.experiment_run import MetricPlan
from bvae_desktop.core.experiments import SPEC_NAME, ExperimentSpec
from bvae_desktop.gui.experiments_view import ExperimentsView


def tiny_config() -> TrainConfig:
    return TrainConfig(latent_dim=3, batch_size=8, val_every=3, val_batches=1, device="cpu")


@pytest.fixture
def view(qtbot, tmp_path):
    widget = ExperimentsView(base_config=tiny_config, runs_dir=lambda: tmp_path / "runs", open_url=lambda url: None)
    qtbot.addWidget(widget)
    widget.show()
    yield widget
    widget.shutdown()


@pytest.fixture
def ray_installed(monkeypatch):
    """The panel as where Ray is installed, whether or not it is here (nothing below starts Ray)."""
    real = ExecutorSpec.missing
    monkeypatch.setattr(ExecutorSpec, "missing", lambda self: None if self.name == "ray" else real(self))


def choose(view: ExperimentsView, name: str) -> None:
    combo = view.executorPanel.executorCombo
    combo.setCurrentIndex(combo.findData(name))


def test_the_combo_comes_from_the_registry_and_each_executor_shows_its_fields(view):
    panel = view.executorPanel
    combo = panel.executorCombo
    assert [combo.itemData(i) for i in range(combo.count())] == [e.name for e in executors()]
    assert [combo.itemText(i) for i in range(combo.count())] == ["In this process", "Worker processes", "Ray cluster"]
    assert panel.executor() == "local" and not view.workersSpin.isEnabled()
    assert not panel.testConnectionButton.isVisible() and not panel.findChild(object, "rayAddressEdit").isVisible()

    choose(view, "processes")
    assert view.workersSpin.isEnabled()
    view.workersSpin.setValue(2)
    assert view.spec().executor == "processes" and view.spec().workers == 2

    choose(view, "ray")
    assert not view.workersSpin.isEnabled()
    for name in ("rayAddressEdit", "rayStorageCombo", "rayCpusSpin", "rayGpusEdit", "rayRetriesSpin"):
        assert panel.findChild(object, name).isVisible(), name
    assert panel.testConnectionButton.isVisible()
    panel.findChild(object, "rayAddressEdit").setText("10.0.0.5:6379")
    storage = panel.findChild(object, "rayStorageCombo")
    storage.setCurrentIndex(storage.findData("unshared"))
    panel.findChild(object, "rayGpusEdit").setText("0.5")
    spec = view.spec()
    assert spec.executor == "ray"
    assert spec.executor_options == {"address": "10.0.0.5:6379", "storage": "unshared", "gpus": 0.5}

    panel.findChild(object, "rayGpusEdit").setText("half")
    with pytest.raises(ConfigError, match="GPUs per task: not a number"):
        view.spec()


def test_test_connection_shows_the_clusters_nodes_cpus_and_gpus(qtbot, view, ray_installed, monkeypatch):
    from bvae_desktop.core import ray_executor
    from bvae_desktop.core.ray_executor import ClusterInfo, NodeInfo

    asked = []
    gate = threading.Event()

    def fake_cluster_info(address=""):
        asked.append(address)
        gate.wait(30)  # connecting takes a while: the tab stays usable, Start waits
        nodes = [NodeInfo("head", "10.0.0.5", 8, 0, True), NodeInfo("gpu-1", "10.0.0.6", 8, 2, True)]
        return ClusterInfo("10.0.0.5:6379", "2.60.0", nodes, worker="bvae-desktop 0.1.0, torch 2.13.0")

    monkeypatch.setattr(ray_executor, "cluster_info", fake_cluster_info)
    choose(view, "ray")
    panel = view.executorPanel
    panel.findChild(object, "rayAddressEdit").setText("10.0.0.5:6379")
    assert panel.testConnectionButton.isEnabled()
    with qtbot.waitSignal(panel.probeFinished, timeout=30_000) as blocker:
        panel.testConnectionButton.click()
        assert panel.probing and panel.clusterInfoLabel.text() == "connecting…"
        assert not panel.testConnectionButton.isEnabled() and not view.startButton.isEnabled()
        assert not view.start()
        gate.set()
    assert blocker.args == [True] and asked == ["10.0.0.5:6379"]
    assert view.startButton.isEnabled()
    text = panel.clusterInfoLabel.text()
    assert "2 nodes, 16 CPUs, 2 GPUs (Ray 2.60.0 at 10.0.0.5:6379)" in text
    assert "gpu-1 10.0.0.6: 8 CPUs, 2 GPUs" in text and "bvae-desktop 0.1.0" in text
    assert not panel.probing and panel.testConnectionButton.isEnabled()

    def unreachable(address=""):
        raise ConfigError(f"cannot reach the Ray cluster at {address}: connection refused")

    monkeypatch.setattr(ray_executor, "cluster_info", unreachable)
    with qtbot.waitSignal(panel.probeFinished, timeout=30_000) as blocker:
        panel.testConnectionButton.click()
    assert blocker.args == [False]
    assert (
        panel.clusterInfoLabel.text()
        == "cannot connect: cannot reach the Ray cluster at 10.0.0.5:6379: connection refused"
    )


def test_without_ray_the_tab_says_how_to_install_it_and_does_not_start(view, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    choose(view, "ray")
    panel = view.executorPanel
    assert panel.clusterInfoLabel.text() == RAY_INSTALL_HINT and not panel.testConnectionButton.isEnabled()
    errors = []
    view.errorOccurred.connect(lambda title, message: errors.append(message))
    view.stepsSpin.setValue(4)
    view.metricsEdit.setText("none")
    assert not view.start()
    assert errors == [RAY_INSTALL_HINT] and not view.running


def test_an_opened_ray_experiment_shows_its_settings_and_they_can_change_for_the_resume(view, tmp_path):
    spec = ExperimentSpec.sweep(
        tiny_config(),
        [1.0],
        metrics=MetricPlan(names=[]),
        executor="ray",
        executor_options={"address": "10.0.0.5:6379", "cpus": 2.0, "retries": 1},
    )
    folder = tmp_path / "exp"
    folder.mkdir()
    (folder / SPEC_NAME).write_text(json.dumps(spec.to_dict()))
    assert view.open_experiment(folder)
    panel = view.executorPanel
    assert panel.executor() == "ray"
    assert panel.findChild(object, "rayAddressEdit").text() == "10.0.0.5:6379"
    assert panel.findChild(object, "rayCpusSpin").value() == 2.0
    assert panel.findChild(object, "rayRetriesSpin").value() == 1
    assert panel.findChild(object, "rayGpusEdit").text() == ""  # unset: auto
    assert panel.settings() == {
        "executor": "ray",
        "executor_options": {"address": "10.0.0.5:6379", "cpus": 2.0, "retries": 1},
    }
