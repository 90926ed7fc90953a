"""The cupy backend beside PyTorch CUDA eager on the GPU targets, float32, TF32 off.

For each target shape, times ``MLP.train_step`` (forward + backward + Adam) of the one
``mlp_accel.MLP`` on the cupy backend and the same step in PyTorch eager (``nn.Linear`` layers,
the same activations, ``CrossEntropyLoss`` / ``BCEWithLogitsLoss``, ``torch.optim.Adam``), on
the same device-resident random batch. Both are timed the same way, interleaved: ``K`` steps
between two device synchronizations, median of several rounds, so launch overhead counts as it
does in training. The float32 GEMM rate (an 8192^3 CuPy matmul) puts the step's FLOP rate
(``6 * batch * sum(n_in * n_out)`` per step) in proportion. The table comes last.

Run from the repository root with the package importable (``PYTHONPATH=.``)::

    python3 benchmarks/gpu_compare.py [--out DIR] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

# Full float32 everywhere: the targets are stated with TF32 off.
os.environ.setdefault("MLP_ACCEL_TF32", "0")
os.environ["CUPY_TF32"] = "0"
os.environ.setdefault("NVIDIA_TF32_OVERRIDE", "0")

import mlp_accel as ma

# (name, layers, activations, loss, batch, target x torch, target fraction of the GEMM rate)
CASES: list[tuple[str, list[int], list[str], str, int, float, float | None]] = [
    ("mnist-4096", [784, 1024, 1024, 10], ["relu", "relu", "softmax"], "cross_entropy", 4096,
     1.0, 0.60),
    ("mnist-65536", [784, 1024, 1024, 10], ["relu", "relu", "softmax"], "cross_entropy", 65536,
     1.0, 0.60),
    ("mlp256-1024", [64, 256, 256, 10], ["relu", "relu", "softmax"], "cross_entropy", 1024,
     1.0, None),
    ("tutorial-100k", [2, 4, 3, 1], ["relu", "relu", "sigmoid"], "binary_cross_entropy", 100000,
     3.0, None),
]  # fmt: skip
LR = 1e-3
#: Where the PyTorch peer runs (a test of this script sets "cpu").
TORCH_DEVICE = "cuda"


def _data(layers: list[int], loss: str, batch: int, seed: int = 0) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((batch, layers[0]), dtype=np.float32)
    labels = rng.integers(0, max(layers[-1], 2), size=batch)
    return X, labels


def _ours(backend: Any, layers, acts, loss, X, labels):
    model = ma.MLP(layers, acts, loss, backend=backend, dtype="float32", seed=0)
    # Targets in their device form: one-hot rows for cross-entropy, a column for BCE.
    if loss == "cross_entropy":
        y = np.eye(layers[-1], dtype=np.float32)[labels]
    else:
        y = labels.reshape(-1, 1).astype(np.float32)
    Xd, yd = model.backend.asarray(X, "float32"), model.backend.asarray(y, "float32")
    opt = ma.optim.Adam(LR)

    def step() -> None:
        model.train_step(Xd, yd, opt)

    return step, model


def _torch(torch: Any, layers, acts, loss, X, labels):
    modules: list[Any] = []
    for k, (n_in, n_out) in enumerate(zip(layers[:-1], layers[1:])):
        modules.append(torch.nn.Linear(n_in, n_out))
        if k < len(layers) - 2:
            modules.append({"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh}[acts[k]]())
    net = torch.nn.Sequential(*modules).to(device=TORCH_DEVICE, dtype=torch.float32)
    Xt = torch.from_numpy(X).to(TORCH_DEVICE)
    if loss == "cross_entropy":
        loss_fn = torch.nn.CrossEntropyLoss()
        yt = torch.from_numpy(labels.astype(np.int64)).to(TORCH_DEVICE)
    else:
        loss_fn = torch.nn.BCEWithLogitsLoss()
        yt = torch.from_numpy(labels.reshape(-1, 1).astype(np.float32)).to(TORCH_DEVICE)
    opt = torch.optim.Adam(net.parameters(), lr=LR)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss_fn(net(Xt), yt).backward()
        opt.step()

    return step


def _time(step, sync, k: int) -> float:
    """Seconds per step over ``k`` steps between two synchronizations."""
    sync()
    t0 = time.perf_counter()
    for _ in range(k):
        step()
    sync()
    return (time.perf_counter() - t0) / k


def _calibrate(step, sync, budget: float) -> int:
    for _ in range(3):
        step()
    per_step = _time(step, sync, 3)
    return int(min(max(budget / max(per_step, 1e-7), 3), 5000))


def gemm_rate(cupy: Any, n: int = 8192) -> float:
    """Best float32 GFLOP/s of an ``n``-cubed CuPy matmul."""
    a = cupy.random.standard_normal((n, n), dtype=cupy.float32)
    b = cupy.random.standard_normal((n, n), dtype=cupy.float32)
    a @ b
    cupy.cuda.Device().synchronize()
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        a @ b
        cupy.cuda.Device().synchronize()
        best = min(best, time.perf_counter() - t0)
    del a, b
    return 2 * n**3 / best / 1e9


def run(quick: bool = False) -> dict[str, Any]:
    backend = ma.get_backend("cupy")
    import cupy

    from mlp_accel.backends.cupy_backend import CupyBackend, _tf32_active

    report: dict[str, Any] = {"backend": backend.describe(), "rows": [], "errors": []}
    try:
        import torch

        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        report["torch"] = torch.__version__
    except Exception as exc:  # no PyTorch: ratios are not available
        torch = None
        report["errors"].append(f"PyTorch unavailable: {exc}")
    report["tf32"] = {
        "cupy": _tf32_active(),
        "torch": None if torch is None else bool(torch.backends.cuda.matmul.allow_tf32),
    }
    try:
        rate = gemm_rate(cupy)
    except Exception as exc:  # the table still comes, without the GEMM fraction
        rate = float("nan")
        report["errors"].append(f"GEMM rate: {type(exc).__name__}: {exc}")
    report["gemm_gflops"] = rate
    print(f"float32 GEMM rate (8192^3 CuPy matmul, TF32 off): {rate:,.0f} GFLOP/s", flush=True)

    # The layer-by-layer path on the tutorial shape, to show what the fused kernel buys.
    layered = CupyBackend(device=backend.device_id)
    layered._use_fused = False
    cases = [(*c, backend, "") for c in CASES]
    tut = CASES[-1]
    cases.append((tut[0], *tut[1:5], None, None, layered, " (layers)"))

    def sync() -> None:
        cupy.cuda.Device().synchronize()

    budget = 0.08 if quick else 0.2
    rounds = 3 if quick else 5
    for name, layers, acts, loss, batch, target, gemm_target, be, label in cases:
        row: dict[str, Any] = {"case": name + label, "layers": layers, "batch": batch}
        try:
            X, labels = _data(layers, loss, batch)
            ours, model = _ours(be, layers, acts, loss, X, labels)
            row["fused"] = model._fused_network() is not None
            k = _calibrate(ours, sync, budget)
            theirs = None
            if torch is not None:
                theirs = _torch(torch, layers, acts, loss, X, labels)
                k_t = _calibrate(theirs, torch.cuda.synchronize, budget)
            t_ours, t_torch = [], []
            for _ in range(rounds):
                t_ours.append(_time(ours, sync, k))
                if theirs is not None:
                    t_torch.append(_time(theirs, torch.cuda.synchronize, k_t))
            step_ours = statistics.median(t_ours)
            row["ours_s"] = step_ours
            row["ours_sps"] = batch / step_ours
            flops = 6 * batch * sum(a * b for a, b in zip(layers[:-1], layers[1:]))
            row["gemm_fraction"] = flops / step_ours / (rate * 1e9)
            if t_torch:
                step_torch = statistics.median(t_torch)
                row["torch_s"] = step_torch
                row["torch_sps"] = batch / step_torch
                row["ratio"] = step_torch / step_ours
            row["target"] = target
            row["gemm_target"] = gemm_target
            if target is None:
                row["pass"] = None
            else:
                ok = row.get("ratio", 0.0) >= target
                if gemm_target is not None:
                    ok = ok and row["gemm_fraction"] >= gemm_target
                row["pass"] = ok
            del ours, model, theirs
        except Exception as exc:
            row["error"] = f"{type(exc).__name__}: {exc}"
            row["pass"] = False if target is not None else None
            report["errors"].append(f"{name}{label}: {traceback.format_exc(limit=4)}")
        report["rows"].append(row)
        cupy.get_default_memory_pool().free_all_blocks()
        if torch is not None:
            torch.cuda.empty_cache()
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
        f"GEMM {report['gemm_gflops']:,.0f} GFLOP/s"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.environ.get("OUT"), help="write JSON and table here")
    parser.add_argument("--quick", action="store_true", help="shorter timing rounds")
    args = parser.parse_args(argv)
    try:
        report = run(quick=args.quick)
    except Exception:
        traceback.print_exc()
        return 1
    text = table(report)
    for err in report["errors"]:
        print(err, file=sys.stderr)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "gpu_compare.json").write_text(json.dumps(report, indent=2, default=str))
        (out / "gpu_compare_table.txt").write_text(text + "\n")
    print(text)
    return 0 if all(r["pass"] is not False for r in report["rows"]) else 2


if __name__ == "__main__":
    raise SystemExit(main())
