"""Busy machines and first runs, as users meet them, measured in one script.

Usage::

    python benchmarks/real_use.py [--part contended|firstrun|all] [--rounds N]
                                  [--backends numpy,numba] [--cases S1k,S100k,M,L]
                                  [--jobs digits,wine,circles] [--json FILE]

It uses only the public API of ``mlp_accel`` (``MLP``, ``fit``, ``optim.Adam``), so it runs
against an older checkout too: ``PYTHONPATH=/path/to/old/checkout python real_use.py``.
Every measurement runs in subprocesses, because thread counts set through the environment
must precede the libraries' load, and a first run needs a fresh process.

Parts
-----
contended
    One busy process pinned to one core (started and always stopped here). For each backend
    and case, float32, full-batch ``ma.fit`` epochs: the backend's defaults against the same
    backend forced to one thread (``ma.set_threads(1)``, and ``OPENBLAS_NUM_THREADS=1
    OMP_NUM_THREADS=1`` for the libraries beneath), each in its own long-lived worker
    process, timed in interleaved rounds; median samples/s and the min-max range over
    rounds. Target: default >= 0.8x serial. Then the same without the busy process on L
    (target: default >= 1.5x serial).
firstrun
    End to end, the wall time of a fresh process that builds a model and fits it, the first
    time on empty caches (``NUMBA_CACHE_DIR`` and ``MLP_ACCEL_CACHE_DIR`` in a new temporary
    directory) and a second time on the caches the first run filled (once any compile it
    left running in the background has finished): digits 64-48-10 (40
    epochs, batch 128), wine 13-32-3 (300 full-batch epochs, the CLI's default) and circles
    200,000 rows 2-4-3-1 (150 full-batch epochs), with backends numpy, numba and auto.
    Targets: numba's first run <= 1 s over its second; auto <= 1.1x numpy on the small jobs;
    on circles auto within 10% of numba warm, and faster than numpy even on its first run.

The output is markdown tables with samples/s or seconds, ratios, the spread and the load
average before and after each part. Timings on a machine shared with other work are noisy:
read them with the load average and the spread.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from typing import Any

#: The issue's four cases: (layers, rows).
CASES: dict[str, tuple[list[int], int]] = {
    "S1k": ([2, 4, 3, 1], 1_000),
    "S100k": ([2, 4, 3, 1], 100_000),
    "M": ([64, 256, 256, 10], 1_024),
    "L": ([784, 1024, 1024, 10], 4_096),
}
THREAD_VARIABLES = ("NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")
#: Seconds between blocks of different workers: the previous worker's idle OpenMP/OpenBLAS
#: threads spin for a moment after its work, and would be billed to the next one.
PAUSE = 0.2
#: Seconds a timed block of full-batch epochs lasts (at least one epoch).
BLOCK = 0.3

# -- the busy process ------------------------------------------------------------------------
BUSY_LOOP = (
    "import os\n"
    "parent = os.getppid()\n"
    "x = 0\n"
    "while os.getppid() == parent:\n"  # exits by itself if this script dies
    "    for i in range(200000):\n"
    "        x = (x + i) & 0xFFFF\n"
)


@contextlib.contextmanager
def busy_process() -> Iterator[dict[str, Any]]:
    """One process spinning on the last usable CPU, stopped however the block ends."""
    proc = subprocess.Popen([sys.executable, "-c", BUSY_LOOP], stdin=subprocess.DEVNULL)
    info: dict[str, Any] = {"pid": proc.pid, "cpu": None}
    try:
        if hasattr(os, "sched_setaffinity"):
            cpu = max(os.sched_getaffinity(0))
            try:
                os.sched_setaffinity(proc.pid, {cpu})
                info["cpu"] = cpu
            except OSError:
                pass
        yield info
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except (AttributeError, OSError):
        return "unknown"


def spread(values: Sequence[float]) -> dict[str, Any]:
    """Median and min-max of a list of samples."""
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def _si(x: float) -> str:
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return f"{x / scale:.3g}{suffix}"
    return f"{x:.3g}"


def _env(serial: bool, **extra: str) -> dict[str, str]:
    """The environment of a child: library defaults, or every pool forced to one thread."""
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}
    if serial:
        env.update({name: "1" for name in THREAD_VARIABLES})
    env.update(extra)
    return env


# -- part (a): contended and quiet throughput -------------------------------------------------
# A worker builds one model per case on its backend, warms it up, then answers "case epochs"
# lines on stdin with the seconds that many full-batch ma.fit epochs took.
WORKER = r"""
import json, sys, time
import numpy as np
import mlp_accel as ma
spec = json.loads(sys.argv[1])
if spec["serial"]:
    ma.set_threads(1)
models = {}
for name, (layers, rows) in spec["cases"].items():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((rows, layers[0])).astype("float32")
    if layers[-1] == 1:
        y, loss = rng.integers(0, 2, size=rows), "binary_cross_entropy"
    else:
        y, loss = rng.integers(0, layers[-1], size=rows), "cross_entropy"
    model = ma.MLP(layers, loss=loss, backend=spec["backend"], dtype="float32", seed=0)
    opt = ma.optim.Adam(lr=1e-3)
    # Steady state: every kernel compiled and loaded before timing, then a short fit.
    model.backend.warmup(model.spec)
    ma.fit(model, X, y, epochs=2, batch_size=None, shuffle=False, optimizer=opt)
    models[name] = (model, X, y, opt)
print("ready", flush=True)
for line in sys.stdin:
    name, epochs = line.split()
    model, X, y, opt = models[name]
    t0 = time.perf_counter()
    ma.fit(model, X, y, epochs=int(epochs), batch_size=None, shuffle=False, optimizer=opt)
    print(time.perf_counter() - t0, flush=True)
"""


class Worker:
    """A long-lived process training every case on one backend, defaults or forced serial."""

    def __init__(self, backend: str, serial: bool, cases: dict[str, tuple[list[int], int]]):
        self.backend, self.serial = backend, serial
        spec = json.dumps({"backend": backend, "cases": cases, "serial": serial})
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WORKER, spec],
            env=_env(serial),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.epochs: dict[str, int] = {}

    def wait_ready(self) -> None:
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        if line.strip() != "ready":
            raise RuntimeError(f"{self.label} worker failed to start (see its error above)")

    @property
    def label(self) -> str:
        return f"{self.backend} {'serial' if self.serial else 'default'}"

    def time(self, case: str, epochs: int) -> float:
        self.proc.stdin.write(f"{case} {epochs}\n")  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        if not line:
            raise RuntimeError(f"{self.label} worker died during {case}")
        return float(line)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()  # type: ignore[union-attr]
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def measure_throughput(
    workers: list[Worker], cases: Sequence[str], rounds: int
) -> dict[tuple[str, str, bool], dict]:
    """Samples/s per (case, backend, serial), in interleaved rounds; median and min-max."""
    rows = {name: CASES[name][1] for name in cases}
    samples: dict[tuple[str, str, bool], list[float]] = {}
    for case in cases:
        for w in workers:  # calibrate the epochs of a block, once per case and worker
            if case not in w.epochs:
                once = w.time(case, 1)
                w.epochs[case] = max(1, round(BLOCK / max(once, 1e-6)))
                time.sleep(PAUSE)
    for r in range(rounds):
        for case in cases:
            # Alternate the order each round so neither variant always runs right after the
            # other's spinning threads.
            order = workers if r % 2 == 0 else workers[::-1]
            for w in order:
                seconds = w.time(case, w.epochs[case])
                key = (case, w.backend, w.serial)
                samples.setdefault(key, []).append(w.epochs[case] * rows[case] / seconds)
                time.sleep(PAUSE)
    return {key: spread(values) for key, values in samples.items()}


def _rate(s: dict) -> str:
    return f"{_si(s['median'])} ({_si(s['min'])}-{_si(s['max'])})"


def throughput_table(results: dict, cases: Sequence[str], backends: Sequence[str], target: float):
    lines = [
        "| case | layers @ rows | backend | default samples/s (min-max) | one thread (min-max) "
        f"| default / one thread (spread) | target >= {target} |",
        "|---|---|---|---:|---:|---:|---|",
    ]
    for case in cases:
        layers, rows = CASES[case]
        for backend in backends:
            d, s = results.get((case, backend, False)), results.get((case, backend, True))
            if not d or not s:
                continue
            ratio = d["median"] / s["median"]
            # The ratio's spread: worst default round over best serial round, and back.
            low, high = d["min"] / s["max"], d["max"] / s["min"]
            if low >= target:
                verdict = "yes"
            elif high < target:
                verdict = "no"
            else:
                verdict = f"{'yes' if ratio >= target else 'no'} by the median, not by the spread"
            if min(d["n"], s["n"]) < 2:
                verdict += " (one round: no spread)"
            lines.append(
                f"| {case} | {'-'.join(map(str, layers))} @ {rows:,} | {backend} | {_rate(d)} "
                f"| {_rate(s)} | {ratio:.2f} ({low:.2f}-{high:.2f}) | {verdict} |"
            )
    return lines


def part_contended(backends: Sequence[str], cases: Sequence[str], rounds: int) -> dict:
    """Default vs forced-serial throughput, with one core busy, then quiet on L."""
    chosen = {c: CASES[c] for c in cases}
    workers = [Worker(b, serial, chosen) for b in backends for serial in (False, True)]
    report: dict[str, Any] = {}
    try:
        for w in workers:
            w.wait_ready()
        load_before = load_average()
        with busy_process() as busy:
            contended = measure_throughput(workers, cases, rounds)
        report["contended"] = {
            "load_before": load_before,
            "load_after": load_average(),
            "busy_cpu": busy["cpu"],
            "results": contended,
        }
        quiet_cases = [c for c in cases if c == "L"]
        if quiet_cases:
            time.sleep(1.0)  # let the busy process's core go idle
            load_before = load_average()
            quiet = measure_throughput(workers, quiet_cases, rounds)
            report["quiet"] = {
                "load_before": load_before,
                "load_after": load_average(),
                "results": quiet,
            }
    finally:
        for w in workers:
            w.close()
    lines = ["## Contended: one busy process pinned to one core", ""]
    c = report["contended"]
    pinned = f"pinned to CPU {c['busy_cpu']}" if c["busy_cpu"] is not None else "not pinned"
    lines += [
        f"Busy process {pinned}; float32, full-batch `ma.fit` epochs; {rounds} interleaved "
        f"rounds, median (min-max); load average (1, 5, 15 min) before {c['load_before']}, "
        f"after {c['load_after']}.",
        "",
        *throughput_table(c["results"], cases, backends, 0.8),
    ]
    if "quiet" in report:
        q = report["quiet"]
        lines += [
            "",
            "## Quiet: no busy process",
            "",
            f"{rounds} interleaved rounds; load average before {q['load_before']}, "
            f"after {q['load_after']}.",
            "",
            *throughput_table(q["results"], ["L"], backends, 1.5),
        ]
    report["markdown"] = lines
    return report


# -- part (b): first runs on empty caches -----------------------------------------------------
JOB = r"""
import json, sys
spec = json.loads(sys.argv[1])
import numpy as np
import mlp_accel as ma
from sklearn import datasets
if spec["data"] == "digits":
    X, y = datasets.load_digits(return_X_y=True)
elif spec["data"] == "wine":
    X, y = datasets.load_wine(return_X_y=True)
else:
    X, y = datasets.make_circles(n_samples=spec["rows"], noise=0.1, factor=0.5, random_state=0)
X = ((X - X.mean(axis=0)) / (X.std(axis=0) + 1e-12)).astype("float32")
loss = "binary_cross_entropy" if spec["layers"][-1] == 1 else "cross_entropy"
model = ma.MLP(spec["layers"], loss=loss, backend=spec["backend"], dtype="float32", seed=0)
ma.fit(model, X, y, epochs=spec["epochs"], batch_size=spec["batch"], shuffle=True,
       optimizer=ma.optim.Adam(lr=1e-3))
"""

#: (name, dataset, layers, epochs, batch size or None for full batch, rows for circles)
JOBS: dict[str, dict[str, Any]] = {
    "digits 64-48-10, 40 epochs, batch 128": dict(
        data="digits", layers=[64, 48, 10], epochs=40, batch=128, rows=None
    ),
    "wine 13-32-3, 300 full-batch epochs": dict(
        data="wine", layers=[13, 32, 3], epochs=300, batch=None, rows=None
    ),
    "circles 200,000 rows 2-4-3-1, 150 full-batch epochs": dict(
        data="circles", layers=[2, 4, 3, 1], epochs=150, batch=None, rows=200_000
    ),
}


def run_job(job: dict[str, Any], backend: str, cache: str) -> float:
    """Wall seconds of a fresh process that builds and fits ``job`` with caches in ``cache``."""
    env = _env(
        False,
        NUMBA_CACHE_DIR=os.path.join(cache, "numba"),
        MLP_ACCEL_CACHE_DIR=os.path.join(cache, "mlp_accel"),
    )
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", JOB, json.dumps({**job, "backend": backend})],
        env=env,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"]
        raise RuntimeError(f"{backend} on {job['data']}: {lines[-1]}")
    return seconds


def part_firstrun(backends: Sequence[str], rounds: int, jobs: Sequence[str] = ()) -> dict:
    """First and second run of each job and backend, every round on new empty caches.

    ``jobs`` selects jobs by their dataset (digits, wine, circles); default all.
    """
    selected = {n: j for n, j in JOBS.items() if not jobs or j["data"] in jobs}
    samples: dict[tuple[str, str, str], list[float]] = {}
    load_before = load_average()
    for r in range(rounds):
        for name, job in selected.items():
            order = backends if r % 2 == 0 else list(backends)[::-1]
            for backend in order:
                with tempfile.TemporaryDirectory(prefix="real-use-cache-") as cache:
                    for run in ("first", "second"):
                        seconds = run_job(job, backend, cache)
                        samples.setdefault((name, backend, run), []).append(seconds)
    results = {key: spread(values) for key, values in samples.items()}
    lines = [
        "## First run (empty caches) and second run, end to end",
        "",
        f"Wall time of a fresh `python` process that loads the data, builds the model and fits "
        f"it; float32; {rounds} rounds (new empty caches each), median (min-max); load "
        f"average before {load_before}, after {load_average()}.",
        "",
        "| job | backend | first run s | second run s | first - second | first / numpy first "
        "| second / numpy second |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name in selected:
        numpy_first = results.get((name, "numpy", "first"))
        numpy_second = results.get((name, "numpy", "second"))
        for backend in backends:
            first, second = results[(name, backend, "first")], results[(name, backend, "second")]

            def cell(s: dict) -> str:
                return f"{s['median']:.2f} ({s['min']:.2f}-{s['max']:.2f})"

            def ratio(a: dict, b: dict | None) -> str:
                return f"{a['median'] / b['median']:.2f}" if b else "-"

            lines.append(
                f"| {name} | {backend} | {cell(first)} | {cell(second)} "
                f"| {first['median'] - second['median']:+.2f} | {ratio(first, numpy_first)} "
                f"| {ratio(second, numpy_second)} |"
            )
    circles = next((n for n in selected if n.startswith("circles")), "")
    auto_first = results.get((circles, "auto", "first"))
    numba_warm = results.get((circles, "numba", "second"))
    numpy_first = results.get((circles, "numpy", "first"))
    if auto_first and numba_warm and numpy_first:
        lines += [
            "",
            f"circles: auto first run / numba warm = "
            f"{auto_first['median'] / numba_warm['median']:.2f} (target <= 1.10); "
            f"auto first run / numpy = {auto_first['median'] / numpy_first['median']:.2f} "
            "(target < 1).",
        ]
    return {"load_before": load_before, "results": results, "markdown": lines}


# -- command line -----------------------------------------------------------------------------
def _names(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("contended", "firstrun", "all"), default="all")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per part (default 3)")
    parser.add_argument(
        "--backends",
        type=_names,
        help="contended part (default numpy,numba); the first-run part adds auto",
    )
    parser.add_argument(
        "--cases", type=_names, default=list(CASES), help=f"of {', '.join(CASES)} (default all)"
    )
    parser.add_argument(
        "--jobs",
        type=_names,
        default=[],
        help="first-run jobs by dataset: digits, wine, circles (default all)",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.rounds < 1:
        print("real_use.py: error: --rounds must be at least 1", file=sys.stderr)
        return 2
    unknown = [c for c in args.cases if c not in CASES]
    if unknown:
        print(f"real_use.py: error: unknown case {unknown[0]!r}; valid: {', '.join(CASES)}",
              file=sys.stderr)  # fmt: skip
        return 2
    unknown = [j for j in args.jobs if j not in ("digits", "wine", "circles")]
    if unknown:
        print(f"real_use.py: error: unknown job {unknown[0]!r}; valid: digits, wine, circles",
              file=sys.stderr)  # fmt: skip
        return 2
    backends = args.backends or ["numpy", "numba"]
    t0 = time.perf_counter()
    out: dict[str, Any] = {"python": sys.version.split()[0], "cpus": os.cpu_count()}
    import mlp_accel as ma  # only for its version, in the parent

    out["mlp_accel"] = getattr(ma, "__version__", "unknown")
    out["mlp_accel_path"] = os.path.dirname(ma.__file__)
    lines = [
        f"# real_use.py: mlp_accel {out['mlp_accel']} from {out['mlp_accel_path']}, "
        f"{out['cpus']} CPUs",
        "",
    ]
    try:
        if args.part in ("contended", "all"):
            report = part_contended(backends, args.cases, args.rounds)
            lines += [*report.pop("markdown"), ""]
            out["throughput"] = report  # "contended" and "quiet"
        if args.part in ("firstrun", "all"):
            first_backends = list(dict.fromkeys([*backends, "auto"]))
            if "numpy" not in first_backends:
                first_backends.insert(0, "numpy")  # the reference of every ratio
            report = part_firstrun(first_backends, args.rounds, args.jobs)
            lines += [*report.pop("markdown"), ""]
            out["firstrun"] = report
    except RuntimeError as exc:
        print(f"real_use.py: error: {exc}", file=sys.stderr)
        return 1
    lines.append(f"total wall time {time.perf_counter() - t0:.0f} s")
    print("\n".join(lines))
    if args.json:

        def name(part: Any) -> str:
            # (case, backend, serial) keys: the serial flag as the variant's name.
            return {True: "one thread", False: "default"}.get(part, str(part))

        def keyed(d: dict) -> dict:
            return {
                " | ".join(map(name, k)) if isinstance(k, tuple) else k: v for k, v in d.items()
            }

        def clean(x: Any) -> Any:
            if isinstance(x, dict):
                return {k: clean(v) for k, v in keyed(x).items()}
            return x

        with open(args.json, "w") as f:
            json.dump(clean(out), f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
