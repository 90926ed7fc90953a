"""The one way this package writes a file: :func:`atomic_write`.

Every writer (model and checkpoint saves, ``predict --out``, benchmark JSON, plots) goes
through :func:`atomic_write`, so each of the rules below holds for all of them:

- **Regular files are replaced atomically.** The bytes go to a temporary file beside the
  destination, are flushed and fsynced, and the temporary file is renamed over the
  destination (then the directory is fsynced), so a crash mid-write leaves the earlier file
  whole. A file with several hard links is therefore replaced, not edited, as with any atomic
  save.
- **Symlinks are written through**, to their final target (created if the link dangles); the
  link itself stays a link.
- **Permissions**: a new file gets ``0o666`` less the user's umask, like ``open(path, "w")``
  (not ``tempfile.mkstemp``'s ``0o600``); a replaced file keeps its mode.
- **Streams are written directly**: a FIFO or a character device (``/dev/stdout``,
  ``/dev/null``, a terminal, ``/dev/full``) cannot be replaced by a rename, and writing into
  it is what a shell redirection does, so the bytes are written straight to it (no atomicity
  is possible there). A directory, a block device, a socket or anything else is refused.
- **Errors name the user's path**, never the temporary file.
- **Stale temporaries are cleaned.** A process killed mid-write (SIGKILL, power loss) leaves
  its temporary file behind; the next write of the same destination deletes the temporaries
  of that destination that are certainly abandoned (see :func:`_is_stale`).
"""

from __future__ import annotations

import errno
import io
import os
import re
import secrets
import socket
import stat
import time
import zlib
from collections.abc import Callable
from typing import IO, Any, cast

__all__ = ["atomic_write", "is_stream", "STALE_AGE_S"]

#: A temporary file not modified for this long is abandoned whoever wrote it (a live writer
#: modifies its file as it writes; a day covers any save this package makes).
STALE_AGE_S = 24 * 3600

_NEW_FILE_MODE = 0o666  # less the umask, applied by the kernel at creation


def _host_tag() -> str:
    """A short, filename-safe tag of this host, so a pid in a temporary's name is only
    trusted on the host that wrote it (directories may be shared over NFS)."""
    return f"{zlib.crc32(socket.gethostname().encode()):08x}"


def _temp_name(name: str) -> str:
    return f".{name}.{os.getpid()}-{_host_tag()}-{secrets.token_hex(4)}.tmp"


def _temp_pattern(name: str) -> re.Pattern[str]:
    # Ours: ".NAME.PID-HOST-RANDOM.tmp"; also the ".NAME.XXXXXXXX.tmp" that earlier versions
    # made with tempfile.mkstemp (8 characters of its alphabet), which carry no pid.
    return re.compile(
        rf"\.{re.escape(name)}\.(?:(?P<pid>\d+)-(?P<host>[0-9a-f]{{8}})-[0-9a-f]{{8}}|[a-z0-9_]{{8}})\.tmp"
    )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, owned by someone else
        return True
    return True


def _is_stale(match: re.Match[str], st: os.stat_result, now: float) -> bool:
    """Whether a temporary file of ours is abandoned.

    It is when its writer's pid (in its name) no longer runs on this host, or, for a name
    from another host, with a reused pid or from an earlier version, when it has not been
    modified for :data:`STALE_AGE_S`.
    """
    if now - st.st_mtime > STALE_AGE_S:
        return True
    pid, host = match.group("pid"), match.group("host")
    if pid is None or host != _host_tag() or os.name == "nt":  # os.kill(pid, 0) kills on nt
        return False
    return int(pid) != os.getpid() and not _pid_alive(int(pid))


def _remove_stale_temporaries(directory: str, name: str) -> None:
    """Best effort: delete abandoned temporaries of ``directory/name`` (regular files owned
    by this user, matching our naming pattern); never fails the write."""
    pattern = _temp_pattern(name)
    now = time.time()
    try:
        entries = os.scandir(directory)
    except OSError:
        return
    with entries:
        for entry in entries:
            match = pattern.fullmatch(entry.name)
            if match is None:
                continue
            try:
                st = entry.stat(follow_symlinks=False)
                if not stat.S_ISREG(st.st_mode) or (
                    hasattr(os, "getuid") and st.st_uid != os.getuid()
                ):
                    continue
                if _is_stale(match, st, now):
                    os.unlink(entry.path)
            except OSError:
                continue


def _resolve(path: str) -> str:
    """The final target of ``path`` with symlinks followed (it may not exist yet)."""
    real = os.path.realpath(path)
    if os.path.islink(real):  # realpath stops at a symlink loop
        raise OSError(errno.ELOOP, f"cannot write {path}: too many levels of symbolic links")
    return real


def _fsync_directory(directory: str) -> None:
    # Makes the rename itself durable; not every platform or filesystem allows it.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class _Stream(io.RawIOBase):
    """A write-only view of a device or FIFO that says it cannot seek: ``/dev/null`` accepts
    seeks but ``tell()`` stays 0, which makes ``zipfile`` (``np.savez``) write a corrupt end
    record; without ``tell()`` it writes a streamed archive."""

    def __init__(self, f: IO[bytes]) -> None:
        super().__init__()
        self._f = f

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def write(self, data: Any) -> int:
        return self._f.write(data)

    def flush(self) -> None:
        self._f.flush()


def _write_stream(real: str, write: Callable[[IO[bytes]], None]) -> None:
    # Opening a FIFO waits for a reader, as a shell redirection does.
    with open(real, "wb") as f:
        write(cast(IO[bytes], _Stream(f)))
        f.flush()


def _write_replacing(real: str, mode: int | None, write: Callable[[IO[bytes]], None]) -> None:
    directory, name = os.path.split(real)
    _remove_stale_temporaries(directory, name)
    tmp = os.path.join(directory, _temp_name(name))
    # A replaced file's mode is restored with fchmod below; until then the temporary is
    # private to the user, as the data may not be meant for others.
    fd = os.open(
        tmp,
        os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
        _NEW_FILE_MODE if mode is None else 0o600,
    )
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            if mode is not None and hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        if mode is not None and not hasattr(os, "fchmod"):
            os.chmod(tmp, mode)
        os.replace(tmp, real)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_directory(directory)


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], None]) -> None:
    """Write a file by calling ``write(f)`` with ``f`` a binary file object.

    A regular file (or a new one) is replaced atomically: ``path`` holds either its earlier
    content or the complete new content, never a mix. See the module docstring for symlinks,
    permissions, FIFOs and devices, and the cleaning of stale temporaries.

    Parameters
    ----------
    path : path-like
        The destination, as the user gave it.
    write : callable
        Writes the content into the file object it is given.

    Raises
    ------
    IsADirectoryError
        ``path`` is a directory.
    ValueError
        ``path`` is empty, or a block device, a socket or another file that is not regular,
        a FIFO or a character device.
    OSError
        The write failed (no space, no permission, missing directory, ...); the message names
        ``path``, and a replaced file keeps its earlier content.
    """
    path = os.fspath(path)
    if not isinstance(path, str):
        path = os.fsdecode(path)
    if not path:
        raise ValueError("cannot write to an empty path: name a file")
    real = _resolve(path)
    try:
        st = os.stat(real)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise _named(path, exc) from None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(errno.EISDIR, f"cannot write {path}: it is a directory")
    if st is not None and not (
        stat.S_ISREG(st.st_mode) or stat.S_ISFIFO(st.st_mode) or stat.S_ISCHR(st.st_mode)
    ):
        kind = "a block device" if stat.S_ISBLK(st.st_mode) else "not a regular file"
        raise ValueError(f"cannot write {path}: it is {kind}; refusing to replace it")
    try:
        if st is not None and not stat.S_ISREG(st.st_mode):
            _write_stream(real, write)
        else:
            _write_replacing(real, None if st is None else stat.S_IMODE(st.st_mode), write)
    except OSError as exc:
        raise _named(path, exc) from None


def is_stream(path: str | os.PathLike[str]) -> bool:
    """Whether :func:`atomic_write` writes ``path`` directly (a FIFO or a character device,
    symlinks followed), not by replacing it: a writer that rewrites a growing file whole
    writes only the new part to a stream."""
    try:
        mode = os.stat(_resolve(os.fspath(path))).st_mode
    except (OSError, ValueError):
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)


def _named(path: str, exc: OSError) -> OSError:
    """``exc`` reworded to name the user's path (not a temporary file), same errno."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    message = f"cannot write {path}: {reason}"
    # OSError(errno, text) picks the matching subclass (PermissionError, ...).
    return OSError(message) if exc.errno is None else OSError(exc.errno, message)
