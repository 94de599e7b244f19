"""install.sh and uninstall.sh on a staged package with a stand-in app: what lands where, and that uninstall
takes back exactly what install added. (`make bundle-test` does the same with the real frozen app.)"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINUX = ROOT / "packaging" / "linux"
pytestmark = pytest.mark.skipif(
    sys.platform != "linux" or shutil.which("bash") is None, reason="the Linux package scripts need Linux and bash"
)


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture
def package(tmp_path: Path) -> Path:
    app = tmp_path / "fake-app"
    (app / "_internal").mkdir(parents=True)
    (app / "_internal" / "lib.so").write_bytes(b"\0" * 16)
    exe = app / "bvae-desktop"
    exe.write_text('#!/bin/sh\necho "fake app $*"\n')
    exe.chmod(0o755)
    dest = tmp_path / "pkg"
    subprocess.run(["bash", str(LINUX / "stage.sh"), str(app), str(dest), "9.9.9"], check=True)
    return dest


def _install(package: Path, prefix: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(package / "install.sh"), "--prefix", str(prefix)], check=True, capture_output=True, text=True
    )


def test_stage_lays_out_app_scripts_menu_entry_and_icons(package):
    assert (package / "app" / "bvae-desktop").is_file() and os.access(package / "install.sh", os.X_OK)
    assert (package / "share/applications/bvae-desktop.desktop").is_file()
    for size in (16, 32, 48, 256, 512):
        assert (package / f"share/icons/hicolor/{size}x{size}/apps/bvae-desktop.png").is_file()
    assert (package / "share/icons/hicolor/scalable/apps/bvae-desktop.svg").is_file()
    assert "9.9.9" in (package / "README.txt").read_text(encoding="utf-8")


def test_install_puts_a_working_launcher_a_menu_entry_and_icons_in_the_prefix(package, tmp_path):
    prefix = tmp_path / "prefix"
    prefix.mkdir()
    _install(package, prefix)
    launcher = prefix / "bin" / "bvae-desktop"
    assert launcher.is_symlink()
    run = subprocess.run([str(launcher), "--self-test"], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "fake app --self-test"
    entry = (prefix / "share/applications/bvae-desktop.desktop").read_text(encoding="utf-8")
    assert f"Exec={launcher}\n" in entry and "@" not in entry
    icon = next(line[5:] for line in entry.splitlines() if line.startswith("Icon="))
    assert Path(icon).is_file()  # a custom prefix is not in the icon theme path: the file itself
    assert (prefix / "share/icons/hicolor/48x48/apps/bvae-desktop.png").is_file()
    if shutil.which("desktop-file-validate"):
        subprocess.run(["desktop-file-validate", str(prefix / "share/applications/bvae-desktop.desktop")], check=True)


def test_uninstall_removes_everything_install_added_and_nothing_else(package, tmp_path):
    prefix = tmp_path / "prefix"
    (prefix / "bin").mkdir(parents=True)
    (prefix / "bin" / "other-tool").write_text("keep me")
    (prefix / "share" / "applications").mkdir(parents=True)
    (prefix / "share" / "applications" / "other.desktop").write_text("keep me")
    before = _tree(prefix)
    _install(package, prefix)
    _install(package, prefix)  # installing again replaces the first install cleanly
    assert (prefix / "lib/bvae-desktop/install-manifest.txt").is_file()
    done = subprocess.run(
        [str(prefix / "lib/bvae-desktop/uninstall.sh")], check=True, capture_output=True, text=True
    )
    assert "removed" in done.stdout
    assert _tree(prefix) == before


def test_uninstall_without_an_installation_says_so(package, tmp_path):
    prefix = tmp_path / "empty"
    prefix.mkdir()
    done = subprocess.run(
        [str(package / "uninstall.sh"), "--prefix", str(prefix)], capture_output=True, text=True
    )
    assert done.returncode == 1 and "no installation" in done.stderr
