"""One line naming the missing library (and its package) instead of Qt's abort when xcb cannot load."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bvae_desktop.gui import qt_platform
from bvae_desktop.gui.qt_platform import (
    EXIT_CODE,
    NO_DISPLAY,
    check_platform,
    explain_missing,
    find_xcb_plugin,
    platform_candidates,
    will_use_xcb,
)

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = Path("/opt/qt/plugins/platforms/libqxcb.so")  # never opened: the loader is injected
X11 = {"DISPLAY": ":0"}


def _missing(library: str):
    def load(path: str) -> None:
        assert path == str(PLUGIN)
        raise OSError(f"{library}: cannot open shared object file: No such file or directory")

    return load


def _loads(path: str) -> None:
    assert path == str(PLUGIN)


def _never(path: str) -> None:
    raise AssertionError(f"the plugin should not be loaded ({path})")


def test_a_missing_xcb_library_gives_the_exact_line_with_its_packages():
    line = check_platform(["bvae-desktop"], X11, platform="linux", plugin=PLUGIN, load=_missing("libxcb-cursor.so.0"))
    assert line == (
        "bvae-desktop: Qt cannot start its xcb platform plugin: libxcb-cursor.so.0 is missing. "
        "Install it: sudo apt-get install libxcb-cursor0 (Debian/Ubuntu) or sudo dnf install xcb-util-cursor (Fedora)"
    )


@pytest.mark.parametrize(
    ("library", "debian", "fedora"),
    [
        ("libxcb-icccm.so.4", "libxcb-icccm4", "xcb-util-wm"),
        ("libxcb-keysyms.so.1", "libxcb-keysyms1", "xcb-util-keysyms"),
        ("libxkbcommon-x11.so.0", "libxkbcommon-x11-0", "libxkbcommon-x11"),
        ("libxcb-image.so.0", "libxcb-image0", "xcb-util-image"),
        ("libxcb-render-util.so.0", "libxcb-render-util0", "xcb-util-renderutil"),
        ("libxcb-shape.so.0", "libxcb-shape0", "libxcb"),
        ("libxcb-randr.so.0", "libxcb-randr0", "libxcb"),
        ("libxcb-xkb.so.1", "libxcb-xkb1", "libxcb"),
        ("libxcb-xinerama.so.0", "libxcb-xinerama0", "libxcb"),
        ("libEGL.so.1", "libegl1", "libglvnd-egl"),
        ("libGL.so.1", "libgl1", "libglvnd-glx"),
        ("libfontconfig.so.1", "libfontconfig1", "fontconfig"),
        ("libdbus-1.so.3", "libdbus-1-3", "dbus-libs"),
    ],
)
def test_each_known_library_names_its_packages(library, debian, fedora):
    line = check_platform(["bvae-desktop"], X11, platform="linux", plugin=PLUGIN, load=_missing(library))
    assert line == explain_missing(library)
    assert f": {library} is missing. " in line
    assert f"sudo apt-get install {debian} (Debian/Ubuntu)" in line and f"sudo dnf install {fedora} (Fedora)" in line


def test_an_unknown_library_is_still_named_in_one_line():
    line = check_platform(["bvae-desktop"], X11, platform="linux", plugin=PLUGIN, load=_missing("libfoo-bar.so.7"))
    assert line == (
        "bvae-desktop: Qt cannot start its xcb platform plugin: libfoo-bar.so.7 is missing. Install the package that "
        "provides it (Debian/Ubuntu: apt-file search libfoo-bar.so.7; Fedora: sudo dnf install 'libfoo-bar.so.7()(64bit)')"
    )
    assert "\n" not in line


@pytest.mark.parametrize(
    "message",
    [
        "libQt6XcbQpa.so.6: cannot open shared object file: No such file or directory",  # a broken install: Qt says it
        "/opt/qt/plugins/platforms/libqxcb.so: undefined symbol: _ZN7QWindow4showEv",
        "/opt/qt/plugins/platforms/libqxcb.so: wrong ELF class: ELFCLASS32",
    ],
)
def test_failures_that_name_no_system_library_are_left_to_qt(message):
    def load(path: str) -> None:
        raise OSError(message)

    assert check_platform(["bvae-desktop"], X11, platform="linux", plugin=PLUGIN, load=load) is None


def test_a_plugin_that_loads_with_a_display_says_nothing():
    assert check_platform(["bvae-desktop"], X11, platform="linux", plugin=PLUGIN, load=_loads) is None


def test_no_display_is_said_instead_of_qts_misleading_hint():
    line = check_platform(["bvae-desktop"], {}, platform="linux", plugin=PLUGIN, load=_loads)
    assert line is not None and line.startswith(NO_DISPLAY) and "QT_QPA_PLATFORM=offscreen" in line
    wayland = check_platform(
        ["bvae-desktop"], {"WAYLAND_DISPLAY": "wayland-0"}, platform="linux", plugin=PLUGIN, load=_loads
    )
    assert wayland is not None and wayland.startswith(NO_DISPLAY) and "QT_QPA_PLATFORM=wayland" in wayland
    assert check_platform(["bvae-desktop", "-display", ":1"], {}, platform="linux", plugin=PLUGIN, load=_loads) is None


@pytest.mark.parametrize(
    ("argv", "env"),
    [
        (["app"], {"QT_QPA_PLATFORM": "offscreen"}),
        (["app"], {"QT_QPA_PLATFORM": "wayland", "WAYLAND_DISPLAY": "wayland-0"}),
        (["app"], {"QT_QPA_PLATFORM": "minimal"}),
        (["app", "-platform", "offscreen"], {"QT_QPA_PLATFORM": "xcb"}),
        (["app"], {"XDG_SESSION_TYPE": "wayland", "WAYLAND_DISPLAY": "wayland-0"}),  # Qt 6 picks wayland
        (["app"], {"QT_QPA_PLATFORM": "wayland;xcb", "WAYLAND_DISPLAY": "wayland-0"}),
    ],
)
def test_other_platforms_are_not_checked(argv, env):
    assert not will_use_xcb(argv, env, "linux")
    assert check_platform(argv, env, platform="linux", plugin=PLUGIN, load=_never) is None


@pytest.mark.parametrize(
    ("argv", "env"),
    [
        (["app"], {}),
        (["app"], {"QT_QPA_PLATFORM": "xcb"}),
        (["app"], {"QT_QPA_PLATFORM": "xcb:nomitshm"}),
        (["app", "-platform", "xcb"], {"QT_QPA_PLATFORM": "offscreen"}),
        (["app"], {"XDG_SESSION_TYPE": "x11", "WAYLAND_DISPLAY": "wayland-0"}),
        (["app"], {"XDG_SESSION_TYPE": "wayland"}),  # no Wayland display: Qt falls back to xcb
    ],
)
def test_xcb_is_checked_when_qt_will_use_it(argv, env):
    assert will_use_xcb(argv, env, "linux")
    line = check_platform(argv, {**env, **X11}, platform="linux", plugin=PLUGIN, load=_missing("libxcb-icccm.so.4"))
    assert line == explain_missing("libxcb-icccm.so.4")


def test_only_linux_is_checked():
    for system in ("darwin", "win32"):
        assert check_platform(["app"], {}, platform=system, plugin=PLUGIN, load=_never) is None


def test_platform_candidates_follow_qts_order():
    assert platform_candidates(["app"], {}) == ["xcb"]
    assert platform_candidates(["app"], {"XDG_SESSION_TYPE": "wayland"}) == ["wayland", "xcb"]
    assert platform_candidates(["app"], {"QT_QPA_PLATFORM": "wayland-egl;xcb:foo=1"}) == ["wayland-egl", "xcb"]
    assert platform_candidates(["app", "-platform", "minimal"], {"QT_QPA_PLATFORM": "xcb"}) == ["minimal"]


def test_the_plugin_is_found_where_qt_looks_first(tmp_path):
    own = tmp_path / "own"
    own.mkdir()
    (own / "libqxcb.so").write_bytes(b"")
    assert find_xcb_plugin({"QT_QPA_PLATFORM_PLUGIN_PATH": str(own)}) == own / "libqxcb.so"
    plugins = tmp_path / "plugins" / "platforms"
    plugins.mkdir(parents=True)
    (plugins / "libqxcb.so").write_bytes(b"")
    assert find_xcb_plugin({"QT_PLUGIN_PATH": str(tmp_path / "plugins")}) == plugins / "libqxcb.so"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the xcb plugin is Linux's")
def test_the_verdict_on_the_real_plugin_matches_whether_it_loads():
    """This machine's PySide6 libqxcb.so, loaded for real (in a child process: its libraries stay out of this one)."""
    code = (
        "import ctypes, os\n"
        "from bvae_desktop.gui.qt_platform import check_platform, find_xcb_plugin\n"
        "plugin = find_xcb_plugin({})\n"
        "verdict = check_platform(['app'], {'QT_QPA_PLATFORM': 'xcb', 'DISPLAY': ':99'})\n"
        "try:\n"
        "    ctypes.CDLL(str(plugin), mode=os.RTLD_LAZY)\n"
        "    loads = True\n"
        "except OSError:\n"
        "    loads = False\n"
        "print(plugin is not None, loads, verdict)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    found, loads, verdict = proc.stdout.strip().split(" ", 2)
    assert found == "True"
    assert (verdict == "None") == (loads == "True"), verdict


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the xcb plugin is Linux's")
def test_the_app_exits_with_one_line_instead_of_qts_abort(tmp_path):
    """`python -m bvae_desktop` asked for xcb with no display: one line on stderr, exit 1, no core dump."""
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "XDG_SESSION_TYPE")}
    env.update(QT_QPA_PLATFORM="xcb", HOME=str(tmp_path), PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run(
        [sys.executable, "-m", "bvae_desktop"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == EXIT_CODE
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(NO_DISPLAY) or (lines[0].startswith(qt_platform.PREFIX) and " is missing. " in lines[0])


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or shutil.which("cc") is None, reason="needs Linux and a C compiler"
)
def test_the_real_loader_message_for_a_missing_library_gives_the_line(tmp_path):
    """A stand-in libqxcb.so linked against a library that is then removed: the dynamic loader's own error,
    through `python -m bvae_desktop` (QT_QPA_PLATFORM_PLUGIN_PATH points Qt and the check at it)."""
    missing = "libxcb-stand-in-for-tests.so.0"
    (tmp_path / "dep.c").write_text("int dep(void) { return 1; }\n")
    (tmp_path / "plugin.c").write_text("extern int dep(void);\nint plugin(void) { return dep(); }\n")
    build = [
        ["cc", "-shared", "-fPIC", "-o", missing, f"-Wl,-soname,{missing}", "dep.c"],
        ["cc", "-shared", "-fPIC", "-o", "libqxcb.so", "plugin.c", "-L.", f"-l:{missing}"],
    ]
    for command in build:
        subprocess.run(command, cwd=tmp_path, check=True, capture_output=True, timeout=60)
    (tmp_path / missing).unlink()
    env = {k: v for k, v in os.environ.items() if k not in ("WAYLAND_DISPLAY", "XDG_SESSION_TYPE")}
    env.update(QT_QPA_PLATFORM="xcb", DISPLAY=":0", QT_QPA_PLATFORM_PLUGIN_PATH=str(tmp_path), HOME=str(tmp_path))
    proc = subprocess.run(
        [sys.executable, "-m", "bvae_desktop"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == EXIT_CODE
    assert proc.stderr.splitlines() == [explain_missing(missing)]
