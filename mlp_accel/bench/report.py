"""Presenting a bench report: the text table, a markdown table, the JSON file, the plot.

A report is the dict :func:`mlp_accel.bench.run_bench` returns; everything here reads only
that, so a saved JSON file can be turned into a table or a plot again.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

from ..io import atomic_write
from .firstrun import FIRST_RUN_NOTE

__all__ = [
    "format_table",
    "format_markdown",
    "write_json",
    "plot_report",
    "COLUMN_NOTES",
    "PREDICT_NOTE",
]

#: What each column means; printed under the table and in the README.
COLUMN_NOTES: tuple[tuple[str, str], ...] = (
    ("train/s", "samples/s of MLP.train_step (forward + backward + Adam) on device data"),
    (
        "range",
        "train/s of the slowest and the fastest round (spread: min-max over rounds); "
        "a claim that one row beats another needs the two ranges apart",
    ),
    ("rounds", "interleaved rounds timed for train/s"),
    ("fit/s", "samples/s through ma.fit (full batch per epoch, a few epochs per call)"),
    ("infer/s", "samples/s of the forward pass"),
    (
        "x numpy",
        "train/s over the numpy backend's train/s; ~ = the ranges overlap (no measured difference)",
    ),
    ("fit/lean", "fit/s over the lean NumPy reference's train/s (numpy target: >= 0.90)"),
    ("x <peer>", "train/s over that peer's train/s (above 1: faster than the peer)"),
    ("%GEMM", "train FLOP rate (6 x batch x sum(n_in x n_out) per step) / GEMM rate"),
    (
        "step alloc",
        "peak bytes one training step allocates, as tracemalloc sees them: complete for NumPy "
        "and scikit-learn; >= a lower bound on numba (its compiled code allocates unseen); "
        "- on PyTorch (own allocator); 'dev' = the CuPy pool on a GPU",
    ),
    (
        "min",
        "the least a training step needs: 4 copies of the parameters (weights, gradients, "
        "Adam's two moments), the batch and its targets, and each layer's z and a",
    ),
)


def _si(x: float | None) -> str:
    """Samples/s with an SI suffix, three significant digits."""
    if x is None:
        return "-"
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return f"{x / scale:.3g}{suffix}"
    return f"{x:.3g}"


def _ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def _percent(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def _bytes(value: int | None) -> str:
    if value is None:
        return "-"
    return f"{value / 2**10:.0f} KiB" if value < 2**20 else f"{value / 2**20:.0f} MiB"


def _step_memory(row: dict[str, Any]) -> str:
    if row.get("pool_total_bytes") is not None:
        return f"{row['pool_total_bytes'] / 2**20:.0f} MiB dev"
    value = row.get("step_alloc_bytes")
    if value is None or str(row.get("impl", "")).startswith("torch"):
        return "-"
    return _bytes(value) if row.get("step_alloc_complete", True) else f">={_bytes(value)}"


def _range(rng: list[float] | None) -> str:
    return "-" if not rng else f"{_si(rng[0])}-{_si(rng[1])}"


def _marked_ratio(x: float | None, overlaps: bool | None) -> str:
    return ("~" if overlaps else "") + _ratio(x)


def _seconds(x: dict | None) -> str:
    return "-" if not x else f"{x['seconds']:.1f} s"


def _peer_names(report: dict[str, Any]) -> list[str]:
    return list(dict.fromkeys(r["impl"] for r in report["rows"] if r["kind"] == "peer"))


def _columns(report: dict[str, Any]) -> list[tuple[str, Callable[[dict], str]]]:
    columns: list[tuple[str, Callable[[dict], str]]] = [
        ("shape", lambda r: r["shape"]),
        ("dtype", lambda r: r["dtype"]),
        ("impl", lambda r: r["label"]),
        ("train/s", lambda r: _si(r["train_samples_per_sec"])),
        ("range", lambda r: _range(r.get("train_samples_per_sec_range"))),
        ("rounds", lambda r: str(r.get("train_rounds") or "-")),
        ("fit/s", lambda r: _si(r["fit_samples_per_sec"])),
        ("infer/s", lambda r: _si(r["infer_samples_per_sec"])),
        (
            "x numpy",
            lambda r: _marked_ratio(r.get("ratio_to_numpy"), r.get("ratio_to_numpy_overlaps")),
        ),
        ("fit/lean", lambda r: _ratio(r.get("fit_to_lean"))),
    ]
    for peer in _peer_names(report):
        columns.append(
            (
                f"x {peer}",
                lambda r, p=peer: _marked_ratio(
                    r.get("ratio_to_peer", {}).get(p), r.get("ratio_to_peer_overlaps", {}).get(p)
                ),
            )
        )
    columns += [
        ("%GEMM", lambda r: _percent(r.get("gemm_fraction"))),
        ("step alloc", _step_memory),
        ("min", lambda r: _bytes(r.get("min_train_bytes"))),
    ]
    if any("first_run" in r for r in report["rows"]):
        columns.append(("first run", lambda r: _seconds(r.get("first_run"))))
    return columns


def _header_lines(report: dict[str, Any]) -> list[str]:
    h = report["header"]
    cfg = report["config"]
    threads = h["threads"]
    pools = ", ".join(
        f"{p['internal_api']} {p.get('version') or ''} x{p['num_threads']} ({p['library']})"
        for p in threads["threadpools"]
    ).replace("  ", " ")
    extra = [f"{k} {threads[k]}" for k in ("numba", "torch") if k in threads]
    limit = f"limit {threads['limit']}" if threads.get("limit") else "no limit (library defaults)"
    versions = ", ".join(f"{k} {v}" for k, v in h["versions"].items())

    def gemm_rate(g: dict) -> str:
        spread = g.get("gflops_range")
        span = f" ({spread[0]:.1f}-{spread[1]:.1f}, {g['rounds']} calls)" if spread else ""
        return f"{g['backend']} {g['dtype']} {g['gflops']:.1f}{span}"

    gemm = ", ".join(gemm_rate(g) for g in report.get("gemm", []))
    mem = f", {h['memory_gib']} GiB" if h.get("memory_gib") else ""

    def load(key: str) -> str:
        return " ".join(map(str, h.get(key) or [])) or "unknown"

    busy = h.get("contended")
    if busy:
        pinned = f"pinned to CPU {busy['cpu']}" if busy.get("pinned") else "not pinned"
        ran = f", {busy['cpu_seconds']} CPU s" if busy.get("cpu_seconds") is not None else ""
        contended = f"contended: a busy process ({pinned}{ran}) ran the whole time"
    else:
        contended = "contended: no (no process started by the bench competes)"
    before = load("load_average_before") if "load_average_before" in h else "unknown"
    after = load("load_average_after") if "load_average_after" in h else load("load_average")
    return [
        f"mlp-accel bench, {h['date']}{' (quick)' if cfg['quick'] else ''}",
        f"machine: {h['cpu']}, {h['logical_cpus']} logical CPUs ({h['usable_cpus']} usable)"
        f"{mem}; GPU: {h.get('gpu') or 'none'}; {h['platform']}",
        f"load average (1, 5, 15 min): before {before}, after {after}; {contended}; "
        f"spread: {h.get('spread', 'not measured')}",
        f"threads: {'; '.join([pools, *extra])}; {limit}",
        *(f"warning: {w}" for w in h.get("warnings", [])),
        f"versions: {versions}",
        f"GEMM rate (GFLOP/s, square matmul, best call (slowest-best)): {gemm or 'not measured'}",
        f"backends: {', '.join(cfg['backends'])}",
    ]


def _notes(report: dict[str, Any]) -> list[tuple[str, str]]:
    notes = list(COLUMN_NOTES)
    if any("first_run" in r for r in report["rows"]):
        notes.append(("first run", FIRST_RUN_NOTE))
    return notes


def _sweep_table(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    sweep = report.get("sweep", [])
    series = list(dict.fromkeys((r["family"], r["backend"]) for r in sweep))
    batches = sorted({r["batch"] for r in sweep})
    records = {(r["family"], r["backend"], r["batch"]): r for r in sweep}

    def cell(record: dict | None) -> str:
        if record is None:
            return "-"
        spread = record.get("train_samples_per_sec_range")
        rate = _si(record["train_samples_per_sec"])
        return f"{rate} ({_range(spread)})" if spread else rate

    head = ["batch", *(f"{family} {backend}" for family, backend in series)]
    body = [[str(b), *(cell(records.get((f, k, b))) for f, k in series)] for b in batches]
    return head, body


#: How to read the inference rows; printed above their table.
PREDICT_NOTE = (
    "predict_proba samples/s ({dtype}), median (slowest-fastest round), from a NumPy batch "
    "to NumPy probabilities; batch 1 on one thread, larger batches on the threads shown; "
    "vs onnxruntime = the fastest backend's median over onnxruntime's (~: the spreads "
    "overlap, no measured difference)"
)


def _predict_table(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The inference rows as a grid: one line per network and batch size, one column per
    implementation, and the fastest backend against onnxruntime."""
    rows = report.get("predict", [])
    impls = list(dict.fromkeys(r["label"] for r in rows))
    cases = list(dict.fromkeys((r["network"], r["batch"]) for r in rows))
    by_case: dict[tuple[str, int], dict[str, dict]] = {}
    for r in rows:
        by_case.setdefault((r["network"], r["batch"]), {})[r["label"]] = r

    def cell(r: dict | None) -> str:
        if r is None:
            return "-"
        return f"{_si(r['samples_per_sec'])} ({_range(r.get('samples_per_sec_range'))})"

    def versus(found: dict[str, dict]) -> str:
        ours = [r for r in found.values() if r["kind"] == "backend"]
        best = max(ours, key=lambda r: r["samples_per_sec"], default=None)
        if best is None or best.get("ratio_to_onnxruntime") is None:
            return "-"
        ratio = _marked_ratio(best["ratio_to_onnxruntime"], best["ratio_to_onnxruntime_overlaps"])
        return f"{best['impl']} {ratio}"

    head = ["network", "batch", "threads", *impls, "vs onnxruntime"]
    body = []
    for network, batch in cases:
        found = by_case[(network, batch)]
        threads = str(next(iter(found.values()))["threads"])
        layers = "-".join(map(str, next(iter(found.values()))["layers"]))
        cells = [cell(found.get(i)) for i in impls]
        body.append([f"{network} {layers}", str(batch), threads, *cells, versus(found)])
    return head, body


def _text_grid(head: list[str], body: list[list[str]]) -> list[str]:
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in body]
    return lines


def format_table(report: dict[str, Any]) -> str:
    """The report as the plain-text table ``mlp-accel bench`` prints."""
    columns = _columns(report)
    head = [name for name, _ in columns]
    body = [[fn(row) for _, fn in columns] for row in report["rows"]]
    lines = [*_header_lines(report), ""]
    if body or not report.get("predict"):  # --predict-only has no training table
        lines += _text_grid(head, body) if body else ["(no measurements)"]
        lines += ["", "columns: " + "; ".join(f"{k} = {v}" for k, v in _notes(report))]
        lines += ["(ref) = hand-written NumPy reference; (peer) = another library, same step"]
    if report.get("sweep"):
        dtype = report["sweep"][0]["dtype"]
        lines += [
            "",
            f"batch-size sweep: train samples/s ({dtype}), median (slowest-fastest round)",
        ]
        lines += _text_grid(*_sweep_table(report))
    if report.get("predict"):
        lines += ["", PREDICT_NOTE.format(dtype=report["predict"][0]["dtype"]) + ":"]
        lines += _text_grid(*_predict_table(report))
    if report.get("crossovers"):
        lines += ["", "crossovers:", *(f"  {c}" for c in report["crossovers"])]
    if report.get("warnings"):
        lines += ["", "warning, claims withheld:", *(f"  {w}" for w in report["warnings"])]
    if report.get("skipped"):
        lines += ["", "skipped:"]
        lines += [f"  {_skip_text(s)}" for s in report["skipped"]]
    lines += ["", f"wall time {report['wall_seconds']:.1f} s"]
    # The answer to the run's question comes last, where a reader's eye lands.
    lines += report.get("advice", [])
    return "\n".join(lines)


def _skip_text(s: dict[str, Any]) -> str:
    where = " ".join(str(s[k]) for k in ("shape", "dtype") if k in s)
    return f"{s['what']}{' ' + where if where else ''}: {s['reason']}"


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def format_markdown(report: dict[str, Any]) -> str:
    """The report as markdown: a header list, the table, the sweep and its crossovers."""
    columns = _columns(report)
    lines = [f"- {line}" for line in _header_lines(report)]
    if report["rows"] or not report.get("predict"):
        lines += ["", _md_row([name for name, _ in columns])]
        lines.append("|" + "|".join("---" if i < 3 else "---:" for i in range(len(columns))) + "|")
        lines += [_md_row([fn(row) for _, fn in columns]) for row in report["rows"]]
    if report.get("sweep"):
        head, body = _sweep_table(report)
        dtype = report["sweep"][0]["dtype"]
        lines += [
            "",
            f"Batch-size sweep, train samples/s ({dtype}), median (slowest-fastest round):",
            "",
        ]
        lines += [_md_row(head), "|" + "|".join(["---:"] * len(head)) + "|"]
        lines += [_md_row(row) for row in body]
    if report.get("predict"):
        head, body = _predict_table(report)
        lines += ["", PREDICT_NOTE.format(dtype=report["predict"][0]["dtype"]) + ":", ""]
        lines += [
            _md_row(head),
            "|" + "|".join(["---", "---:", "---:"] + ["---:"] * (len(head) - 3)) + "|",
        ]
        lines += [_md_row(row) for row in body]
    if report.get("crossovers"):
        lines += ["", *(f"- {c}" for c in report["crossovers"])]
    if report.get("warnings"):
        lines += ["", *(f"- **claim withheld**: {w}" for w in report["warnings"])]
    if report.get("skipped"):
        lines += ["", "Skipped here:", ""]
        lines += [f"- {_skip_text(s)}" for s in report["skipped"]]
    if report.get("advice"):
        lines += ["", *(f"- **{a}**" for a in report["advice"])]
    return "\n".join(lines)


def write_json(report: dict[str, Any], path: str | os.PathLike) -> None:
    """Write the report as JSON, atomically (a crash leaves any earlier file intact)."""
    data = json.dumps(report, indent=2, sort_keys=False, default=str).encode("utf-8")
    atomic_write(path, lambda f: f.write(data + b"\n"))


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError("--plot needs matplotlib: pip install 'mlp-accel[plot]'") from exc
    return plt


def plot_report(report: dict[str, Any], path: str | os.PathLike) -> None:
    """Save a PNG: train samples/s per implementation and shape (bars, one panel per dtype),
    and the batch-size sweep (throughput against batch size per backend).

    Raises
    ------
    ImportError
        If matplotlib is not installed (``pip install 'mlp-accel[plot]'``).
    """
    plt = _pyplot()
    import numpy as np

    dtypes = list(dict.fromkeys(r["dtype"] for r in report["rows"]))
    families = list(dict.fromkeys(r["family"] for r in report.get("sweep", [])))
    ncols = max(len(dtypes), len(families), 1)
    nrows = 1 + bool(families)
    fig, axes = plt.subplots(nrows, ncols, figsize=(7 * ncols, 4.5 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.set_visible(False)
    for ax, dtype in zip(axes[0], dtypes):
        rows = [r for r in report["rows"] if r["dtype"] == dtype]
        shapes = list(dict.fromkeys(r["shape"] for r in rows))
        impls = list(dict.fromkeys(r["label"] for r in rows))
        width = 0.8 / max(len(impls), 1)
        for k, impl in enumerate(impls):
            values = {r["shape"]: r["train_samples_per_sec"] for r in rows if r["label"] == impl}
            x = np.arange(len(shapes)) + (k - (len(impls) - 1) / 2) * width
            heights = [values.get(s, 0.0) for s in shapes]
            hatch = "//" if "(peer)" in impl else ".." if "(ref)" in impl else None
            ax.bar(x, heights, width, label=impl, hatch=hatch)
        ax.set_xticks(np.arange(len(shapes)), shapes, rotation=15)
        ax.set(yscale="log", ylabel="train samples/s", title=f"Training step, {dtype}")
        ax.legend(fontsize=8)
        ax.set_visible(True)
    if families:
        for ax, family in zip(axes[1], families):
            records = [r for r in report["sweep"] if r["family"] == family]
            for backend in dict.fromkeys(r["backend"] for r in records):
                pts = sorted(
                    (
                        r["batch"],
                        r["train_samples_per_sec"],
                        *(r.get("train_samples_per_sec_range") or [r["train_samples_per_sec"]] * 2),
                    )
                    for r in records
                    if r["backend"] == backend
                )
                batch, rate, low, high = zip(*pts)
                (line,) = ax.plot(batch, rate, marker="o", label=backend)
                # The band is the spread (slowest to fastest round): curves whose bands
                # overlap are not measured apart.
                ax.fill_between(batch, low, high, color=line.get_color(), alpha=0.2)
            layers = "-".join(map(str, records[0]["layers"]))
            ax.set(
                xscale="log",
                yscale="log",
                xlabel="batch size",
                ylabel="train samples/s",
                title=f"Batch-size sweep, {family} [{layers}], {records[0]['dtype']}",
            )
            ax.legend(fontsize=8)
            ax.set_visible(True)
    fig.suptitle(f"mlp-accel bench, {report['header']['cpu']}, {report['header']['date'][:10]}")
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))
    plt.close(fig)
