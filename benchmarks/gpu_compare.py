"""The cupy backend beside PyTorch CUDA eager on the GPU targets, float32, TF32 off.

For each target shape (``mlp_accel.bench.SHAPES``), times ``MLP.train_step`` (forward +
backward + Adam) of the one ``mlp_accel.MLP`` on the cupy backend and the same step in PyTorch
eager (``mlp_accel.bench.torch_peer``: ``nn.Linear`` layers, the same activations,
``CrossEntropyLoss`` / ``BCEWithLogitsLoss``, ``torch.optim.Adam``), on the same
device-resident random batch. Both are timed the same way, interleaved
(``mlp_accel.bench.time_interleaved_stats``): a block of ``K`` steps between two device
synchronizations, median of several rounds, so launch overhead counts as it does in training.
The float32 GEMM rate (``mlp_accel.bench.measure_gemm``: an 8192^3 matmul on a GPU) puts the
step's FLOP rate (``6 * batch * sum(n_in * n_out)`` per step) in proportion. The tutorial
shape is timed again on the layer-by-layer path (the fused whole-network kernel declined), to
show what the fused kernel buys. The table comes last.

Run from the repository root with the package importable (``PYTHONPATH=.``)::

    python3 benchmarks/gpu_compare.py [--out DIR] [--quick] [--cases NAME,...]

``--backend numpy`` (or numba) runs the same measurements on the CPU, to check the script
where there is no GPU; the targets are the GPU's.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import traceback
from pathlib import Path
from typing import Any

# Full float32 everywhere: the targets are stated with TF32 off.
os.environ.setdefault("MLP_ACCEL_TF32", "0")
os.environ["CUPY_TF32"] = "0"
os.environ.setdefault("NVIDIA_TF32_OVERRIDE", "0")

import mlp_accel as ma
from mlp_accel import bench
from mlp_accel.backends import Backend

#: case (a name of ``bench.SHAPES``) -> (target x torch, target fraction of the GEMM rate)
TARGETS: dict[str, tuple[float, float | None]] = {
    "mnist-4096": (1.0, 0.60),
    "mnist-65536": (1.0, 0.60),
    "mlp256-1024": (1.0, None),
    "tutorial-100k": (3.0, None),
}
#: The case also timed on the layer-by-layer path.
LAYERED_CASE = "tutorial-100k"
DTYPE = "float32"
#: Where the PyTorch peer runs (a test of this script sets "cpu").
TORCH_DEVICE = "cuda"


def start_torch(report: dict[str, Any]) -> bool:
    """Turn PyTorch's TF32 off and record its version; False (and why) when it is absent."""
    try:
        import torch
    except Exception as exc:  # no PyTorch: ratios are not available
        report["errors"].append(f"PyTorch unavailable: {exc}")
        report["tf32"]["torch"] = None
        return False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    report["torch"] = torch.__version__
    report["tf32"]["torch"] = bool(torch.backends.cuda.matmul.allow_tf32)
    return True


def judge(row: dict[str, Any]) -> bool | None:
    """PASS (True) or FAIL (False) against the row's targets; None for an info row."""
    if row["target"] is None:
        return None
    ok = row.get("ratio", 0.0) >= row["target"]
    if row["gemm_target"] is not None:
        ok = ok and row.get("gemm_fraction", 0.0) >= row["gemm_target"]
    return ok


def measure(
    backend: Backend, shape: bench.Shape, with_torch: bool, quick: bool, rate: float
) -> dict[str, Any]:
    """Time one case: the library's step and, where PyTorch runs, the peer's; one table row."""
    row: dict[str, Any] = {}
    data = bench.host_data(shape, DTYPE)
    work = bench.make_workload(backend, shape, DTYPE, data=data)
    row["fused"] = backend.fused_network(work.model.spec) is not None
    calls = {"ours": bench.train_call(work, synchronize=False)}
    syncs = {"ours": backend.synchronize}
    if with_torch:
        peer = bench.torch_peer(shape, DTYPE, data, TORCH_DEVICE, synchronize=False)
        calls["torch"], syncs["torch"] = peer.train, peer.synchronize
    for key, call in calls.items():  # warm up: kernels compiled, cuBLAS started
        for _ in range(3):
            call()
        syncs[key]()
    rounds = 3 if quick else 5
    timings = bench.time_interleaved_stats(
        calls,
        syncs=syncs,
        min_rounds=rounds,
        max_rounds=rounds,
        min_time=0.0,
        block_time=0.08 if quick else 0.2,
    )
    ours = timings["ours"]
    row.update(ours_s=ours.median, ours_s_range=[ours.low, ours.high], rounds=ours.rounds)
    row["ours_sps"] = shape.batch / ours.median
    row["gemm_fraction"] = shape.train_flops() / ours.median / (rate * 1e9)
    if "torch" in timings:
        theirs = timings["torch"]
        row.update(torch_s=theirs.median, torch_s_range=[theirs.low, theirs.high])
        row["torch_sps"] = shape.batch / theirs.median
        row["ratio"] = theirs.median / ours.median
    return row


def free_memory(backend: Backend, with_torch: bool) -> None:
    """Give the device memory of a finished case back, so the next case has all of it."""
    gc.collect()
    if bench.is_gpu(backend):
        import cupy

        cupy.get_default_memory_pool().free_all_blocks()
    if with_torch and TORCH_DEVICE == "cuda":
        import torch

        torch.cuda.empty_cache()


def plan(backend: Backend, cases: list[str]) -> list[tuple[str, Backend, str]]:
    """(case, backend, label) to measure: each case, then :data:`LAYERED_CASE` again on the
    layer-by-layer path where the backend has a fused whole-network kernel of its own."""
    todo = [(name, backend, "") for name in cases]
    if LAYERED_CASE in cases and type(backend).fused_network is not Backend.fused_network:
        layered = bench.with_generic_hooks(backend, "fused_network")
        todo.append((LAYERED_CASE, layered, " (layers)"))
    return todo


def run(quick: bool = False, backend: str = "cupy", cases: list[str] | None = None) -> dict:
    """Measure every case (default: all of :data:`TARGETS`); the report the table is made of."""
    be = ma.get_backend(backend)
    info = be.describe()
    report: dict[str, Any] = {"backend": info, "rows": [], "errors": []}
    report["tf32"] = {"cupy": info.get("tf32") == "on" if "tf32" in info else None}
    with_torch = start_torch(report)
    try:
        rate = bench.measure_gemm(be, DTYPE, quick=quick)["gflops"]
    except Exception as exc:  # the table still comes, without the GEMM fraction
        rate = float("nan")
        report["errors"].append(f"GEMM rate: {type(exc).__name__}: {exc}")
    report["gemm_gflops"] = rate
    print(f"float32 GEMM rate ({be.name} matmul, TF32 off): {rate:,.0f} GFLOP/s", flush=True)
    for name, backend_, label in plan(be, cases or list(TARGETS)):
        shape = bench.SHAPES[name]
        target, gemm_target = TARGETS[name] if not label else (None, None)
        row: dict[str, Any] = {"case": name + label, "layers": list(shape.layers)}
        row.update(batch=shape.batch, target=target, gemm_target=gemm_target)
        try:
            row.update(measure(backend_, shape, with_torch, quick, rate))
        except Exception as exc:
            row["error"] = f"{type(exc).__name__}: {exc}"
            report["errors"].append(f"{name}{label}: {traceback.format_exc(limit=4)}")
        row["pass"] = False if "error" in row and target is not None else judge(row)
        report["rows"].append(row)
        free_memory(backend_, with_torch)
        print(f"  {row['case']}: done", flush=True)
    return report


def table(report: dict[str, Any]) -> str:
    """The short table: one line per case, PASS/FAIL against its target."""
    head = (
        f"{'case':24s} {'batch':>7s} {'mlp_accel/s':>12s} {'torch/s':>12s} {'ratio':>6s} "
        f"{'%GEMM':>6s}  {'target':22s} result"
    )
    lines = [head, "-" * len(head)]
    for r in report["rows"]:
        if "error" in r:
            lines.append(f"{r['case']:24s} {r['batch']:>7,d}  ERROR {r['error'][:70]}")
            continue
        target = "" if r["target"] is None else f">= {r['target']:.1f}x torch"
        if r.get("gemm_target") is not None:
            target += f", >= {100 * r['gemm_target']:.0f}% GEMM"
        result = {True: "PASS", False: "FAIL", None: "info"}[r["pass"]]
        torch_sps = f"{r['torch_sps']:>12,.0f}" if "torch_sps" in r else f"{'n/a':>12s}"
        ratio = f"{r['ratio']:>5.2f}x" if "ratio" in r else f"{'n/a':>6s}"
        fused = " [fused]" if r.get("fused") else ""
        lines.append(
            f"{r['case']:24s} {r['batch']:>7,d} {r['ours_sps']:>12,.0f} {torch_sps} {ratio} "
            f"{100 * r['gemm_fraction']:>5.1f}%  {target:22s} {result}{fused}"
        )
    b = report.get("backend", {})
    lines.append(
        f"GPU {b.get('gpu', '?')}, CUDA {b.get('cuda runtime', '?')}, CuPy {b.get('cupy', '?')}, "
        f"PyTorch {report.get('torch', 'n/a')}; float32, TF32 off "
        f"(cupy: {report['tf32']['cupy']}, torch: {report['tf32']['torch']}); "
        f"GEMM {report['gemm_gflops']:,.0f} GFLOP/s; median of the rounds "
        f"({bench.SPREAD} in the JSON)"
    )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The script's options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.environ.get("OUT"), help="write JSON and table here")
    parser.add_argument("--quick", action="store_true", help="shorter timing rounds")
    parser.add_argument("--backend", default="cupy", help="the backend measured (default cupy)")
    parser.add_argument(
        "--cases", default=",".join(TARGETS), help="comma-separated case names (default: all)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    cases = [c for c in args.cases.split(",") if c]
    unknown = [c for c in cases if c not in TARGETS]
    if unknown or not cases:
        what = f"unknown case {unknown[0]!r}" if unknown else "no case"
        parser.error(f"{what}; valid cases: {', '.join(TARGETS)}")
    try:
        report = run(quick=args.quick, backend=args.backend, cases=cases)
    except (ValueError, RuntimeError) as exc:  # an unknown or unavailable backend
        print(f"gpu_compare: {exc}", file=sys.stderr)
        return 1
    except Exception:
        traceback.print_exc()
        return 1
    text = table(report)
    for err in report["errors"]:
        print(err, file=sys.stderr)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        bench.write_json(report, out / "gpu_compare.json")
        (out / "gpu_compare_table.txt").write_text(text + "\n")
    print(text)
    return 0 if all(r["pass"] is not False for r in report["rows"]) else 2


if __name__ == "__main__":
    raise SystemExit(main())
