"""The batch-size sweep and what it supports saying: which backend wins at which batches."""

from __future__ import annotations

import gc

from ..backends import Backend
from .cases import SWEEP_FAMILIES, host_data, make_workload, sweep_batches, train_call
from .config import BenchConfig
from .machine import shape_runs_on
from .timing import SPREAD, ranges_overlap, time_interleaved_stats

__all__ = ["run_sweep", "compare_sweep", "crossovers"]


def run_sweep(backends: list[Backend], config: BenchConfig, skipped: list[dict]) -> list[dict]:
    """Train-step throughput against batch size, per backend, for each sweep family."""
    dtype = config.sweep_dtype or config.dtypes[0]
    batches = sorted(set(config.sweep_batch_sizes or sweep_batches(config.quick)))
    records = []
    timing = {"min_rounds": 3, "min_time": 0.15 if config.quick else 0.5}
    for family, base in SWEEP_FAMILIES.items():
        shape = base.with_batch(max(batches))
        data = host_data(shape, dtype, config.seed)
        works = {}
        for backend in backends:
            ok, why = shape_runs_on(shape, backend, dtype)
            if not ok:
                skipped.append({"what": backend.name, "shape": shape.name, "reason": why})
                continue
            works[backend.name] = make_workload(backend, shape, dtype, config.seed, data)
            train_call(works[backend.name], min(batches))()  # JIT warm-up
        if config.log:
            config.log(f"sweep {family} {dtype}: batches {batches[0]}..{batches[-1]}")
        for batch in batches:
            calls = {name: train_call(w, batch) for name, w in works.items()}
            timings = time_interleaved_stats(calls, **timing)
            for name, t in timings.items():
                rate, slowest, fastest = t.rate(batch)
                records.append(
                    {
                        "family": family,
                        "layers": list(base.layers),
                        "dtype": dtype,
                        "backend": name,
                        "batch": batch,
                        "train_samples_per_sec": rate,
                        "train_samples_per_sec_range": [slowest, fastest],
                        "rounds": t.rounds,
                    }
                )
        del works
        gc.collect()
    return records


def _win_ranges(batches: list[int], wins: set[int]) -> str:
    """``64-256, 4096`` for the runs of consecutive sweep points in ``wins``."""
    runs: list[list[int]] = []
    previous_won = False
    for n in batches:
        if n in wins:
            if previous_won:
                runs[-1].append(n)
            else:
                runs.append([n])
        previous_won = n in wins
    return ", ".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs)


def compare_sweep(sweep: list[dict]) -> tuple[list[str], list[str]]:
    """Claims about which backend wins at which batch sizes, and warnings for those withheld.

    At each batch, one backend beats another only when their ranges (:data:`SPREAD`) do not
    overlap; where they overlap the sweep measured no difference. For each pair of backends,
    per sweep family and dtype, when every batch is decided: "numba beats numpy from batch
    N" when one wins at every batch from N up, "... at every batch" when it always wins, and
    the batch ranges otherwise. When some batches overlap, no crossover and no "every batch"
    claim is made: the claims name only the batches each side won outright, and a warning
    names the batches where the spreads overlap. Records without a range count as exact.

    Returns
    -------
    claims, warnings : list of str
    """
    claims: list[str] = []
    warnings: list[str] = []
    for family, dtype in dict.fromkeys((r["family"], r["dtype"]) for r in sweep):
        table: dict[str, dict[int, dict]] = {}
        for r in sweep:
            if (r["family"], r["dtype"]) == (family, dtype):
                table.setdefault(r["backend"], {})[r["batch"]] = r
        where = f"({family}, {dtype})"
        names = list(table)
        if len(names) < 2:
            claims.append(f"only {', '.join(names)} ran the sweep {where}: no crossover to report")
            continue
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                _compare_pair(a, table[a], b, table[b], where, claims, warnings)
    return claims, warnings


def _compare_pair(
    a: str,
    records_a: dict[int, dict],
    b: str,
    records_b: dict[int, dict],
    where: str,
    claims: list[str],
    warnings: list[str],
) -> None:
    """Append the claims about backends ``a`` and ``b`` (their records by batch), or, where
    their spreads overlap at some batch, the outright wins only and a warning."""
    batches = sorted(set(records_a) & set(records_b))
    ra = {n: records_a[n]["train_samples_per_sec"] for n in batches}
    rb = {n: records_b[n]["train_samples_per_sec"] for n in batches}
    tied = [
        n
        for n in batches
        if ranges_overlap(
            records_a[n].get("train_samples_per_sec_range"),
            records_b[n].get("train_samples_per_sec_range"),
        )
    ]
    decided = [n for n in batches if n not in tied]
    a_wins = [n for n in decided if ra[n] > rb[n]]
    b_wins = [n for n in decided if n not in a_wins]
    if tied:
        for winner, loser, wins in ((a, b, a_wins), (b, a, b_wins)):
            if wins:
                ranges = _win_ranges(batches, set(wins))
                claims.append(f"{winner} beats {loser} at batches {ranges} {where}")
        warnings.append(
            f"{a} vs {b} {where}: spreads ({SPREAD}) overlap at batches "
            f"{_win_ranges(batches, set(tied))}; no claim there and no crossover reported"
        )
        return
    k = len(a_wins)
    span = f"{batches[0]} to {batches[-1]}"
    if k == len(batches):
        claims.append(f"{a} beats {b} at every batch from {span} {where}")
    elif k == 0:
        claims.append(f"{b} beats {a} at every batch from {span} {where}")
    elif a_wins == batches[-k:]:
        claims.append(f"{a} beats {b} from batch {a_wins[0]} {where}")
    elif a_wins == batches[:k]:
        claims.append(f"{b} beats {a} from batch {batches[k]} {where}")
    else:
        ranges = _win_ranges(batches, set(a_wins))
        claims.append(f"{a} beats {b} at batches {ranges}; {b} at the others {where}")


def crossovers(sweep: list[dict]) -> list[str]:
    """The claims of :func:`compare_sweep` (sentences saying which backend wins where)."""
    return compare_sweep(sweep)[0]
