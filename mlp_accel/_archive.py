"""Reading the members of a model file (a zip of ``.npy`` arrays) without trusting it.

Every size a member declares is checked before anything is inflated or allocated: the zip
header's size against the compressed bytes, the ``.npy`` header's shape against the zip
header's size and against the shape the caller expects. :mod:`mlp_accel.io` decides which
members to read and what they must hold.
"""

from __future__ import annotations

import math
import zipfile

import numpy as np

__all__ = ["sniff", "read_member"]

# Deflate cannot expand more than about 1032:1, so a compressed member declaring more than
# this over its compressed size lies about its size.
_MAX_DEFLATE_RATIO = 1032


def sniff(path: str) -> None:
    """Refuse a file that is not a zip archive, saying what it looks like instead."""
    with open(path, "rb") as f:
        head = f.read(512)
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return
    if head.startswith(b"\x93NUMPY"):
        what = "a single NumPy array (.npy)"
    elif head.startswith(b"\x80"):
        raise ValueError(f"{path} holds pickled data, which is never loaded")
    elif not head:
        what = "empty"
    elif all(32 <= b < 127 or b in b"\t\r\n" for b in head):
        what = "a text file (CSV or similar)"
    else:
        what = "of an unknown format (not an .npz archive)"
    raise ValueError(f"{path} is not an mlp_accel model file: it is {what}")


def read_member(
    path: str,
    zf: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    file_size: int,
    expected: tuple[int, ...] | None = None,
    max_bytes: int | None = None,
) -> np.ndarray:
    """One ``.npy`` member, its declared sizes checked before anything is inflated.

    The zip header's size is checked against the compressed bytes and ``max_bytes``, the
    ``.npy`` header's shape against the zip header's size and, where the metadata fixes it,
    ``expected``.

    Raises
    ------
    ValueError
        The member lies about its size, holds an object array, has another shape than
        ``expected`` or more than ``max_bytes`` bytes; the message names ``path``.
    """
    name = info.filename[: -len(".npy")]
    end = info.header_offset + info.compress_size
    if info.compress_type == zipfile.ZIP_STORED:
        plausible = info.compress_size == info.file_size
    else:
        plausible = info.file_size <= _MAX_DEFLATE_RATIO * info.compress_size + 1024
    if end > file_size or not plausible:
        raise ValueError(f"{path} is corrupt: member {name!r} declares more data than it holds")
    if max_bytes is not None and info.file_size > max_bytes:
        raise ValueError(
            f"{path} is not a model file: member {name!r} declares {info.file_size} bytes "
            f"(at most {max_bytes} are read)"
        )
    with zf.open(info) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f"{path}: member {name!r} has unsupported .npy version {version}")
        if dtype.hasobject:
            raise ValueError(
                f"{path} holds pickled data (an object array in {name!r}), which is never loaded"
            )
        count = math.prod(shape)
        nbytes = count * dtype.itemsize
        if nbytes != info.file_size - f.tell():
            raise ValueError(
                f"{path} is corrupt: member {name!r} declares shape {shape} of {dtype} "
                f"({nbytes} bytes) but holds {info.file_size - f.tell()} bytes"
            )
        if expected is not None and shape != expected:
            raise ValueError(f"{path}: {name} has shape {shape}, expected {expected}")
        arr = np.empty(count, dtype=dtype)
        view = memoryview(arr.view(np.uint8)) if nbytes else memoryview(b"")
        filled = 0
        while filled < nbytes:
            n = f.readinto(view[filled:])
            if not n:
                raise ValueError(f"{path} is truncated in member {name!r}")
            filled += n
    return arr.reshape(shape, order="F" if fortran else "C")
