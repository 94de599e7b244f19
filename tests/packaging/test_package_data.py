"""The bundled models travel with the package: editable install, wheel, the frozen app's spec and its self-test."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import types
import zipfile
from importlib import resources
from pathlib import Path

import pytest
from zoo_fixtures import bundled_pair

from bvae_desktop.core import model_zoo
from bvae_desktop.core.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "packaging" / "bvae_desktop.spec"


def test_models_folder_is_installed_as_the_package_bvae_desktop_bundled_models(monkeypatch):
    monkeypatch.delenv(model_zoo.MODELS_ENV, raising=False)
    try:
        folder = resources.files(model_zoo.PACKAGE)
    except ModuleNotFoundError:  # pragma: no cover - an install older than setup.py's mapping
        pytest.fail("bvae_desktop.bundled_models is not installed: reinstall with `pip install -e .` (make does)")
    assert Path(str(folder)).resolve() == (ROOT / "models").resolve()  # editable: the repository's models/
    assert (folder / "README.md").is_file() and (folder / "__init__.py").is_file()
    assert model_zoo.models_dir().resolve() == (ROOT / "models").resolve()


def test_every_bundled_model_is_complete_and_opens():
    """What is in models/ now (the trained models, once added): good cards, matching weights, weights only."""
    folder = ROOT / "models"
    models = model_zoo.list_models(folder)  # strict: a bad card or weights without a card fail here
    for model in models:
        model_zoo.verify_weights(model)
        checkpoint = load_checkpoint(model.weights)
        assert checkpoint.optimizer_state is None and not checkpoint.rng_state, f"{model.weights}: not weights-only"
        assert model.weights.stat().st_size < 16e6, f"{model.weights}: keep bundled models small"
        assert checkpoint.step == model.steps and list(checkpoint.image_shape) == model.card["model"]["image_shape"]
    if models:
        assert model_zoo.DEFAULT_MODEL in [m.name for m in models], "the window shows this one at first launch"


def _source_copy(target: Path, models: Path) -> Path:
    """The files a wheel is built from, copied (the build writes build/ and *.egg-info beside them)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "bvae_desktop", target / "bvae_desktop", ignore=ignore)
    shutil.copytree(models, target / "models", ignore=ignore)
    shutil.copyfile(ROOT / "models" / "__init__.py", target / "models" / "__init__.py")
    shutil.copyfile(ROOT / "models" / "README.md", target / "models" / "README.md")
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copyfile(ROOT / name, target / name)
    return target


@pytest.mark.slow
def test_a_wheel_holds_the_models_as_package_data(tmp_path, tmp_path_factory):
    pytest.importorskip("setuptools")
    source = _source_copy(tmp_path / "src", bundled_pair(tmp_path_factory))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path / "out"),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = (tmp_path / "out").glob("bvae_desktop-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in ("beta4-dsprites.pt", "beta4-dsprites.json", "vae-dsprites.pt", "__init__.py", "README.md"):
        assert f"bvae_desktop/bundled_models/{name}" in names
    assert "bvae_desktop/resources/icons/bvae-desktop-256.png" in names  # the other package data stays
    assert "bvae_desktop/core/model_zoo.py" in names and not any(n.startswith("models/") for n in names)


def test_the_frozen_app_finds_the_models_where_the_spec_puts_them(monkeypatch, tmp_path):
    # the spec: models/*.pt and *.json go to bvae_desktop/bundled_models inside the bundle
    root = tmp_path / "root"
    (root / "packaging").mkdir(parents=True)
    shutil.copyfile(SPEC, root / "packaging" / SPEC.name)
    (root / "models").mkdir()
    for name in ("m.pt", "m.json", "README.md", "__init__.py"):
        (root / "models" / name).write_text("x")
    hooks = types.ModuleType("PyInstaller.utils.hooks")
    hooks.copy_metadata = lambda name: []
    hooks.collect_submodules = lambda package: [package]
    for name in ("PyInstaller", "PyInstaller.utils"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "PyInstaller.utils.hooks", hooks)
    calls = {}

    def recorder(name):
        def build(*args, **kwargs):
            calls[name] = (args, kwargs)
            return types.SimpleNamespace(binaries=[], datas=[], pure=[], scripts=[])

        return build

    namespace = {"SPECPATH": str(root / "packaging"), "__name__": "__main__"}
    namespace.update({cls: recorder(cls) for cls in ("Analysis", "PYZ", "EXE", "COLLECT", "BUNDLE")})
    exec(compile((root / "packaging" / SPEC.name).read_text(encoding="utf-8"), str(SPEC), "exec"), namespace)
    datas = calls["Analysis"][1]["datas"]
    bundled = sorted(Path(src).name for src, dest in datas if dest == "bvae_desktop/bundled_models")
    assert bundled == ["m.json", "m.pt"]

    # the frozen app: no package bvae_desktop.bundled_models, the data folder inside bvae_desktop instead
    bundle = tmp_path / "bundle"
    (bundle / "bvae_desktop" / "bundled_models").mkdir(parents=True)

    def files(package):
        if package == model_zoo.PACKAGE:
            raise ModuleNotFoundError(package)
        return bundle / package

    monkeypatch.delenv(model_zoo.MODELS_ENV, raising=False)
    monkeypatch.setattr(resources, "files", files)
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    assert model_zoo.models_dir() == bundle / "bvae_desktop" / "bundled_models"


@pytest.mark.slow
def test_self_test_opens_a_bundled_model_and_the_window_shows_it(tmp_path, tmp_path_factory):
    home, tmp = tmp_path / "home", tmp_path / "tmp"
    home.mkdir()
    tmp.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "QT_"))}
    env.update(HOME=str(home), TMPDIR=str(tmp), PYTHONDONTWRITEBYTECODE="1")
    env[model_zoo.MODELS_ENV] = str(bundled_pair(tmp_path_factory))
    proc = subprocess.run(
        [sys.executable, "-m", "bvae_desktop", "--self-test"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(line for line in proc.stdout.splitlines() if line.strip().startswith("models"))
    assert "models    ok" in line and "2 bundled (beta4-dsprites, vae-dsprites), SHA-256 ok" in line
    assert "beta4-dsprites decoded 1x1x64x64; the window shows it" in line
