"""One QSettings wrapper with typed getters, so a bad stored value never crashes the window."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings, QStandardPaths


def default_runs_dir() -> Path:
    base = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppDataLocation)
    return Path(base or Path.home() / ".bvae-desktop") / "runs"


class AppSettings:
    """Persistent settings; tests pass `path` to use a temporary INI file."""

    def __init__(self, path: str | Path | None = None) -> None:
        if path is None:
            self._qs = QSettings("bvae-desktop", "bvae-desktop")
        else:
            self._qs = QSettings(str(path), QSettings.Format.IniFormat)

    def _str(self, key: str, default: str) -> str:
        value = self._qs.value(key, default, type=str)
        return value if isinstance(value, str) else default

    def _set(self, key: str, value: object) -> None:
        self._qs.setValue(key, value)
        self._qs.sync()

    @property
    def dataset(self) -> str:
        return self._str("data/dataset", "dsprites-procedural")

    @dataset.setter
    def dataset(self, value: str) -> None:
        self._set("data/dataset", value)

    @property
    def data_path(self) -> str:
        return self._str("data/path", "")

    @data_path.setter
    def data_path(self, value: str) -> None:
        self._set("data/path", value)

    @property
    def runs_dir(self) -> Path:
        stored = self._str("runs/dir", "")
        return Path(stored) if stored else default_runs_dir()

    @runs_dir.setter
    def runs_dir(self, value: str | Path) -> None:
        self._set("runs/dir", str(value))

    @property
    def last_run_dir(self) -> str:
        return self._str("runs/last", "")

    @last_run_dir.setter
    def last_run_dir(self, value: str | Path) -> None:
        self._set("runs/last", str(value))

    @property
    def geometry(self) -> QByteArray | None:
        value = self._qs.value("window/geometry", None)
        return value if isinstance(value, QByteArray) and not value.isEmpty() else None

    @geometry.setter
    def geometry(self, value: QByteArray) -> None:
        self._set("window/geometry", value)

    @property
    def window_state(self) -> QByteArray | None:
        value = self._qs.value("window/state", None)
        return value if isinstance(value, QByteArray) and not value.isEmpty() else None

    @window_state.setter
    def window_state(self, value: QByteArray) -> None:
        self._set("window/state", value)
