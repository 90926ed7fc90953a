"""The one atomic writer: symlinks, special files, permissions, errors, stale temporaries."""

from __future__ import annotations

import errno
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import mlp_accel as ma
from mlp_accel import _atomic
from mlp_accel._atomic import atomic_write


def _model():
    return ma.MLP([3, 4, 2], backend="numpy", dtype="float64", seed=0)


def _temporaries(directory):
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    try:
        yield
    finally:
        os.umask(old)


def test_symlink_is_written_through_not_replaced(tmp_path):
    target = tmp_path / "real.npz"
    link = tmp_path / "link.npz"
    _model().save(target)
    link.symlink_to(target.name)
    model = ma.MLP([3, 4, 2], backend="numpy", dtype="float64", seed=1)
    model.save(link)
    assert link.is_symlink()
    loaded = ma.load(target, backend="numpy")
    np.testing.assert_array_equal(loaded.get_weights()[0], model.get_weights()[0])


def test_dangling_symlink_creates_its_target(tmp_path):
    link = tmp_path / "link.npz"
    link.symlink_to("made.npz")
    _model().save(link)
    assert link.is_symlink() and (tmp_path / "made.npz").is_file()


def test_symlink_loop_is_a_clear_error(tmp_path):
    (tmp_path / "a").symlink_to("b")
    (tmp_path / "b").symlink_to("a")
    with pytest.raises(OSError, match=r"cannot write .*symbolic links"):
        atomic_write(tmp_path / "a", lambda f: f.write(b"x"))


def test_new_file_follows_the_umask(tmp_path, umask_027):
    path = tmp_path / "m.npz"
    _model().save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640  # 0o666 & ~0o027, not mkstemp's 0o600


def test_replaced_file_keeps_its_mode(tmp_path, umask_027):
    path = tmp_path / "m.npz"
    _model().save(path)
    path.chmod(0o664)  # wider than the umask allows for a new file
    _model().save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o664


def test_directory_is_refused(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    with pytest.raises(IsADirectoryError, match=f"cannot write {target}: it is a directory"):
        _model().save(target)
    assert target.is_dir()


def test_socket_is_refused(tmp_path):
    path = tmp_path / "s"
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(path))
        with pytest.raises(ValueError, match="not a regular file"):
            atomic_write(path, lambda f: f.write(b"x"))
        assert stat.S_ISSOCK(path.stat().st_mode)
    finally:
        sock.close()


def test_fifo_is_written_directly(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    received = {}

    def read():
        with open(fifo, "rb") as f:
            received["data"] = f.read()

    reader = threading.Thread(target=read)
    reader.start()
    model = _model()
    model.save(fifo)
    reader.join(30)
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    copy = tmp_path / "copy.npz"
    copy.write_bytes(received["data"])  # a streamed zip, still a valid model file
    loaded = ma.load(copy, backend="numpy")
    np.testing.assert_array_equal(loaded.get_weights()[2], model.get_weights()[2])
    assert _temporaries(tmp_path) == []


@pytest.mark.skipif(not os.path.exists("/dev/null"), reason="no /dev/null")
def test_dev_null_takes_a_model():
    _model().save("/dev/null")  # zipfile must not trust /dev/null's tell()
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")
def test_dev_full_reports_no_space_and_stays_a_device():
    with pytest.raises(OSError, match="cannot write /dev/full: No space left") as info:
        atomic_write("/dev/full", lambda f: f.write(b"x" * 100_000))
    assert info.value.errno == errno.ENOSPC
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)


def test_failure_names_the_users_path_not_the_temporary(tmp_path):
    path = tmp_path / "m.npz"

    def fail(f):
        raise OSError(errno.ENOSPC, "No space left on device", f.name)

    with pytest.raises(OSError) as info:
        atomic_write(path, fail)
    assert str(path) in str(info.value) and ".tmp" not in str(info.value)
    assert info.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []


def test_missing_directory_names_the_users_path(tmp_path):
    path = tmp_path / "no" / "m.npz"
    with pytest.raises(FileNotFoundError, match=f"cannot write {path}"):
        _model().save(path)


def test_file_and_directory_are_fsynced(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def spy(fd):
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    atomic_write(tmp_path / "f", lambda f: f.write(b"x"))
    assert synced == [False, True]


# -- stale temporaries -------------------------------------------------------------------------
_KILLED_WRITER = """
import sys, time
from mlp_accel._atomic import atomic_write

def write(f):
    f.write(b"x" * 100_000)
    f.flush()
    print("writing", flush=True)
    time.sleep(120)

atomic_write(sys.argv[1], write)
"""


def test_temporary_of_a_killed_save_is_cleaned_by_the_next_save(tmp_path):
    path = tmp_path / "m.npz"
    _model().save(path)
    writer = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert writer.stdout.readline().strip() == "writing"
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        writer.stdout.close()
    assert len(_temporaries(tmp_path)) == 1  # what SIGKILL leaves
    _model().save(path)
    assert _temporaries(tmp_path) == []
    assert ma.load(path, backend="numpy").layers == (3, 4, 2)


def test_only_stale_temporaries_of_the_same_target_are_removed(tmp_path):
    path = tmp_path / "m.npz"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        host = _atomic._host_tag()
        live = tmp_path / f".m.npz.{sleeper.pid}-{host}-0123abcd.tmp"  # a writer still running
        other_target = tmp_path / ".other.npz.1-00000000-0123abcd.tmp"
        not_ours = tmp_path / ".m.npz.notes.tmp"
        other_host = tmp_path / ".m.npz.1-ffffffff-0123abcd.tmp"  # pid 1 elsewhere: keep
        old_legacy = tmp_path / ".m.npz.ab_cd123.tmp"  # mkstemp name of an earlier version
        fresh_legacy = tmp_path / ".m.npz.zz_cd123.tmp"
        old_other_host = tmp_path / ".m.npz.1-eeeeeeee-0123abcd.tmp"
        everything = (live, other_target, not_ours, other_host, old_legacy, fresh_legacy)
        for p in (*everything, old_other_host):
            p.write_bytes(b"partial")
        long_ago = time.time() - _atomic.STALE_AGE_S - 60
        for p in (old_legacy, old_other_host, other_target):
            os.utime(p, (long_ago, long_ago))
        _model().save(path)
        left = set(_temporaries(tmp_path))
        assert left == {p.name for p in (live, other_target, not_ours, other_host, fresh_legacy)}
    finally:
        sleeper.kill()
        sleeper.wait()


def test_dead_writer_pid_rule(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    name = f".m.npz.{dead.pid}-{_atomic._host_tag()}-0123abcd.tmp"
    (tmp_path / name).write_bytes(b"partial")
    atomic_write(tmp_path / "m.npz", lambda f: f.write(b"x"))
    assert _temporaries(tmp_path) == []


def test_no_other_module_renames_or_makes_temporaries():
    # Every writer must go through atomic_write; the Numba kernel cache (numba/kernels.py,
    # numba/fused.py) writes generated source to the package's own cache directory, never a
    # user's path.
    root = Path(ma.__file__).parent
    exempt = {"_atomic.py", "backends/numba/fused.py", "backends/numba/kernels.py"}
    offenders = [
        f"{py.relative_to(root)}: {needle}"
        for py in sorted(root.rglob("*.py"))
        if py.relative_to(root).as_posix() not in exempt
        for needle in ("os.replace(", "os.rename(", "mkstemp(", "NamedTemporaryFile(")
        if needle in py.read_text()
    ]
    assert offenders == []
