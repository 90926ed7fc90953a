"""Training throughput of the numba backend against numpy, as users see it through ``ma.fit``.

Each case (a shape of ``mlp_accel.bench.SHAPES``) trains on data of exactly one batch: one
:func:`mlp_accel.bench.fit_call` is a few full-batch epochs of ``ma.fit`` (one step per epoch,
so the per-step Python overhead of ``fit`` counts; enough epochs per call that its one-time
input check is amortized as in real training). The two backends are timed interleaved, round
by round (``mlp_accel.bench.time_interleaved_stats``: load from other processes on a shared
machine hits both alike, and a fast block starts with an untimed call so the other library's
spinning threads are not billed to it); the table reports the median samples/s of each
backend and their ratio, marked ``~`` where the two spreads (min-max over rounds) overlap.
Kernels are compiled (``backend.warmup``) and a call is made before anything is timed.

Run from the repository root::

    python benchmarks/numba_vs_numpy.py                 # every case, float32 and float64
    python benchmarks/numba_vs_numpy.py --quick         # fewer rounds
    python benchmarks/numba_vs_numpy.py --cases tutorial-1k --dtypes float32
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import mlp_accel as ma
from mlp_accel import bench

#: case (a name of ``bench.SHAPES``) -> target speed-up of numba over numpy
CASES: dict[str, float] = {
    "tutorial-1k": 5.0,
    "tutorial-100k": 10.0,
    "mlp256-1024": 1.15,
    "mnist-4096": 0.95,
}
BACKENDS = ("numpy", "numba")


def measure(
    shape: bench.Shape,
    dtype: str,
    rounds: int,
    seconds: float,
    backends: Sequence[str] = BACKENDS,
) -> dict[str, tuple[float, float, float]]:
    """Samples/s through ``ma.fit`` of each backend, interleaved over ``rounds`` rounds.

    Returns, per backend, (median, slowest round, fastest round) samples/s; each round
    times about ``seconds`` of ``fit`` calls per backend.
    """
    data = bench.host_data(shape, dtype)
    calls, samples = {}, {}
    for name in backends:
        work = bench.make_workload(name, shape, dtype, data=data)
        probe = bench.fit_call(work, 1)
        probe()  # the first call of fit: anything still cold is warmed, not timed
        t0 = time.perf_counter()
        probe()
        epochs = bench.fit_epochs(time.perf_counter() - t0)
        calls[name] = bench.fit_call(work, epochs)
        samples[name] = epochs * shape.batch
    timings = bench.time_interleaved_stats(
        calls, min_rounds=rounds, max_rounds=rounds, min_time=0.0, block_time=seconds
    )
    return {name: t.rate(samples[name]) for name, t in timings.items()}


def row(case: str, dtype: str, result: dict[str, tuple[float, float, float]]) -> str:
    """One line of the table: both rates, their ratio and the target."""
    numpy, numba, target = result["numpy"], result["numba"], CASES[case]
    ratio = numba[0] / numpy[0]
    # Without a measured difference (the spreads overlap) the ratio is marked, as in the bench.
    tilde = "~" if bench.ranges_overlap(numpy[1:], numba[1:]) else " "
    mark = "" if ratio >= target else "  (below target)"
    return (
        f"{case:<14} {dtype:<8} {numpy[0]:>16,.0f} {numba[0]:>16,.0f} "
        f"{tilde}{ratio:>10.2f}x {target:>6.2f}x{mark}"
    )


def build_parser() -> argparse.ArgumentParser:
    """The script's options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated case names")
    parser.add_argument("--dtypes", default="float32,float64")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=0.4, help="per backend and round")
    parser.add_argument("--quick", action="store_true", help="3 rounds of 0.2 s")
    return parser


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """The options, checked: unknown names and non-positive rounds are an argparse error."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.cases = [c for c in args.cases.split(",") if c]
    args.dtypes = [d for d in args.dtypes.split(",") if d]
    for kind, names, valid in (("case", args.cases, CASES), ("dtype", args.dtypes, bench.DTYPES)):
        bad = [n for n in names if n not in valid] or ([] if names else ["(none)"])
        if bad:
            parser.error(f"unknown {kind} {bad[0]!r}; valid: {', '.join(valid)}")
    if args.quick:
        args.rounds, args.seconds = 3, 0.2
    if args.rounds < 1 or args.seconds <= 0:
        parser.error("--rounds must be at least 1 and --seconds above 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    info = ma.get_backend("numba").describe()
    print(
        f"numba {info['numba']} ({info['threading_layer']}, {info['threads']} threads); "
        f"BLAS: {info['blas']}"
    )
    header = f"{'case':<14} {'dtype':<8} {'numpy samples/s':>16} {'numba samples/s':>16}"
    print(f"{header} {'numba/numpy':>12} {'target':>7}")
    for case in args.cases:
        for dtype in args.dtypes:
            result = measure(bench.SHAPES[case], dtype, args.rounds, args.seconds)
            print(row(case, dtype, result), flush=True)
    print(f"median samples/s over {args.rounds} rounds; ~ = the spreads ({bench.SPREAD}) overlap")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
