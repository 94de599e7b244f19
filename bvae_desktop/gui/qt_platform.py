"""Say in one line which system library Qt's xcb platform plugin lacks, instead of Qt's abort.

Without the X11 client libraries (a minimal Linux install, a container, WSL) Qt aborts with "Could not
load the Qt platform plugin xcb" and a hint naming libxcb-cursor0 whatever is really missing (even
when the cause is no X display at all). Before the QApplication exists, `check_platform` loads the
plugin the way Qt would (dlopen): the loader's error names the missing library, which we map to its
Debian/Ubuntu and Fedora packages. When the plugin loads it says nothing; the libraries it loaded are
the ones Qt loads next anyway, so the check costs a few milliseconds that Qt would spend later.
Other platforms (offscreen, wayland, minimal) and other systems are not checked.
"""

from __future__ import annotations

import ctypes
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

XCB_PLUGIN_FILE = "libqxcb.so"
EXIT_CODE = 1  # what run_app returns instead of Qt's SIGABRT
PREFIX = "bvae-desktop: Qt cannot start its xcb platform plugin"

# library -> (Debian/Ubuntu package, Fedora package). The xcb libraries Qt 6's xcb plugin links (ldd of
# PySide6's libqxcb.so and libQt6XcbQpa.so), plus the graphics and font libraries Qt's GUI needs. Debian names
# checked with `apt-cache show` on Debian 12; Ubuntu uses the same names for these.
LIBRARY_PACKAGES: dict[str, tuple[str, str]] = {
    "libxcb-cursor.so.0": ("libxcb-cursor0", "xcb-util-cursor"),
    "libxcb-icccm.so.4": ("libxcb-icccm4", "xcb-util-wm"),
    "libxcb-keysyms.so.1": ("libxcb-keysyms1", "xcb-util-keysyms"),
    "libxcb-image.so.0": ("libxcb-image0", "xcb-util-image"),
    "libxcb-render-util.so.0": ("libxcb-render-util0", "xcb-util-renderutil"),
    "libxcb-util.so.1": ("libxcb-util1", "xcb-util"),
    "libxkbcommon-x11.so.0": ("libxkbcommon-x11-0", "libxkbcommon-x11"),
    "libxkbcommon.so.0": ("libxkbcommon0", "libxkbcommon"),
    "libxcb.so.1": ("libxcb1", "libxcb"),
    "libxcb-randr.so.0": ("libxcb-randr0", "libxcb"),
    "libxcb-shape.so.0": ("libxcb-shape0", "libxcb"),
    "libxcb-shm.so.0": ("libxcb-shm0", "libxcb"),
    "libxcb-sync.so.1": ("libxcb-sync1", "libxcb"),
    "libxcb-xfixes.so.0": ("libxcb-xfixes0", "libxcb"),
    "libxcb-render.so.0": ("libxcb-render0", "libxcb"),
    "libxcb-xkb.so.1": ("libxcb-xkb1", "libxcb"),
    "libxcb-xinerama.so.0": ("libxcb-xinerama0", "libxcb"),
    "libxcb-xinput.so.0": ("libxcb-xinput0", "libxcb"),
    "libxcb-glx.so.0": ("libxcb-glx0", "libxcb"),
    "libX11-xcb.so.1": ("libx11-xcb1", "libX11-xcb"),
    "libX11.so.6": ("libx11-6", "libX11"),
    "libGL.so.1": ("libgl1", "libglvnd-glx"),
    "libGLX.so.0": ("libglx0", "libglvnd-glx"),
    "libEGL.so.1": ("libegl1", "libglvnd-egl"),
    "libOpenGL.so.0": ("libopengl0", "libglvnd-opengl"),
    "libGLdispatch.so.0": ("libglvnd0", "libglvnd"),
    "libfontconfig.so.1": ("libfontconfig1", "fontconfig"),
    "libfreetype.so.6": ("libfreetype6", "freetype"),
    "libdbus-1.so.3": ("libdbus-1-3", "dbus-libs"),
}

# glibc's dlerror() for a library (the plugin or one it needs) that is not there
_MISSING = re.compile(r"(?P<name>[^\s:/]+\.so[.\d]*): cannot open shared object file")

Loader = Callable[[str], object]
NO_DISPLAY = f"{PREFIX}: there is no X display (DISPLAY is not set)."


def _load_lazily(path: str) -> object:
    """dlopen `path` as Qt does (lazy symbol binding); raises OSError with the loader's message."""
    return ctypes.CDLL(path, mode=os.RTLD_LAZY)


def platform_candidates(argv: Sequence[str], environ: Mapping[str, str]) -> list[str]:
    """The platform plugins Qt will try, in order: `-platform NAME`, else QT_QPA_PLATFORM (a ';' list),
    else Qt 6's default on Linux ("wayland;xcb" in a Wayland session, else "xcb"). Options after ':' dropped."""
    chosen = ""
    for i, arg in enumerate(argv[1:], start=1):
        if arg in ("-platform", "--platform") and i + 1 < len(argv):
            chosen = argv[i + 1]
    if not chosen:
        chosen = environ.get("QT_QPA_PLATFORM", "")
    if not chosen:
        chosen = "wayland;xcb" if environ.get("XDG_SESSION_TYPE", "") == "wayland" else "xcb"
    return [part.split(":", 1)[0].strip() for part in chosen.split(";") if part.strip()]


def will_use_xcb(argv: Sequence[str], environ: Mapping[str, str], platform: str = sys.platform) -> bool:
    """Whether Qt will end up loading xcb: it is the first candidate, or only Wayland plugins come before
    it and there is no Wayland display for them to connect to."""
    if not platform.startswith("linux"):
        return False
    for name in platform_candidates(argv, environ):
        if name == "xcb":
            return True
        if not (name.startswith("wayland") and not environ.get("WAYLAND_DISPLAY")):
            return False  # offscreen, minimal, eglfs, ... or a Wayland that may well start
    return False


def find_xcb_plugin(environ: Mapping[str, str]) -> Path | None:
    """The libqxcb.so Qt would load: QT_QPA_PLATFORM_PLUGIN_PATH, then QT_PLUGIN_PATH, then Qt's own
    plugins folder (QLibraryInfo, which a frozen app's qt.conf points into the bundle)."""
    folders = [Path(p) for p in environ.get("QT_QPA_PLATFORM_PLUGIN_PATH", "").split(os.pathsep) if p]
    folders += [Path(p) / "platforms" for p in environ.get("QT_PLUGIN_PATH", "").split(os.pathsep) if p]
    from PySide6.QtCore import QLibraryInfo

    folders.append(Path(QLibraryInfo.path(QLibraryInfo.LibraryPath.PluginsPath)) / "platforms")
    for folder in folders:
        candidate = folder / XCB_PLUGIN_FILE
        if candidate.is_file():
            return candidate
    return None


def explain_missing(library: str) -> str:
    """The one line for a missing `library`: the packages that provide it when we know them."""
    known = LIBRARY_PACKAGES.get(library)
    if known is not None:
        debian, fedora = known
        how = f"Install it: sudo apt-get install {debian} (Debian/Ubuntu) or sudo dnf install {fedora} (Fedora)"
    else:
        how = f"Install the package that provides it (Debian/Ubuntu: apt-file search {library}; Fedora: sudo dnf install '{library}()(64bit)')"
    return f"{PREFIX}: {library} is missing. {how}"


def check_platform(
    argv: Sequence[str],
    environ: Mapping[str, str] | None = None,
    *,
    platform: str = sys.platform,
    plugin: Path | None = None,
    load: Loader = _load_lazily,
) -> str | None:
    """None when Qt's platform plugin will start (or is not xcb, or cannot be judged); else the line to print.

    `plugin` and `load` are for tests; by default the plugin is found as Qt finds it and dlopen'ed.
    A failure that names no system library (a Qt library missing from a broken install, an undefined
    symbol) is left to Qt, whose own message fits those better. With every library there but no
    DISPLAY (and no `-display`), xcb cannot connect: Qt would abort with its misleading libxcb-cursor0 hint.
    """
    env = os.environ if environ is None else environ
    if not will_use_xcb(argv, env, platform):
        return None
    path = plugin if plugin is not None else find_xcb_plugin(env)
    if path is None:
        return None  # no xcb plugin at all: Qt lists the plugins it has
    try:
        load(str(path))
    except OSError as exc:
        match = _MISSING.search(str(exc))
        if match is None or match["name"].startswith(("libqxcb", "libQt6", "libpyside6", "libshiboken6")):
            return None
        return explain_missing(match["name"])
    if not env.get("DISPLAY") and "-display" not in argv[1:]:
        if env.get("WAYLAND_DISPLAY"):
            return f"{NO_DISPLAY} On Wayland without XWayland run it with QT_QPA_PLATFORM=wayland"
        return f"{NO_DISPLAY} Start it from a desktop session, or set QT_QPA_PLATFORM=offscreen to run without a screen"
    return None
