"""Fault campaign for the run log (issue 15): a full disk, a kill at any moment, damaged format-1 files,
and readers racing the writer. Most end with a resume (`RunLog` + `truncate_after`, as the trainer does)
that must keep each row up to the checkpoint exactly once."""

import errno
import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

import bvae_desktop.core.runlog as runlog
from bvae_desktop.core.runlog import RunLog, RunLogError, read_runlog

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG = {"objective": "beta-h", "beta": 4.0}


def _metrics(step):
    return {"loss": 1000.0 - step * 0.5, "recon": 500.0 - step * 0.25, "kl": 1.0 + step / 7}


def _kl(step, dim=3):
    return [0.1 * step + j for j in range(dim)]


def _append(log, steps):
    for step in steps:
        log.append_step(step, _metrics(step), _kl(step))


def _assert_rows(path, steps):
    """The train rows are exactly `steps`, in order, each with the values it was logged with."""
    train = read_runlog(path).train
    assert train["step"].tolist() == list(steps)
    assert train["loss"].tolist() == [_metrics(s)["loss"] for s in steps]
    np.testing.assert_array_equal(
        train["kl_per_dim"], np.array([_kl(s) for s in steps], dtype=np.float32).reshape(-1, 3)
    )


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def _abandon(log):
    """What a kill leaves: the writer just stops (its journal descriptor is released for the test's sake)."""
    log._journal.drop()


def _env():
    return dict(os.environ, PYTHONPATH=str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))


class _Disk:
    """Fault injector for runlog's byte writers: while `full`, a write puts half its bytes down, then
    fails with ENOSPC, as a disk filling up mid-write does."""

    def __init__(self):
        self.full = False
        self.refused = 0

    def write(self, fd, data):
        if not self.full:
            runlog._write_all(fd, data)
            return
        self.refused += 1
        os.write(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, "No space left on device")


@pytest.fixture
def disk(monkeypatch):
    disk = _Disk()
    monkeypatch.setattr(runlog, "_journal_write", disk.write)
    monkeypatch.setattr(runlog, "_snapshot_write", disk.write)
    return disk


@pytest.fixture
def no_fsync(monkeypatch):
    """For the tests that replay hundreds of kills: fsync guards against power loss, not their subject."""
    monkeypatch.setattr(runlog, "_fsync", lambda fd: None)
    monkeypatch.setattr(runlog, "_fsync_folder", lambda folder: None)


def _warnings(caplog, text):
    return [r for r in caplog.records if r.levelno >= logging.WARNING and text in r.getMessage()]


# -- (a) a full disk ----------------------------------------------------------------------------------


def test_a_full_disk_during_appends_and_flushes_loses_nothing(tmp_path, disk, caplog):
    path = tmp_path / "run.h5"
    log = RunLog(path, config=CONFIG, latent_dim=3, flush_rows=5, flush_seconds=3600)
    _append(log, range(1, 21))
    assert log.flush() is True
    before = path.read_bytes()
    disk.full = True
    with caplog.at_level(logging.WARNING, logger=runlog.__name__):
        _append(log, range(21, 61))  # automatic flushes hit the full disk: no exception
        log.record_beta_change(40, 8.0, 0.01)
        assert log.flush() is False  # reported, not raised
        assert log.flush() is False
    assert disk.refused >= 2
    assert log.pending_rows == 41
    assert path.read_bytes() == before  # the snapshot was never touched
    assert _leftovers(tmp_path) == []  # the half-written temporary snapshots were removed
    _assert_rows(path, range(1, 21))  # the half-written journal records were cut off again
    assert len(_warnings(caplog, "Cannot append to the journal of run log")) == 1  # warned once for each
    assert len(_warnings(caplog, "Cannot rewrite run log")) == 1
    assert "No space left on device" in caplog.text

    disk.full = False  # the disk frees up: the next flush writes everything
    with caplog.at_level(logging.WARNING, logger=runlog.__name__):
        assert log.flush() is True
    assert "written again" in caplog.text
    assert log.pending_rows == 0
    _assert_rows(path, range(1, 61))
    log.close()
    _assert_rows(path, range(1, 61))
    assert read_runlog(path).beta_changes["step"].tolist() == [40]


def test_a_full_disk_during_a_compaction_leaves_the_snapshot_as_it_was(tmp_path, monkeypatch, caplog):
    path = tmp_path / "run.h5"
    disk = _Disk()
    monkeypatch.setattr(runlog, "_snapshot_write", disk.write)  # the journal still has room
    log = RunLog(path, config=CONFIG, latent_dim=3, flush_rows=1000, flush_seconds=3600)
    _append(log, range(1, 11))
    assert log.flush() is True
    before = path.read_bytes()
    disk.full = True
    _append(log, range(11, 31))
    with caplog.at_level(logging.WARNING, logger=runlog.__name__):
        assert log.flush() is True  # the rows are safe in the fsync'd journal
    assert disk.refused == 1 and len(_warnings(caplog, "Cannot rewrite run log")) == 1
    assert path.read_bytes() == before and _leftovers(tmp_path) == []
    with h5py.File(path, "r") as fh:  # a plain HDF5 reader sees the complete old snapshot
        assert fh["train/step"][:].tolist() == list(range(1, 11))
    _assert_rows(path, range(1, 31))  # read_runlog adds the journal's rows

    disk.full = False
    _append(log, range(31, 41))
    assert log.flush() is True
    with h5py.File(path, "r") as fh:
        assert fh["train/step"][:].tolist() == list(range(1, 41))
    assert (tmp_path / ".run.h5.journal").stat().st_size == runlog._JOURNAL_HEADER  # emptied
    log.close()
    _assert_rows(path, range(1, 41))


def test_a_failing_fsync_keeps_the_old_snapshot(tmp_path, monkeypatch):
    path = tmp_path / "run.h5"
    log = RunLog(path, config=CONFIG, latent_dim=3, flush_rows=1000, flush_seconds=3600)
    _append(log, range(1, 6))
    log.flush()
    before = path.read_bytes()

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(runlog, "_fsync", no_space)
    _append(log, range(6, 11))
    assert log.flush() is False
    assert path.read_bytes() == before and _leftovers(tmp_path) == []
    monkeypatch.undo()
    assert log.flush() is True
    log.close()
    _assert_rows(path, range(1, 11))


def test_a_full_disk_at_close_keeps_the_journal_for_the_resume(tmp_path, monkeypatch):
    path = tmp_path / "run.h5"
    disk = _Disk()
    monkeypatch.setattr(runlog, "_snapshot_write", disk.write)
    log = RunLog(path, config=CONFIG, latent_dim=3, flush_rows=1000, flush_seconds=3600)
    _append(log, range(1, 11))
    log.flush()
    disk.full = True
    _append(log, range(11, 21))
    log.close()  # no exception
    assert (tmp_path / ".run.h5.journal").exists()
    _assert_rows(path, range(1, 21))
    disk.full = False
    with RunLog(path, config=CONFIG, latent_dim=3) as resumed:
        resumed.truncate_after(15)
        _append(resumed, range(16, 19))
    _assert_rows(path, range(1, 19))
    assert (tmp_path / ".run.h5.journal").stat().st_size == runlog._JOURNAL_HEADER  # emptied


def test_a_resume_on_a_full_disk_truncates_once_the_disk_frees_up(tmp_path, disk):
    path = tmp_path / "run.h5"
    with RunLog(path, config=CONFIG, latent_dim=3) as log:
        _append(log, range(1, 31))
        log.append_validation(10, {"loss": 1.0})
        log.append_validation(30, {"loss": 3.0})
    disk.full = True
    log = RunLog(path, config={**CONFIG, "steps": 100}, latent_dim=3)  # no exception
    log.truncate_after(20)  # no exception
    _append(log, range(21, 26))
    _assert_rows(path, range(1, 31))  # nothing could be written: the old history stands, whole
    disk.full = False
    assert log.flush() is True
    _assert_rows(path, range(1, 26))
    assert read_runlog(path).validation["step"].tolist() == [10]
    log.close()
    assert read_runlog(path).config["steps"] == 100


def test_a_new_log_on_a_full_disk_is_a_run_log_error_naming_the_file(tmp_path, disk):
    disk.full = True
    with pytest.raises(RunLogError, match=r"run\.h5.*No space left"):
        RunLog(tmp_path / "run.h5", config=CONFIG, latent_dim=3)
    assert _leftovers(tmp_path) == []


def test_a_rename_refused_while_a_reader_holds_the_file_keeps_the_journal(tmp_path, monkeypatch):
    # Windows refuses os.replace over a file another process has open: the journal holds the rows.
    path = tmp_path / "run.h5"
    log = RunLog(path, config=CONFIG, latent_dim=3, flush_rows=1000, flush_seconds=3600, lock_timeout=0.05)
    _append(log, range(1, 6))
    log.flush()

    def refuse(source, target, deadline):
        raise PermissionError(errno.EACCES, "The process cannot access the file", str(target))

    monkeypatch.setattr(runlog, "_replace", refuse)
    _append(log, range(6, 11))
    assert log.flush() is True
    _assert_rows(path, range(1, 11))
    log.close()
    assert _leftovers(tmp_path) == [] and (tmp_path / ".run.h5.journal").exists()
    monkeypatch.undo()
    with RunLog(path, config=CONFIG, latent_dim=3) as resumed:
        resumed.truncate_after(10)
    _assert_rows(path, range(1, 11))
    assert (tmp_path / ".run.h5.journal").stat().st_size == runlog._JOURNAL_HEADER


def test_a_journal_that_cannot_be_replaced_is_appended_to(tmp_path, monkeypatch):
    # After a compaction the journal is replaced by an empty one; when that is refused (Windows, a
    # reader has it open), the old journal goes on: its records up to the snapshot are skipped.
    path = tmp_path / "run.h5"
    journal = tmp_path / ".run.h5.journal"
    log = RunLog(path, config=CONFIG, latent_dim=3, flush_rows=3, flush_seconds=3600)
    replace = runlog._replace

    def refuse_the_journal(source, target, deadline):
        if Path(target) == journal:
            raise PermissionError(errno.EACCES, "The process cannot access the file", str(target))
        replace(source, target, deadline)

    monkeypatch.setattr(runlog, "_replace", refuse_the_journal)
    _append(log, range(1, 10))  # journaled, three at a time
    grown = journal.stat().st_size
    assert log.flush() is True  # a compaction: the snapshot now holds rows 1-9, the journal stays
    assert journal.stat().st_size == grown and _leftovers(tmp_path) == []
    _append(log, range(10, 16))
    assert journal.stat().st_size > grown
    _assert_rows(path, range(1, 16))  # the old records are not read twice
    _abandon(log)
    monkeypatch.undo()
    _resume(path, 14).close()
    _assert_rows(path, range(1, 15))


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_FSIZE and SIGXFSZ as on Linux")
def test_a_real_file_size_limit_mid_run_crashes_nothing(tmp_path):
    # The kernel itself refuses the writes (EFBIG past RLIMIT_FSIZE), part-way through a write:
    # no monkeypatching. The process must go on, then write everything once the limit is lifted.
    child = """
        import json, os, resource, signal, sys
        from bvae_desktop.core.runlog import RunLog, read_runlog
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of being killed
        path = sys.argv[1]
        def row(s):
            return {"loss": 1000.0 - s * 0.5, "recon": 500.0 - s * 0.25, "kl": 1.0 + s / 7}
        log = RunLog(path, config={}, latent_dim=3, flush_rows=20, flush_seconds=3600)
        for s in range(1, 201):
            log.append_step(s, row(s), [0.1 * s, 0.1 * s + 1, 0.1 * s + 2])
        assert log.flush()
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (os.path.getsize(path) - 1, hard))  # no new snapshot fits
        for s in range(201, 1201):
            log.append_step(s, row(s), [0.1 * s, 0.1 * s + 1, 0.1 * s + 2])
        refused = log.flush()
        during = read_runlog(path).train["step"].tolist()
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        after = log.flush()
        log.close()
        print(json.dumps({"refused": refused, "during": during, "after": after}))
    """
    path = tmp_path / "run.h5"
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(child), str(path)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["refused"] is False and result["after"] is True
    during = result["during"]
    assert 200 <= len(during) < 1200 and during == list(range(1, len(during) + 1))  # a consistent prefix
    assert "File too large" in out.stderr  # the one warning
    _assert_rows(path, range(1, 1201))
    assert _leftovers(tmp_path) == []


# -- (b) a kill at any moment, each partial state made by hand ---------------------------------------


def _journaled_log(path, *, snapshot_steps, journal_steps):
    """A writer killed with `snapshot_steps` in the snapshot and `journal_steps` only in its journal;
    returns the snapshot's and the journal's bytes."""
    log = RunLog(path, config=CONFIG, latent_dim=3, flush_rows=1, flush_seconds=3600)
    _append(log, snapshot_steps)
    log.flush()
    log._compaction_s = 3600.0  # as if compactions were slow: from here on, rows go to the journal only
    for step in journal_steps:
        if step % 5 == 0:
            log.append_validation(step, {"loss": float(step)})
        log.append_step(step, _metrics(step), _kl(step))
    _abandon(log)
    return path.read_bytes(), (path.parent / ".run.h5.journal").read_bytes()


def _log_id(path):
    with h5py.File(path, "r") as fh:
        return bytes.fromhex(str(fh.attrs["journal_id"]))


def _resume(path, checkpoint_step):
    log = RunLog(path, config=CONFIG, latent_dim=3)
    log.truncate_after(checkpoint_step)
    return log


def test_a_journal_cut_at_every_byte_of_its_last_record(tmp_path, no_fsync):
    path = tmp_path / "run.h5"
    snapshot, journal = _journaled_log(path, snapshot_steps=range(1, 11), journal_steps=range(11, 21))
    _base, records = runlog._decode_records(journal, _log_id(path))
    assert [r.step for r in records][-3:] == [19, 20, 20]  # ..., train 19, validation 20, train 20
    last_start, last_end = records[-2].end, records[-1].end
    assert last_end == len(journal)
    journal_file = tmp_path / ".run.h5.journal"
    for cut in range(last_start, last_end + 1):
        path.write_bytes(snapshot)
        journal_file.write_bytes(journal[:cut])
        _assert_rows(path, range(1, 21 if cut == last_end else 20))  # a reader sees a whole prefix
        _resume(path, 19).close()  # the last checkpoint was at step 19
        _assert_rows(path, range(1, 20))
        assert read_runlog(path).validation["step"].tolist() == [15]
    with RunLog(path, config=CONFIG, latent_dim=3) as log:  # training goes on from the checkpoint
        _append(log, [20])
    _assert_rows(path, range(1, 21))


@pytest.mark.parametrize("garbage", [b"\x00" * 40, b"RLJr\xff\xff\xff\x7f", bytes(range(256)), b"RLJr" + b"\x10" * 60])
def test_garbage_after_the_journal_is_ignored(tmp_path, garbage):
    path = tmp_path / "run.h5"
    snapshot, journal = _journaled_log(path, snapshot_steps=range(1, 6), journal_steps=range(6, 13))
    (tmp_path / ".run.h5.journal").write_bytes(journal + garbage)  # a kill or a full disk mid-append
    _assert_rows(path, range(1, 13))
    log = _resume(path, 12)
    _append(log, [13])
    log.close()
    _assert_rows(path, range(1, 14))


def test_a_journal_cut_at_every_record_boundary_resumes_exactly(tmp_path, no_fsync):
    path = tmp_path / "run.h5"
    snapshot, journal = _journaled_log(path, snapshot_steps=range(1, 4), journal_steps=range(4, 16))
    ends = [runlog._JOURNAL_HEADER] + [r.end for r in runlog._decode_records(journal, _log_id(path))[1]]
    for end in ends:
        for cut in (end - 1, end, end + 1):
            if not runlog._JOURNAL_HEADER - 1 <= cut <= len(journal):
                continue
            path.write_bytes(snapshot)
            (tmp_path / ".run.h5.journal").write_bytes(journal[:cut])
            kept = read_runlog(path).train["step"].tolist()
            assert kept == list(range(1, len(kept) + 1)) and len(kept) >= 3
            log = _resume(path, len(kept))
            _append(log, range(len(kept) + 1, 16))
            log.close()
            _assert_rows(path, range(1, 16))


def test_a_kill_between_the_new_snapshot_and_emptying_the_journal(tmp_path):
    path = tmp_path / "run.h5"
    _, journal = _journaled_log(path, snapshot_steps=range(1, 6), journal_steps=range(6, 11))
    with RunLog(path, config=CONFIG, latent_dim=3):  # its open compacts: the snapshot now has rows 1-10
        pass
    (tmp_path / ".run.h5.journal").write_bytes(journal)  # ... and the journal was not emptied yet
    _assert_rows(path, range(1, 11))  # its records are already in the snapshot: not read twice
    log = _resume(path, 10)
    _append(log, [11])
    log.close()
    _assert_rows(path, range(1, 12))


def test_a_stale_temporary_snapshot_is_ignored_then_removed(tmp_path):
    path = tmp_path / "run.h5"
    with RunLog(path, config=CONFIG, latent_dim=3) as log:
        _append(log, range(1, 11))
    stale = tmp_path / ".run.h5.k1ll3d00.tmp"
    stale.write_bytes(path.read_bytes()[:3000])  # a compaction killed mid-write
    _assert_rows(path, range(1, 11))
    _resume(path, 5).close()
    _assert_rows(path, range(1, 6))
    assert stale.exists()  # young: it might belong to a write going on right now
    old = time.time() - 3600
    os.utime(stale, (old, old))
    _resume(path, 5).close()
    assert not stale.exists()


def test_a_journal_of_another_log_is_not_merged(tmp_path):
    path = tmp_path / "run.h5"
    _journaled_log(path, snapshot_steps=range(1, 4), journal_steps=range(4, 9))
    journal = (tmp_path / ".run.h5.journal").read_bytes()
    path.unlink()  # the user deleted the log but not its hidden journal: a new run starts there
    with RunLog(path, config=CONFIG, latent_dim=3) as log:
        _append(log, [1])
    (tmp_path / ".run.h5.journal").write_bytes(journal)
    _assert_rows(path, [1])
    _resume(path, 1).close()
    _assert_rows(path, [1])


# -- (b) damaged format-1 logs, written in place by earlier versions ----------------------------------


def _write_format1(path, flushes, *, latent_dim=3):
    """A format-1 run log as the old writer made it: datasets grown in place, one flush at a time."""
    with h5py.File(path, "w") as fh:
        fh.attrs.update(
            format="bvae_desktop.runlog",
            format_version=1,
            latent_dim=latent_dim,
            created="2024-01-01T00:00:00+00:00",
            resumed="[]",
            config_json=json.dumps(CONFIG),
            config_keys=json.dumps(["objective", "beta"]),
            objective="beta-h",
            beta=4.0,
        )
        train = fh.create_group("train")
        train.create_dataset("step", (0,), maxshape=(None,), dtype=np.int64, chunks=(4096,), fillvalue=-1)
        kl_rows = (1 << 14) // latent_dim
        train.create_dataset(
            "kl_per_dim", (0, latent_dim), maxshape=(None, latent_dim), dtype=np.float32, chunks=(kl_rows, latent_dim)
        )
        fh.create_group("validation").create_dataset("step", (0,), maxshape=(None,), dtype=np.int64, chunks=(4096,))
        events = fh.create_group("events")
        for key, dtype in (("step", np.int64), ("beta", np.float64), ("beta_norm", np.float64)):
            events.create_dataset(key, (0,), maxshape=(None,), dtype=dtype, chunks=(4096,))
    for steps in flushes:
        with h5py.File(path, "r+") as fh:
            group, n = fh["train"], fh["train/step"].shape[0]
            for key in ("loss", "recon", "kl"):
                if key not in group:
                    group.create_dataset(
                        key, (n,), maxshape=(None,), dtype=np.float64, chunks=(4096,), fillvalue=np.nan
                    )
                _grow(group[key], [_metrics(s)[key] for s in steps])
            _grow(group["kl_per_dim"], [_kl(s) for s in steps])
            _grow(group["step"], steps)  # step last, as format 1 did


def _grow(ds, values):
    n = ds.shape[0]
    ds.resize(n + len(values), axis=0)
    ds[n:] = values


def test_a_format1_log_is_read_and_rewritten_as_format2_by_the_resume(tmp_path):
    path = tmp_path / "run.h5"
    _write_format1(path, [list(range(1, 11)), list(range(11, 21))])
    _assert_rows(path, range(1, 21))
    log = _resume(path, 15)
    with h5py.File(path, "r") as fh:
        assert fh.attrs["format_version"] == 2 and fh.attrs["created"] == "2024-01-01T00:00:00+00:00"
        assert len(json.loads(fh.attrs["resumed"])) == 1
    _append(log, range(16, 18))
    log.close()
    _assert_rows(path, range(1, 18))
    assert read_runlog(path).config == CONFIG


def test_a_format1_log_with_steps_written_twice_keeps_each_step_once(tmp_path):
    # Format 1 retried a flush that had failed after writing: the same rows twice (issue 15).
    path = tmp_path / "run.h5"
    _write_format1(path, [list(range(1, 11)), list(range(6, 11)), [11, 12]])
    assert read_runlog(path).train["step"].size == 17
    _resume(path, 11).close()
    _assert_rows(path, range(1, 12))


def test_a_format1_log_with_a_half_done_flush_and_unwritten_rows(tmp_path):
    path = tmp_path / "run.h5"
    _write_format1(path, [list(range(1, 9))])
    with h5py.File(path, "r+") as fh:
        _grow(fh["train/loss"], [7.0, 7.0])  # a flush that died before "step"
        for key in ("recon", "kl", "kl_per_dim", "step"):  # rows whose chunks never reached the disk
            fh["train"][key].resize(12, axis=0)
        _grow(fh["train/loss"], [0.0] * 2)  # trimmed to the shortest dataset anyway
    assert read_runlog(path).train["step"].tolist() == list(range(1, 9))
    with h5py.File(path, "r+") as fh:  # a sparse hole: zero bytes throughout
        for key in ("loss", "recon", "kl", "kl_per_dim", "step"):
            fh["train"][key].resize(8, axis=0)
            _grow(fh["train"][key], np.zeros((2, *fh["train"][key].shape[1:])))
    _resume(path, 8).close()
    _assert_rows(path, range(1, 9))


def test_a_format1_log_cut_short_anywhere_still_resumes(tmp_path, no_fsync):
    # A disk that filled while format 1 wrote in place left a file shorter than HDF5 expects. Whatever
    # can be read is kept (each step once, with its own values); what cannot is set aside, never lost.
    source = tmp_path / "source.h5"
    _write_format1(source, [list(range(1 + 300 * i, 301 + 300 * i)) for i in range(15)])
    data = source.read_bytes()
    cuts = sorted({*range(0, len(data), len(data) // 25), len(data) - 1, len(data)})
    saved = set()
    for cut in cuts:
        folder = tmp_path / f"cut{cut}"
        folder.mkdir()
        path = folder / "run.h5"
        path.write_bytes(data[:cut])
        log = _resume(path, 4000)
        _append(log, [4001])
        log.close()
        train = read_runlog(path).train
        steps = train["step"].tolist()
        assert steps[-1] == 4001 and steps == sorted(set(steps))
        kept = np.array(steps[:-1], dtype=np.int64)
        assert np.all((train["loss"][:-1] == 1000.0 - kept * 0.5) | np.isnan(train["loss"][:-1]))
        if cut == len(data):
            assert steps == [*range(1, 4001), 4001]
        saved.add(len(steps))
        aside = [p.name for p in folder.iterdir() if ".damaged-" in p.name]
        assert len(aside) <= 1 and (not aside or len(steps) == 1)  # set aside: a new log
    assert len(saved) > 3  # partial salvage happened, not just all or nothing


# -- (c) a real process killed in a burst of appends and flushes --------------------------------------

_WRITER = """
    import json, os, sys
    from pathlib import Path
    from bvae_desktop.core.runlog import RunLog
    path, start = Path(sys.argv[1]), int(sys.argv[2])
    checkpoint = path.with_name("checkpoint.json")
    log = RunLog(path, config={"beta": 4.0}, latent_dim=3, flush_rows=37, flush_seconds=0.01)
    log.truncate_after(start)  # as the trainer does on resume
    step = start
    while True:  # until killed
        step += 1
        log.append_step(step, {"loss": 1000.0 - step * 0.5, "recon": 500.0 - step * 0.25, "kl": 1.0 + step / 7},
                        [0.1 * step, 0.1 * step + 1, 0.1 * step + 2])
        if step % 10 == 0:
            log.append_validation(step, {"loss": float(step)})
        if step % 25 == 0:
            log.record_beta_change(step, float(step), 0.01)
        if step % 50 == 0:  # a checkpoint: flush the log, then write the checkpoint atomically
            log.flush()
            tmp = checkpoint.with_suffix(".tmp")
            tmp.write_text(json.dumps(step))
            os.replace(tmp, checkpoint)
"""


def _checkpoint_step(folder):
    try:
        return json.loads((folder / "checkpoint.json").read_text())
    except (OSError, ValueError):
        return 0


def _kill_when(proc, ready, timeout=60.0):
    """Wait (on a condition, not a fixed time) until `ready()`, then SIGKILL the writer."""
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "the writer made no progress"
            time.sleep(0.005)
    finally:
        proc.kill()
        proc.wait(timeout=30)


def test_a_writer_killed_mid_burst_resumes_without_losing_or_repeating_rows(tmp_path):
    path = tmp_path / "run.h5"
    start = 0
    for target in (150, 400, 900):  # three runs, each resumed from the last one's checkpoint

        def ready(target=target):
            if _checkpoint_step(tmp_path) < target:
                return False
            try:  # and rows past the checkpoint are in the log (journal or snapshot)
                return read_runlog(path, timeout=0.2).train["step"].size > target + 20
            except RunLogError:
                return False

        with subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(_WRITER), str(path), str(start)],
            env=_env(),
            stderr=subprocess.PIPE,
            text=True,
        ) as proc:
            _kill_when(proc, ready)
        checkpoint = _checkpoint_step(tmp_path)
        seen = read_runlog(path).train["step"].tolist()
        assert seen == list(range(1, len(seen) + 1)) and len(seen) >= checkpoint  # a consistent prefix
        with RunLog(path, config={"beta": 4.0}, latent_dim=3) as log:
            log.truncate_after(checkpoint)
        _assert_rows(path, range(1, checkpoint + 1))
        history = read_runlog(path)
        assert history.validation["step"].tolist() == list(range(10, checkpoint + 1, 10))
        assert history.beta_changes["step"].tolist() == list(range(25, checkpoint + 1, 25))
        start = checkpoint
    ours = [n for n in _leftovers(tmp_path) if n.startswith((".run.h5.", "..run.h5.journal."))]
    assert all(runlog._TEMP_NAME.match(n) for n in ours)  # at most what a killed compaction was writing


# -- (d) readers racing the writer ----------------------------------------------------------------------


def _consistent(history):
    train = history.train
    n = train["step"].size
    assert train["step"].tolist() == list(range(1, n + 1))
    assert train["loss"].tolist() == [_metrics(s)["loss"] for s in range(1, n + 1)]
    assert train["kl_per_dim"].shape == (n, 3)
    validation = history.validation["step"].tolist()
    assert validation == list(range(10, 10 * len(validation) + 1, 10))
    return n


def test_readers_in_another_thread_always_see_a_consistent_history(tmp_path):
    path = tmp_path / "run.h5"
    log = RunLog(path, config=CONFIG, latent_dim=3, flush_rows=7, flush_seconds=0.005)
    seen, errors, done, progress = [], [], threading.Event(), threading.Condition()

    def writer():
        try:
            for step in range(1, 3001):
                log.append_step(step, _metrics(step), _kl(step))
                if step % 10 == 0:
                    log.append_validation(step, {"loss": 1.0})
                if step % 400 == 0:
                    log.flush()
                if step % 150 == 0:  # let the reader take a look now and then, so it sees many states
                    with progress:
                        reads = len(seen)
                        progress.wait_for(lambda reads=reads: len(seen) > reads, timeout=10)
        except Exception as exc:  # collected and asserted below
            errors.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        while not done.is_set():
            n = _consistent(read_runlog(path))
            with progress:
                seen.append(n)
                progress.notify_all()
    finally:
        thread.join()
    log.close()
    assert not errors
    assert seen == sorted(seen) and len(set(seen)) >= 10
    assert _consistent(read_runlog(path)) == 3000


def test_a_reader_process_always_sees_a_consistent_history(tmp_path):
    reader = """
        import os, sys
        from bvae_desktop.core.runlog import read_runlog
        path, stop = sys.argv[1], sys.argv[2]
        print("ready", flush=True)
        counts = []
        while True:
            last = os.path.exists(stop)
            train = read_runlog(path).train
            n = train["step"].size
            assert train["step"].tolist() == list(range(1, n + 1)), "torn read"
            assert train["loss"].tolist() == [1000.0 - s * 0.5 for s in range(1, n + 1)], "wrong values"
            counts.append(n)
            if last:
                break
        assert counts == sorted(counts), f"went back in time: {[(a, b) for a, b in zip(counts, counts[1:]) if b < a]}"
        print(len(set(counts)), counts[-1])
    """
    path, stop = tmp_path / "run.h5", tmp_path / "stop"
    log = RunLog(path, config=CONFIG, latent_dim=3, flush_rows=5, flush_seconds=0.005)
    with subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(reader), str(path), str(stop)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    ) as proc:
        assert proc.stdout.readline().strip() == "ready"
        for step in range(1, 3001):  # journal appends, compactions and journal restarts while it reads
            log.append_step(step, _metrics(step), _kl(step))
            if step % 10 == 0:
                time.sleep(0.001)
        log.close()
        stop.touch()
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    distinct, last = map(int, out.split())
    assert last == 3000 and distinct >= 3


def test_a_compaction_between_reading_the_snapshot_and_the_journal_is_retried(tmp_path, monkeypatch):
    path = tmp_path / "run.h5"
    log = RunLog(path, config=CONFIG, latent_dim=3, flush_rows=1, flush_seconds=3600)
    _append(log, range(1, 6))
    log.flush()
    log._compaction_s = 3600.0  # no compaction unless forced
    _append(log, range(6, 11))  # journal only
    read_journal = runlog._read_journal_bytes
    raced = []

    def compaction_comes_first(p):
        if not raced:
            raced.append(True)
            _append(log, range(11, 13))
            log._dirty = True
            assert log._compact()  # the snapshot read before this is now stale; the journal restarts
            _append(log, range(13, 15))
        return read_journal(p)

    monkeypatch.setattr(runlog, "_read_journal_bytes", compaction_comes_first)
    _assert_rows(path, range(1, 15))
    assert raced
    log.close()
