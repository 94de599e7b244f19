"""The PyInstaller spec: it compiles, bundles what the app reads at run time and trims only what no user runs.

Executed with stand-ins for PyInstaller's build classes, so this runs without PyInstaller and in milliseconds;
`make bundle` and `make bundle-test` build and run the real thing.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "packaging" / "bvae_desktop.spec"


class _Recorder:
    calls: dict[str, tuple[tuple, dict]] = {}

    def __init__(self, *args, **kwargs):
        type(self).calls[type(self).__name__] = (args, kwargs)
        self.binaries, self.datas, self.pure, self.scripts = [], [], [], []


def _submodules(package: str) -> list[str]:
    """What PyInstaller's collect_submodules returns: the package and every module below it."""
    import importlib
    import pkgutil

    found = importlib.import_module(package)
    return [package, *(f"{package}.{m.name}" for m in pkgutil.walk_packages(found.__path__))]


def _run_spec(monkeypatch) -> dict:
    hooks = types.ModuleType("PyInstaller.utils.hooks")
    hooks.copy_metadata = lambda name: [(f"/site/{name.replace('-', '_')}-0.1.0.dist-info", f"{name}.dist-info")]
    hooks.collect_submodules = _submodules
    for name in ("PyInstaller", "PyInstaller.utils"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "PyInstaller.utils.hooks", hooks)
    namespace = {"SPECPATH": str(SPEC.parent), "__name__": "__main__"}
    for cls in ("Analysis", "PYZ", "EXE", "COLLECT", "BUNDLE"):
        namespace[cls] = type(cls, (_Recorder,), {})
    exec(compile(SPEC.read_text(encoding="utf-8"), str(SPEC), "exec"), namespace)
    return namespace


def test_spec_compiles_as_python():
    compile(SPEC.read_text(encoding="utf-8"), str(SPEC), "exec")


def test_spec_bundles_the_launcher_icons_and_metadata_and_one_qt_binding(monkeypatch):
    ns = _run_spec(monkeypatch)
    args, kwargs = _Recorder.calls["Analysis"]
    assert args[0] == [str(ROOT / "packaging" / "launcher.py")]
    datas = kwargs["datas"]
    assert any(dest == "bvae-desktop.dist-info" for _src, dest in datas)  # About and --version show the version
    icons = [Path(src).name for src, dest in datas if dest == "bvae_desktop/resources/icons"]
    assert "bvae-desktop-16.png" in icons and "bvae-desktop-256.png" in icons
    excludes = kwargs["excludes"]
    assert {"PyQt5", "PyQt6", "PySide2", "tkinter"} <= set(excludes)
    assert not {"PySide6.QtCore", "PySide6.QtGui", "PySide6.QtWidgets", "PySide6.QtOpenGL"} & set(excludes)
    exe_kwargs = _Recorder.calls["EXE"][1]
    assert exe_kwargs["console"] is False and exe_kwargs["name"] == "bvae-desktop"
    assert ns["NAME"] == "bvae-desktop"


@pytest.mark.parametrize(
    ("dest", "dropped"),
    [
        ("torch/include/ATen/core/Tensor.h", True),
        ("torch/share/cmake/Torch/TorchConfig.cmake", True),
        ("torch/test/Dict_test", True),
        ("torch/bin/protoc", True),
        ("torch/bin/torch_shm_manager", False),
        ("torch/lib/libtorchbind_test.so", True),
        ("torch/lib/libtorch_cpu.so", False),
        ("torch/lib/libgomp.so.1", False),
        ("torch/_inductor/codegen/cpp_prefix.h", True),
        ("PySide6/Qt/plugins/platforms/libqxcb.so", False),
        ("PySide6/Qt/plugins/platforms/libqwayland.so", False),
        ("PySide6/Qt/plugins/platforms/libqoffscreen.so", False),
        ("PySide6/Qt/plugins/platforms/libqvnc.so", True),
        ("PySide6/Qt/plugins/egldeviceintegrations/libqeglfs-x11-integration.so", True),
        ("PySide6/Qt/lib/libQt6Network.so.6", True),
        ("PySide6/Qt/lib/libQt6Gui.so.6", False),
        ("PySide6/Qt/translations/qtbase_de.qm", False),
        ("PySide6/Qt/translations/assistant_de.qm", True),
        ("bvae_desktop/resources/icons/bvae-desktop-16.png", False),
    ],
)
def test_trimming_drops_only_headers_tests_tools_and_unused_qt_parts(monkeypatch, dest, dropped):
    ns = _run_spec(monkeypatch)
    assert ns["_unneeded"](dest) is dropped


def test_the_registries_modules_are_bundled(monkeypatch):
    """Objectives and data sources register themselves when their modules are imported by discovery, which
    PyInstaller's analysis cannot follow: without them the frozen app knew no objective (seen in CI)."""
    from bvae_desktop.core.data import dataset_names
    from bvae_desktop.core.objectives import objective_names

    _run_spec(monkeypatch)
    hidden = set(_Recorder.calls["Analysis"][1]["hiddenimports"])
    assert {"bvae_desktop.core.objectives.beta_vae", "bvae_desktop.core.objectives.factor_vae"} <= hidden
    assert {"bvae_desktop.core.data.procedural", "bvae_desktop.core.data.mnist"} <= hidden
    assert objective_names() and dataset_names()
