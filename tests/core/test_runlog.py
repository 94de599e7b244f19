import contextlib
import csv
import json
import math
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from bvae_desktop.core.runlog import RunHistory, RunLog, RunLogError, export_csv, read_runlog

REPO_ROOT = Path(__file__).resolve().parents[2]
needs_file_locks = pytest.mark.skipif(
    os.environ.get("HDF5_USE_FILE_LOCKING", "").upper() in ("FALSE", "0"),
    reason="HDF5 file locking is switched off (HDF5_USE_FILE_LOCKING)",
)
CONFIG = {"objective": "beta-h", "beta": 4.0, "latent_dim": 3, "optim": {"lr": 5e-4, "betas": [0.9, 0.999]}}


def _metrics(i):
    return {"loss": 100.0 - i * 0.5, "recon": 90.0 - i * 0.25, "kl": 1.0 + i / 7, "beta": 4.0, "lr": 5e-4}


def _kl(i, d=3):
    return [0.1 * i + j for j in range(d)]


def _env():
    return dict(os.environ, PYTHONPATH=str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))


@contextlib.contextmanager
def _another_program_holds_open(path, seen=None):
    """A separate process keeps `path` open for reading (taking HDF5's file lock) until the block ends;
    then it reads train/step through that handle into `seen`."""
    holder = """
        import sys, h5py
        with h5py.File(sys.argv[1], "r", locking=True) as fh:
            print("ready", flush=True)
            sys.stdin.read()
            print(fh["train/step"][:].tolist(), flush=True)
    """
    with subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(holder), str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=_env(),
    ) as proc:
        try:
            assert proc.stdout.readline().strip() == "ready"
            yield
        finally:
            proc.stdin.close()
            proc.wait(timeout=30)
        if seen is not None:
            seen.extend(json.loads(proc.stdout.read()))


def _run_python(code, *args, timeout=60, **kwargs):
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )


def test_round_trip_exact_values(tmp_path):
    path = tmp_path / "run.h5"
    with RunLog(path, config=CONFIG, latent_dim=3) as log:
        for i in range(10):
            log.append_step(i, _metrics(i), _kl(i))
    hist = read_runlog(path)
    assert isinstance(hist, RunHistory)
    assert hist.latent_dim == 3
    assert hist.config == CONFIG
    np.testing.assert_array_equal(hist.train["step"], np.arange(10))
    assert hist.train["step"].dtype == np.int64
    for key in ("loss", "recon", "kl", "beta", "lr"):
        assert hist.train[key].dtype == np.float64
        assert hist.train[key].tolist() == [_metrics(i)[key] for i in range(10)]
    kl = hist.train["kl_per_dim"]
    assert kl.shape == (10, 3) and kl.dtype == np.float32
    np.testing.assert_array_equal(kl, np.array([_kl(i) for i in range(10)], dtype=np.float32))
    assert hist.validation["step"].shape == (0,)
    assert hist.beta_changes["step"].shape == (0,)


def test_attributes_hold_config_and_versions(tmp_path):
    path = tmp_path / "run.h5"
    RunLog(path, config=CONFIG, latent_dim=3).close()
    with h5py.File(path, "r") as fh:
        attrs = dict(fh.attrs)
    assert json.loads(attrs["config_json"]) == CONFIG
    assert attrs["objective"] == "beta-h" and attrs["beta"] == 4.0
    assert attrs["optim.lr"] == 5e-4
    assert attrs["latent_dim"] == 3
    assert "T" in attrs["created"]
    for lib in ("torch_version", "h5py_version", "numpy_version"):
        assert attrs[lib]


def test_kl_per_dim_shape_is_checked(tmp_path):
    with RunLog(tmp_path / "run.h5", config={}, latent_dim=4) as log:
        log.append_step(0, {"loss": 1.0}, np.ones(4))
        with pytest.raises(ValueError, match="latent_dim=4"):
            log.append_step(1, {"loss": 1.0}, np.ones(3))
    assert read_runlog(tmp_path / "run.h5").train["kl_per_dim"].shape == (1, 4)


def test_new_key_later_is_nan_filled_and_missing_key_is_nan(tmp_path):
    path = tmp_path / "run.h5"
    with RunLog(path, config={}, latent_dim=2) as log:
        log.append_step(0, {"loss": 1.0}, [0, 0])
        log.flush()
        log.append_step(1, {"loss": 2.0, "capacity": 0.5}, [0, 0])
        log.append_step(2, {"capacity": 0.75}, [0, 0])
    train = read_runlog(path).train
    assert math.isnan(train["capacity"][0]) and train["capacity"][1:].tolist() == [0.5, 0.75]
    assert train["loss"][:2].tolist() == [1.0, 2.0] and math.isnan(train["loss"][2])


def test_bad_metric_name_is_refused_at_append(tmp_path):
    with RunLog(tmp_path / "run.h5", config={}, latent_dim=1) as log:
        with pytest.raises(ValueError, match="a/b"):
            log.append_step(0, {"a/b": 1.0}, [0])
        with pytest.raises(ValueError, match="step"):
            log.append_validation(0, {"step": 1.0})


def test_validation_and_beta_changes(tmp_path):
    path = tmp_path / "run.h5"
    with RunLog(path, config={}, latent_dim=2) as log:
        log.append_step(0, {"loss": 1.0}, [0, 0])
        log.append_validation(100, {"loss": 3.5, "recon": 3.0, "kl": 0.5})
        log.append_validation(200, {"loss": 2.5, "recon": 2.0, "kl": 0.5})
        log.record_beta_change(150, 8.0, 8.0 * 10 / 4096)
    hist = read_runlog(path)
    assert hist.validation["step"].tolist() == [100, 200]
    assert hist.validation["loss"].tolist() == [3.5, 2.5]
    assert hist.validation["recon"].tolist() == [3.0, 2.0]
    assert "kl_per_dim" not in hist.validation
    assert hist.beta_changes["step"].tolist() == [150]
    assert hist.beta_changes["beta"].tolist() == [8.0]
    assert hist.beta_changes["beta_norm"].tolist() == [8.0 * 10 / 4096]


def test_rows_are_buffered_until_flush_rows(tmp_path):
    path = tmp_path / "run.h5"
    log = RunLog(path, config={}, latent_dim=1, flush_seconds=3600, flush_rows=5)
    for i in range(4):
        log.append_step(i, {"loss": float(i)}, [0])
    assert read_runlog(path).train["step"].size == 0
    assert log.pending_rows == 4
    log.append_step(4, {"loss": 4.0}, [0])
    assert log.pending_rows == 0
    assert read_runlog(path).train["step"].tolist() == [0, 1, 2, 3, 4]
    log.close()


def test_rows_are_flushed_after_flush_seconds(tmp_path):
    path = tmp_path / "run.h5"
    log = RunLog(path, config={}, latent_dim=1, flush_seconds=0.05, flush_rows=10_000)
    log.append_step(0, {"loss": 0.0}, [0])
    time.sleep(0.1)
    log.append_step(1, {"loss": 1.0}, [0])
    assert read_runlog(path).train["step"].tolist() == [0, 1]
    log.close()


def test_close_is_idempotent_and_final(tmp_path):
    log = RunLog(tmp_path / "run.h5", config={}, latent_dim=1)
    log.append_step(0, {"loss": 0.0}, [0])
    log.close()
    log.close()
    assert log.closed
    with pytest.raises(RunLogError, match="closed"):
        log.append_step(1, {"loss": 1.0}, [0])


def test_reopen_for_append_continues(tmp_path):
    path = tmp_path / "run.h5"
    with RunLog(path, config=CONFIG, latent_dim=3) as log:
        for i in range(5):
            log.append_step(i, _metrics(i), _kl(i))
        log.append_validation(4, {"loss": 1.0})
    created = read_attr(path, "created")
    with RunLog(path, config={**CONFIG, "steps": 10}, latent_dim=3) as log:
        for i in range(5, 10):
            log.append_step(i, _metrics(i), _kl(i))
        log.append_validation(9, {"loss": 0.5})
    hist = read_runlog(path)
    assert hist.train["step"].tolist() == list(range(10))
    assert hist.train["loss"].tolist() == [_metrics(i)["loss"] for i in range(10)]
    assert hist.train["kl_per_dim"].shape == (10, 3)
    assert hist.validation["loss"].tolist() == [1.0, 0.5]
    assert hist.config["steps"] == 10
    assert read_attr(path, "created") == created
    assert len(json.loads(read_attr(path, "resumed"))) == 1


def test_reopen_with_other_latent_dim_fails(tmp_path):
    path = tmp_path / "run.h5"
    RunLog(path, config={}, latent_dim=3).close()
    with pytest.raises(RunLogError, match="latent_dim=3"):
        RunLog(path, config={}, latent_dim=5)


def read_attr(path, name):
    with h5py.File(path, "r") as fh:
        return fh.attrs[name]


def test_truncate_after_drops_later_rows_on_disk_and_in_buffer(tmp_path):
    path = tmp_path / "run.h5"
    with RunLog(path, config={}, latent_dim=2, flush_rows=10_000, flush_seconds=3600) as log:
        for i in range(10):
            log.append_step(i * 10, {"loss": float(i)}, [i, i])
        log.append_validation(30, {"loss": 3.0})
        log.append_validation(70, {"loss": 7.0})
        log.record_beta_change(20, 2.0, 0.1)
        log.record_beta_change(60, 6.0, 0.3)
        log.flush()
        log.append_step(100, {"loss": 10.0}, [10, 10])  # buffered, also dropped
        log.truncate_after(45)
        assert log.pending_rows == 0
    hist = read_runlog(path)
    assert hist.train["step"].tolist() == [0, 10, 20, 30, 40]
    assert hist.train["loss"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert hist.train["kl_per_dim"][:, 0].tolist() == [0, 1, 2, 3, 4]
    assert hist.validation["step"].tolist() == [30]
    assert hist.beta_changes["step"].tolist() == [20]
    # Resuming after the truncation appends after the kept rows.
    with RunLog(path, config={}, latent_dim=2) as log:
        log.append_step(50, {"loss": 5.5}, [5, 5])
    assert read_runlog(path).train["loss"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.5]


def test_truncate_after_handles_steps_out_of_order(tmp_path):
    path = tmp_path / "run.h5"
    with RunLog(path, config={}, latent_dim=1) as log:
        for s in (0, 10, 20, 5, 15):  # an earlier resume without truncation
            log.append_step(s, {"loss": float(s)}, [s])
        log.flush()
        log.truncate_after(10)
    train = read_runlog(path).train
    assert train["step"].tolist() == [0, 10, 5]
    assert train["loss"].tolist() == [0.0, 10.0, 5.0]
    assert train["kl_per_dim"][:, 0].tolist() == [0, 10, 5]


def test_read_while_writer_open_same_process(tmp_path):
    path = tmp_path / "run.h5"
    log = RunLog(path, config=CONFIG, latent_dim=3, flush_rows=10_000, flush_seconds=3600)
    try:
        for batch in range(3):
            for i in range(batch * 4, batch * 4 + 4):
                log.append_step(i, _metrics(i), _kl(i))
            log.flush()
            hist = read_runlog(path)
            n = (batch + 1) * 4
            assert hist.train["step"].tolist() == list(range(n))
            assert hist.train["kl_per_dim"].shape == (n, 3)
            # A plain h5py handle opened by someone else also sees every flushed row.
            with h5py.File(path, "r") as fh:
                assert fh["train/loss"][:].tolist() == [_metrics(i)["loss"] for i in range(n)]
        log.append_step(99, _metrics(99), _kl(99))  # not flushed: not visible
        assert read_runlog(path).train["step"].size == 12
    finally:
        log.close()


def test_read_while_writer_open_subprocess_reader(tmp_path):
    path = tmp_path / "run.h5"
    reader = """
        import sys
        from bvae_desktop.core.runlog import read_runlog
        hist = read_runlog(sys.argv[1])
        print(hist.train["step"].size, float(hist.train["loss"].sum()), hist.validation["step"].size)
    """
    with RunLog(path, config=CONFIG, latent_dim=3, flush_rows=10_000, flush_seconds=3600) as log:
        for batch in range(2):
            for i in range(batch * 50, batch * 50 + 50):
                log.append_step(i, _metrics(i), _kl(i))
            log.append_validation(batch, {"loss": 1.0})
            log.flush()
            out = _run_python(reader, path)
            assert out.returncode == 0, out.stderr
            n = (batch + 1) * 50
            expected = sum(_metrics(i)["loss"] for i in range(n))
            assert out.stdout.split() == [str(n), repr(float(expected)), str(batch + 1)]


@needs_file_locks
def test_a_program_holding_the_file_open_neither_blocks_the_writer_nor_sees_a_torn_file(tmp_path):
    # Format 1 had to wait for such a program (a lock-file turnstile); the snapshot is now replaced
    # whole, so the writer never waits and the program keeps reading the complete file it opened.
    path = tmp_path / "run.h5"
    log = RunLog(path, config={}, latent_dim=1, flush_rows=2, flush_seconds=3600, lock_timeout=0.6)
    log.append_step(-1, {"loss": -1.0}, [0])
    log.flush()
    seen = []
    with _another_program_holds_open(path, seen):
        start = time.monotonic()
        for i in range(5):
            log.append_step(i, {"loss": float(i)}, [0])
        assert log.flush() is True
        assert time.monotonic() - start < 0.5
        assert log.pending_rows == 0
        assert read_runlog(path).train["step"].tolist() == [-1, 0, 1, 2, 3, 4]
    assert seen == [-1]  # the whole file as it was when the program opened it
    log.close()
    assert read_runlog(path).train["step"].tolist() == [-1, 0, 1, 2, 3, 4]


def test_crash_after_flush_keeps_flushed_rows(tmp_path):
    path = tmp_path / "run.h5"
    writer = """
        import os, sys
        from bvae_desktop.core.runlog import RunLog
        log = RunLog(sys.argv[1], config={"beta": 4.0}, latent_dim=2, flush_rows=10_000, flush_seconds=3600)
        for i in range(20):
            log.append_step(i, {"loss": float(i)}, [i, -i])
        log.record_beta_change(10, 8.0, 0.01)
        log.flush()
        for i in range(20, 30):
            log.append_step(i, {"loss": float(i)}, [i, -i])  # buffered only: lost in the crash
        os._exit(3)
    """
    out = _run_python(writer, path)
    assert out.returncode == 3, out.stderr
    hist = read_runlog(path)
    assert hist.train["step"].tolist() == list(range(20))
    assert hist.train["kl_per_dim"][:, 1].tolist() == [-i for i in range(20)]
    assert hist.beta_changes["beta"].tolist() == [8.0]
    # Resuming after the crash works: no stale "open for writing" flag blocks the file.
    with RunLog(path, config={"beta": 4.0}, latent_dim=2) as log:
        log.append_step(20, {"loss": 20.0}, [20, -20])
    assert read_runlog(path).train["step"].tolist() == list(range(21))


def test_export_csv_train(tmp_path):
    path = tmp_path / "run.h5"
    with RunLog(path, config={}, latent_dim=2) as log:
        log.append_step(0, {"recon": 2.5, "loss": 3.0}, [0.1, 0.2])
        log.append_step(1, {"recon": 1.5, "loss": 2.0, "capacity": 0.5}, [0.3, 1e-8])
    out = tmp_path / "out" / "train.csv"
    export_csv(path, out)
    with open(out, newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["step", "capacity", "loss", "recon", "kl_0", "kl_1"]
    assert rows[1] == ["0", "", "3.0", "2.5", "0.1", "0.2"]
    assert rows[2][:4] == ["1", "0.5", "2.0", "1.5"]
    assert np.float32(rows[2][4]) == np.float32(0.3) and np.float32(rows[2][5]) == np.float32(1e-8)
    assert len(rows) == 3
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".tmp")]


def test_export_csv_validation(tmp_path):
    path = tmp_path / "run.h5"
    with RunLog(path, config={}, latent_dim=2) as log:
        log.append_validation(100, {"loss": 1.25, "kl": 0.5})
    out = tmp_path / "val.csv"
    export_csv(path, out, group="validation")
    assert out.read_text().splitlines() == ["step,kl,loss", "100,0.5,1.25"]
    with pytest.raises(ValueError, match="group"):
        export_csv(path, out, group="nope")


def test_error_on_non_hdf5_file_names_the_file(tmp_path):
    bad = tmp_path / "notes.h5"
    bad.write_text("not hdf5 at all")
    with pytest.raises(RunLogError, match="notes.h5"):
        read_runlog(bad)
    with pytest.raises(RunLogError, match="notes.h5"):
        RunLog(bad, config={}, latent_dim=2)
    with pytest.raises(RunLogError, match="notes.h5"):
        export_csv(bad, tmp_path / "x.csv")


def test_error_on_missing_file_and_foreign_hdf5(tmp_path):
    with pytest.raises(RunLogError, match="missing.h5.*does not exist"):
        read_runlog(tmp_path / "missing.h5")
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as fh:
        fh["x"] = np.arange(3)
    with pytest.raises(RunLogError, match="foreign.h5.*not a bvae_desktop run log"):
        read_runlog(foreign)


def test_reader_thread_while_writer_thread_appends(tmp_path):
    import threading

    path = tmp_path / "run.h5"
    log = RunLog(path, config={}, latent_dim=4, flush_rows=20, flush_seconds=3600)
    log.append_step(0, {"loss": 0.0}, np.zeros(4))
    log.flush()
    seen, errors, stop = [], [], threading.Event()

    def reader():
        while not stop.is_set():
            try:
                train = read_runlog(path).train
                n = train["step"].size
                assert train["loss"].size == n and train["kl_per_dim"].shape == (n, 4)
                assert train["step"].tolist() == list(range(n))
                seen.append(n)
            except Exception as exc:  # collected and asserted below
                errors.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(1, 1001):
            log.append_step(i, {"loss": float(i)}, np.full(4, i))
            if i % 100 == 0:
                time.sleep(0.02)
    finally:
        stop.set()
        thread.join()
    log.close()
    assert not errors
    assert len(set(seen)) >= 3 and seen == sorted(seen)
    assert read_runlog(path).train["step"].size == 1001


def test_tight_loop_reader_does_not_starve_the_writer(tmp_path):
    path = tmp_path / "run.h5"
    reader = """
        import sys, time
        from bvae_desktop.core.runlog import read_runlog
        print("ready", flush=True)
        counts, end = [], time.monotonic() + 1.0
        while time.monotonic() < end:
            counts.append(read_runlog(sys.argv[1]).train["step"].size)
        print(len(set(counts)))
    """
    log = RunLog(path, config={}, latent_dim=2, flush_rows=50, flush_seconds=3600)
    log.append_step(0, {"loss": 0.0}, [0, 0])
    log.flush()
    step, most_pending = 1, 0
    with subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(reader), str(path)], stdout=subprocess.PIPE, text=True, env=_env()
    ) as proc:
        assert proc.stdout.readline().strip() == "ready"
        while proc.poll() is None:
            log.append_step(step, {"loss": float(step)}, [0, 0])
            most_pending = max(most_pending, log.pending_rows)
            step += 1
            time.sleep(0.001)
        distinct = int(proc.stdout.read().split()[-1])
    log.close()
    assert most_pending < 400, most_pending  # without the turnstile this grows with every step
    assert distinct >= 3  # the reader saw the log grow
    assert read_runlog(path).train["step"].size == step


def test_the_run_folder_holds_the_snapshot_and_its_hidden_journal(tmp_path):
    path = tmp_path / "run.h5"
    log = RunLog(path, config={}, latent_dim=1)
    log.append_step(0, {"loss": 0.0}, [0])
    log.flush()
    during = sorted(p.name for p in tmp_path.iterdir())
    log.close()
    assert during == sorted(p.name for p in tmp_path.iterdir()) == [".run.h5.journal", "run.h5"]
    assert (tmp_path / ".run.h5.journal").stat().st_size == 32  # left empty: the snapshot holds every row


def test_an_empty_file_is_started_as_a_new_log(tmp_path):
    path = tmp_path / "run.h5"
    path.touch()
    with RunLog(path, config={"beta": 1.0}, latent_dim=2) as log:
        log.append_step(0, {"loss": 1.0}, [0, 0])
    assert read_runlog(path).train["step"].tolist() == [0]


def test_rows_of_a_half_done_flush_are_dropped_and_rewritten(tmp_path):
    path = tmp_path / "run.h5"
    with RunLog(path, config={}, latent_dim=2) as log:
        log.append_step(0, {"loss": 0.0}, [0, 0])
    with h5py.File(path, "r+") as fh:  # as if a flush died after writing "loss" but before "step"
        fh["train/loss"].resize(3, axis=0)
        fh["train/loss"][1:] = [7.0, 7.0]
    assert read_runlog(path).train["loss"].tolist() == [0.0]
    with RunLog(path, config={}, latent_dim=2) as log:
        log.append_step(1, {"loss": 1.0}, [1, 1])
    train = read_runlog(path).train
    assert train["step"].tolist() == [0, 1] and train["loss"].tolist() == [0.0, 1.0]
