"""`bvae-desktop --self-test`: prove an installation works, frozen or not, without a display or a user.

It runs what a first launch runs, offscreen: builds the main window (About must name this version),
opens every bundled model (weights checked against their cards, one image decoded; the window must
show the default one, as at first launch; skipped when none is bundled), trains a few steps on procedural dSprites through the window's own worker thread, encodes and decodes
one image with the checkpoint that run wrote, compresses it to a .bvz file and decompresses it. Every
file it writes (settings, the run folder, Qt's, fontconfig's and torch's caches) goes into one temporary folder
that is removed at the end. It prints a summary and returns 0, or names the step that failed and why
and returns 1, so an installer test or CI reads the exit code.

`BVAE_SELFTEST_FAIL=STEP` makes that step fail on purpose: the tests use it to prove a failure is
reported and gives a non-zero exit code.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

STEPS = ("window", "models", "train", "encode", "compress", "close")
FAIL_ENV = "BVAE_SELFTEST_FAIL"
TRAIN_STEPS = 12
TRAIN_TIMEOUT_S = 300.0  # a slow first start (cold disk, antivirus scanning the bundle) takes long


@contextlib.contextmanager
def isolated(tmp: Path) -> Iterator[None]:
    """Send everything Qt, fontconfig and torch might write under $HOME or the system temp folder into
    `tmp`, and put the environment back afterwards (the self-test may run inside another program).

    Must be entered before the QApplication exists. On Windows and macOS Qt does not read these
    variables, but the window is given explicit settings and runs paths, which is what it writes.
    """
    scratch = tmp / "tmp"
    scratch.mkdir(exist_ok=True)
    names = {
        "QT_QPA_PLATFORM": "offscreen",
        "XDG_CONFIG_HOME": str(tmp / "config"),
        "XDG_DATA_HOME": str(tmp / "data"),
        "XDG_CACHE_HOME": str(tmp / "cache"),
        "XDG_STATE_HOME": str(tmp / "state"),
        "XDG_RUNTIME_DIR": str(tmp / "runtime"),
        "TMPDIR": str(scratch),
        "TORCHINDUCTOR_CACHE_DIR": str(scratch / "torchinductor"),  # torch._dynamo makes it on import
    }
    if os.name == "posix":
        names["HOME"] = str(tmp)
    for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME", "XDG_RUNTIME_DIR"):
        Path(names[name]).mkdir(mode=0o700, exist_ok=True)
    saved = {name: os.environ.get(name) for name in names}
    saved_tempdir = tempfile.tempdir
    os.environ.update(names)
    tempfile.tempdir = str(scratch)  # gettempdir() is cached: TMPDIR alone would not reach it
    try:
        yield
    finally:
        tempfile.tempdir = saved_tempdir
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _wait_until(predicate: Callable[[], bool], timeout_s: float) -> bool:
    """Run the Qt event loop (no busy wait) until `predicate()` holds or the time is up."""
    from PySide6.QtCore import QEventLoop, QTimer

    if predicate():
        return True
    loop = QEventLoop()
    deadline = time.monotonic() + timeout_s
    poll = QTimer()
    poll.setInterval(50)

    def check() -> None:
        if predicate() or time.monotonic() > deadline:
            loop.quit()

    poll.timeout.connect(check)
    poll.start()
    loop.exec()
    poll.stop()
    return predicate()


class _SelfTest:
    """The steps, in order; each returns one line for the summary."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.app: Any = None
        self.window: Any = None
        self.source: Any = None
        self.image: Any = None

    def window_step(self) -> str:
        from bvae_desktop import __version__
        from bvae_desktop.gui.app import make_app
        from bvae_desktop.gui.main_window import MainWindow
        from bvae_desktop.gui.settings import AppSettings

        self.app = make_app([sys.argv[0] if sys.argv else "bvae-desktop"])
        if self.app.windowIcon().isNull():
            raise RuntimeError("the app icon did not load (bvae_desktop/resources/icons missing from the install?)")
        settings = AppSettings(self.tmp / "settings.ini")
        settings.runs_dir = self.tmp / "runs"
        self.window = MainWindow(settings=settings)
        self.window.show()
        self.app.processEvents()
        about = self.window.about_text()
        if __version__ not in about:
            raise RuntimeError(f"About does not show version {__version__}: {about!r}")
        return f"main window built, About shows {__version__}, {self.window.tabs.count()} tabs"

    def models_step(self) -> str:
        import numpy as np

        from bvae_desktop.core import model_zoo

        problems: list[str] = []
        models = model_zoo.list_models(problems=problems)
        if problems:
            raise RuntimeError(problems[0])
        if not models:
            return f"no bundled models (looked in {model_zoo.models_dir() or 'the installed package'}): skipped"
        for model in models:
            model_zoo.verify_weights(model)
        model = next((m for m in models if m.name == model_zoo.DEFAULT_MODEL), models[0])
        source = model_zoo.model_source(model)
        found = None if source.dataset is None else source.dataset.batch(source.val_indices[:1]).numpy()
        code = source.encode(found)[0] if found is not None else np.zeros((1, source.latent_dim), np.float32)
        decoded = source.decode(code)
        if decoded.shape != (1, *source.image_shape) or decoded.dtype != np.uint8:
            raise RuntimeError(f"{model.name}: decoded {decoded.shape} {decoded.dtype}")
        shown = ""
        if model.name == model_zoo.DEFAULT_MODEL:
            window = self.window
            label = f"bundled model {model.name}"
            if not _wait_until(lambda: window.model_source is not None and window.model_source.label == label, 30.0):
                raise RuntimeError(f"the window did not show {model.name} at first launch")
            shown = "; the window shows it"
        shape = "x".join(str(n) for n in decoded.shape)
        return (
            f"{len(models)} bundled ({', '.join(m.name for m in models)}), SHA-256 ok; "
            f"{model.name} decoded {shape}{shown}"
        )

    def train_step(self) -> str:
        window = self.window
        panel = window.panel
        panel.datasetCombo.setCurrentIndex(panel.datasetCombo.findData("dsprites-procedural"))
        panel.latentDimSpin.setValue(4)
        panel.batchSizeSpin.setValue(16)
        panel.stepsSpin.setValue(TRAIN_STEPS)
        started = time.perf_counter()
        panel.trainButton.click()
        if not window.training:
            raise RuntimeError(f"training did not start: {window.last_error or 'no reason given'}")
        if not _wait_until(lambda: window.worker is None, TRAIN_TIMEOUT_S):
            window.stop_training()
            raise RuntimeError(f"training did not finish within {TRAIN_TIMEOUT_S:.0f} s")
        seconds = time.perf_counter() - started
        if window.last_error:
            raise RuntimeError(f"training failed: {window.last_error}")
        checkpoint = window.checkpoint_path
        if checkpoint is None or not checkpoint.is_file():
            raise RuntimeError(f"no checkpoint written (expected {checkpoint})")
        batch = getattr(window, "last_batch", None)
        if batch is None or batch.last.step != TRAIN_STEPS:
            raise RuntimeError("the window did not receive the run's steps")
        if not math.isfinite(batch.last.loss):
            raise RuntimeError(f"non-finite loss {batch.last.loss}")
        return (
            f"{TRAIN_STEPS} steps on procedural dSprites in {seconds:.1f} s, loss {batch.last.loss:.1f}, "
            f"checkpoint {checkpoint.stat().st_size / 1e6:.1f} MB"
        )

    def encode_step(self) -> str:
        import numpy as np

        from bvae_desktop.core import codec
        from bvae_desktop.core.model_source import ModelSource

        self.source = ModelSource.from_checkpoint(self.window.checkpoint_path)
        images = codec.reference_images(self.source, 1)
        if images is None:
            raise RuntimeError(f"no validation image: {self.source.dataset_error}")
        self.image = images
        means, logvars = self.source.encode(images)
        if means.shape != (1, self.source.latent_dim) or not np.isfinite(means).all() or not np.isfinite(logvars).all():
            raise RuntimeError(f"bad encoding: shape {means.shape}")
        decoded = self.source.decode(means)
        if decoded.shape != images.shape or decoded.dtype != np.uint8:
            raise RuntimeError(f"decoded {decoded.shape} {decoded.dtype}, expected {images.shape} uint8")
        shape = "x".join(str(n) for n in images.shape[1:])
        return (
            f"{shape} image -> {self.source.latent_dim} latents -> {shape}, PSNR {codec.psnr(images, decoded):.1f} dB"
        )

    def compress_step(self) -> str:
        from bvae_desktop.core import codec

        data = codec.compress(self.source, self.image, 75)
        path = self.tmp / "selftest.bvz"
        codec.write_bvz(path, data)
        restored = codec.decompress(self.source, codec.read_bvz(path), name=path)
        if restored.shape != self.image.shape:
            raise RuntimeError(f"decompressed {restored.shape}, expected {self.image.shape}")
        raw = self.image.size
        return f".bvz {len(data)} bytes for a {raw}-byte image, decompressed PSNR {codec.psnr(self.image, restored):.1f} dB"

    def close_step(self) -> str:
        window = self.window
        window.close()
        self.app.processEvents()
        if window.training:
            raise RuntimeError("a training thread is still running after close")
        window.deleteLater()
        self.app.processEvents()
        self.window = None
        written = sum(1 for p in self.tmp.rglob("*") if p.is_file())
        return f"window closed, no thread left; {written} files written, all in the temp folder"

    def cleanup(self) -> None:
        """After a failure: stop a run that may still be going, so the process can exit."""
        if self.window is not None:
            try:
                self.window.stop_training(timeout_ms=30_000)
                self.window.close()
                # delete it now, as the close step does: a window left to the interpreter's exit can be
                # destroyed after the QApplication, which crashed the process (-11) instead of exiting 1
                from PySide6.QtCore import QCoreApplication, QEvent

                self.window.deleteLater()
                QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
                self.app.processEvents()
            except Exception:  # noqa: BLE001 -- already failing; the first reason is the one to report
                pass
            self.window = None


def _versions() -> str:
    import torch
    from PySide6 import __version__ as pyside_version
    from PySide6.QtCore import qVersion

    from bvae_desktop.core.device import device_label, pick_device

    return (
        f"python {platform.python_version()} · torch {torch.__version__} · Qt {qVersion()} · "
        f"PySide6 {pyside_version} · device {device_label(pick_device('auto'))}"
    )


def run_self_test(out: IO[str] | None = None, err: IO[str] | None = None) -> int:
    """Run every step in a fresh temp folder; 0 when all pass, 1 (with the failing step and why) otherwise."""
    from bvae_desktop import APP_NAME, __version__

    out = out or sys.stdout
    err = err or sys.stderr
    forced = os.environ.get(FAIL_ENV, "")
    started = time.perf_counter()
    frozen = "frozen" if getattr(sys, "frozen", False) else "not frozen"
    print(f"{APP_NAME} {__version__} self-test ({frozen}, {sys.executable})", file=out, flush=True)
    with tempfile.TemporaryDirectory(prefix="bvae-selftest-") as tmp_name:
        tmp = Path(tmp_name)
        with isolated(tmp):
            code = _run_steps(tmp, forced, out, err)
    if code == 0:
        print(f"self-test passed in {time.perf_counter() - started:.1f} s; temp folder removed", file=out, flush=True)
    return code


def _run_steps(tmp: Path, forced: str, out: IO[str], err: IO[str]) -> int:
    test = _SelfTest(tmp)
    step = "setup"
    try:
        if forced and forced not in STEPS:
            raise RuntimeError(f"{FAIL_ENV}={forced!r} names no step; the steps are {', '.join(STEPS)}")
        print(f"  {_versions()}", file=out, flush=True)
        for step in STEPS:
            step_started = time.perf_counter()
            if forced == step:
                raise RuntimeError(f"forced failure ({FAIL_ENV}={step})")
            line = getattr(test, f"{step}_step")()
            print(f"  {step:<9} ok  {time.perf_counter() - step_started:5.1f} s  {line}", file=out, flush=True)
    except Exception as exc:  # noqa: BLE001 -- any failure is reported the same way: step and reason
        test.cleanup()
        traceback.print_exc(file=err)
        reason = str(exc) if isinstance(exc, RuntimeError) else f"{type(exc).__name__}: {exc}"
        print(f"self-test FAILED at step '{step}': {reason}", file=err, flush=True)
        return 1
    return 0
