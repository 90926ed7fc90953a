"""Run the CuPy backend's CUDA C kernels on the CPU, for machines without a GPU.

A kernel source is compiled with ``g++`` against a small emulation of the CUDA execution model
(CUDA threads as cooperative fibers, blocks run one after another, ``__syncthreads`` and
``__shfl_down_sync`` as barriers; a barrier some threads never reach is reported as a
deadlock) into a shared library and called through ``ctypes``. Every
argument is checked against the kernel's C signature, as strictly as a GPU would need it:
a ``float`` parameter takes a ``numpy.float32``, ``long long`` a ``numpy.int64``, a pointer a
C-contiguous array of the kernel's element type.

This checks the kernels' logic and the backend's launch code; it says nothing about speed,
and it does not model warp-synchronous behavior beyond the shuffles the kernels use.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["available", "launch", "EmulatorError"]

_PRELUDE = r"""
#include <math.h>
#include <stdio.h>
#include <ucontext.h>

// CUDA threads as cooperative fibers on one OS thread: a fiber runs until it reaches a
// barrier (__syncthreads, or a warp shuffle) that not all its peers have reached, then
// yields. Blocks run one after another.
struct emu_dim3 { unsigned x, y, z; };
static emu_dim3 threadIdx, blockIdx, blockDim, gridDim;
#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static
#define __launch_bounds__(n)

struct EmuBarrier { unsigned expected; unsigned count; unsigned long gen; };
struct EmuFiber {
    ucontext_t ctx;
    emu_dim3 idx;
    bool done;
    EmuBarrier* waiting;
    unsigned long wait_gen;
    char* stack;
    unsigned shuffles;
};

static ucontext_t emu_sched;
static EmuFiber* emu_current = nullptr;
static EmuBarrier emu_block_barrier;
static EmuBarrier emu_warp_barriers[32];
static double emu_warp_buf[2][32][32];
static void (*emu_kernel)(void**) = nullptr;
static void** emu_args = nullptr;

static void emu_arrive(EmuBarrier& b) {
    if (++b.count == b.expected) {  // the last to arrive releases the others and goes on
        b.count = 0;
        ++b.gen;
        return;
    }
    emu_current->waiting = &b;
    emu_current->wait_gen = b.gen;
    swapcontext(&emu_current->ctx, &emu_sched);
}

static inline void __syncthreads() { emu_arrive(emu_block_barrier); }

template <typename T>
static inline T __shfl_down_sync(unsigned mask, T v, unsigned delta) {
    (void)mask;
    const unsigned tid = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    const unsigned warp = tid / 32, lane = tid % 32;
    // Two buffers used in turn: a lane cannot write one again before every lane has passed
    // the next shuffle's barrier, that is, read it.
    double (*buf)[32] = emu_warp_buf[emu_current->shuffles++ & 1];
    buf[warp][lane] = (double)v;
    emu_arrive(emu_warp_barriers[warp]);
    return lane + delta < 32 ? (T)buf[warp][lane + delta] : v;
}

static void emu_fiber_main() {
    emu_kernel(emu_args);
    emu_current->done = true;
    swapcontext(&emu_current->ctx, &emu_sched);
}

// Headers are kept to C ones: compiling <functional> or <vector> cost most of a build.
static int emu_run(emu_dim3 grid, emu_dim3 block, void (*kernel)(void**), void** args) {
    blockDim = block;
    gridDim = grid;
    emu_kernel = kernel;
    emu_args = args;
    const unsigned n = block.x * block.y * block.z;
    // Fiber stacks, kept between launches (allocating and clearing them dominated the time).
    static char* stacks[1024];
    const size_t stack_size = 1 << 16;
    if (n > 1024) return 2;
    for (unsigned i = 0; i < n; ++i) {
        if (!stacks[i]) stacks[i] = new char[stack_size];
    }
    static EmuFiber fibers[1024];
    for (unsigned i = 0; i < n; ++i) fibers[i].stack = stacks[i];
    for (unsigned bz = 0; bz < grid.z; ++bz)
    for (unsigned by = 0; by < grid.y; ++by)
    for (unsigned bx = 0; bx < grid.x; ++bx) {
        blockIdx = {bx, by, bz};
        emu_block_barrier = {n, 0, 0};
        for (unsigned w = 0; w < 32; ++w) emu_warp_barriers[w] = {32, 0, 0};
        unsigned i = 0;
        for (unsigned tz = 0; tz < block.z; ++tz)
        for (unsigned ty = 0; ty < block.y; ++ty)
        for (unsigned tx = 0; tx < block.x; ++tx, ++i) {
            EmuFiber& f = fibers[i];
            f.idx = {tx, ty, tz};
            f.done = false;
            f.waiting = nullptr;
            f.shuffles = 0;
            getcontext(&f.ctx);
            f.ctx.uc_stack.ss_sp = f.stack;
            f.ctx.uc_stack.ss_size = stack_size;
            f.ctx.uc_link = &emu_sched;
            makecontext(&f.ctx, emu_fiber_main, 0);
        }
        unsigned remaining = n;
        while (remaining) {
            bool progressed = false;
            for (unsigned k = 0; k < n; ++k) {
                EmuFiber& f = fibers[k];
                if (f.done || (f.waiting && f.waiting->gen == f.wait_gen)) continue;
                f.waiting = nullptr;
                emu_current = &f;
                threadIdx = f.idx;
                swapcontext(&emu_sched, &f.ctx);
                progressed = true;
                if (f.done) --remaining;
            }
            if (!progressed) return 1;  // a barrier that some threads never reach
        }
    }
    return 0;
}
"""


class EmulatorError(RuntimeError):
    """A kernel failed to compile, or was called with arguments it cannot take."""


def available() -> bool:
    """Whether a C++17 compiler is here to build the emulated kernels."""
    return shutil.which(os.environ.get("CXX", "g++")) is not None


_SIGNATURE = re.compile(
    r'extern\s+"C"\s+__global__\s+void\s+(?:__launch_bounds__\(\s*\d+\s*\)\s+)?(\w+)\s*'
    r"\(([^)]*)\)",
    re.S,
)
_libraries: dict[str, Any] = {}


def _parse_params(source: str, name: str) -> list[str]:
    """C types of the kernel's parameters, without ``const`` and ``__restrict__``."""
    for match in _SIGNATURE.finditer(source):
        if match.group(1) == name:
            types = []
            for param in match.group(2).split(","):
                tokens = param.replace("*", " * ").split()
                tokens = [t for t in tokens if t not in ("const", "__restrict__")]
                types.append(" ".join(tokens[:-1]).replace(" *", "*"))
            return types
    raise EmulatorError(f"kernel {name!r} not found in its source")


def _real_type(source: str) -> str:
    match = re.search(r"typedef\s+(float|double)\s+real\s*;", source)
    if not match:
        raise EmulatorError("kernel source declares no `real` type")
    return match.group(1)


def _cache_dir() -> Path:
    root = os.environ.get("MLP_ACCEL_EMU_CACHE")
    path = Path(root) if root else Path(tempfile.gettempdir()) / "mlp_accel_cuda_emu"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _library(source: str, name: str, types: list[str]) -> Any:
    casts = ", ".join(f"*({t}*)args[{i}]" for i, t in enumerate(types))
    launcher = f"""
static void emu_call(void** args) {{ {name}({casts}); }}
extern "C" int emu_launch(unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                          unsigned bz, void** args) {{
    return emu_run({{gx, gy, gz}}, {{bx, by, bz}}, emu_call, args);
}}
"""
    code = _PRELUDE + source + launcher
    key = hashlib.sha256(code.encode()).hexdigest()[:24]
    if key in _libraries:
        return _libraries[key]
    lib_path = _cache_dir() / f"{name}_{key}.so"
    if not lib_path.exists():
        src_path = lib_path.with_suffix(".cpp")
        src_path.write_text(code)
        tmp = lib_path.with_suffix(f".{os.getpid()}.tmp")
        cmd = [
            os.environ.get("CXX", "g++"),
            "-std=c++17",
            "-O1",
            "-shared",
            "-fPIC",
            "-pthread",
            "-w",
            str(src_path),
            "-o",
            str(tmp),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise EmulatorError(f"kernel {name} does not compile:\n{proc.stderr[-4000:]}")
        os.replace(tmp, lib_path)
    lib = ctypes.CDLL(str(lib_path))
    lib.emu_launch.restype = ctypes.c_int
    _libraries[key] = lib
    return lib


def _pack(types: list[str], args: tuple, real: str) -> tuple[list[Any], Any]:
    if len(types) != len(args):
        raise EmulatorError(f"kernel takes {len(types)} arguments, got {len(args)}")
    holders: list[Any] = []
    real_np = np.float32 if real == "float" else np.float64
    for i, (ctype, arg) in enumerate(zip(types, args)):
        ctype = ctype.replace("real", real)
        if ctype.endswith("*"):
            base = ctype[:-1].strip()
            want = {"float": np.float32, "double": np.float64}[base]
            if not isinstance(arg, np.ndarray):
                raise EmulatorError(f"argument {i} ({ctype}) must be an array, got {type(arg)}")
            if arg.dtype != want or not arg.flags.c_contiguous:
                raise EmulatorError(
                    f"argument {i} ({ctype}) needs a C-contiguous {want.__name__} array, got "
                    f"{arg.dtype} (contiguous: {arg.flags.c_contiguous})"
                )
            if not arg.flags.writeable:
                raise EmulatorError(f"argument {i} is read-only")
            holders.append(ctypes.c_void_p(arg.ctypes.data))
        elif ctype == "long long":
            if type(arg) is not np.int64:
                raise EmulatorError(
                    f"argument {i} (long long) must be numpy.int64, got {type(arg)}"
                )
            holders.append(ctypes.c_longlong(int(arg)))
        elif ctype in ("float", "double"):
            want_t = np.float32 if ctype == "float" else np.float64
            if type(arg) is not want_t:
                raise EmulatorError(
                    f"argument {i} ({ctype}) must be numpy.{want_t.__name__}, got {type(arg)}"
                )
            holders.append((ctypes.c_float if ctype == "float" else ctypes.c_double)(arg))
        else:
            raise EmulatorError(f"argument {i}: unsupported parameter type {ctype!r}")
    del real_np
    pointers = (ctypes.c_void_p * len(holders))(*[ctypes.addressof(h) for h in holders])
    return holders, pointers


def _dims(d: Any) -> tuple[int, int, int]:
    d = (d,) if isinstance(d, int) else tuple(int(x) for x in d)
    if not 1 <= len(d) <= 3 or any(x < 1 for x in d):
        raise EmulatorError(f"bad launch dimensions {d}")
    return (*d, 1, 1)[:3]  # type: ignore[return-value]


def launch(source: str, name: str, grid: Any, block: Any, args: tuple) -> None:
    """Run kernel ``name`` of ``source`` over ``grid`` x ``block`` with ``args``."""
    types = _parse_params(source, name)
    real = _real_type(source)
    g, b = _dims(grid), _dims(block)
    threads = b[0] * b[1] * b[2]
    if threads > 1024 or threads % 32:
        raise EmulatorError(f"blocks of {threads} threads: the kernels assume whole warps")
    lib = _library(source, name, types)
    _holders, pointers = _pack(types, tuple(args), real)
    status = lib.emu_launch(*(ctypes.c_uint(x) for x in (*g, *b)), pointers)
    if status == 1:
        raise EmulatorError(f"kernel {name} deadlocked: a barrier not every thread reaches")
    if status != 0:
        raise EmulatorError(f"kernel {name} failed to launch ({status})")
