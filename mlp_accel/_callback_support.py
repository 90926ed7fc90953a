"""What the callbacks of :mod:`mlp_accel.callbacks` share: the monitored value and its
improvement, the checks of a state read back from a checkpoint, and the CSV log's text."""

from __future__ import annotations

import math
import os
from typing import Any

__all__ = [
    "sign_of",
    "monitored",
    "improves",
    "fields",
    "count",
    "real",
    "best_in",
    "best_out",
    "weights",
    "csv_state",
    "csv_line",
    "read_appended",
]


def sign_of(monitor: Any, mode: Any) -> float:
    """``1.0`` when ``monitor`` is minimized, ``-1.0`` when it is maximized."""
    if not isinstance(monitor, str):
        raise TypeError(f"monitor must be the name of a logged metric, got {monitor!r}")
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode == "auto":
        return 1.0 if monitor.endswith("loss") else -1.0
    return 1.0 if mode == "min" else -1.0


def monitored(owner: str, monitor: str, logs: dict[str, Any]) -> float:
    """The monitored value of the epoch ``logs``; a ``ValueError`` naming the keys they hold
    where they lack it."""
    if monitor not in logs:
        # The hint only where it applies: not for a misspelt key, nor with validation data.
        validated = any(key.startswith("val_") for key in logs)
        hint = ""
        if monitor.startswith("val_") and not validated:
            hint = "; pass validation_data to fit for val_* metrics"
        raise ValueError(
            f"{owner} monitors {monitor!r}, but the epoch logs hold {', '.join(sorted(logs))}{hint}"
        )
    return float(logs[monitor])


def improves(sign: float, value: float, best: float, min_delta: float) -> bool:
    """Whether ``value`` beats ``best`` by more than ``min_delta`` (NaN never does)."""
    return sign * value < sign * best - min_delta


# -- the checks of a state: a malformed one is refused before anything is assigned ----------
def fields(state: Any, *names: str) -> list[Any]:
    """The values of ``names`` in the mapping ``state``, all of them required."""
    if not isinstance(state, dict):
        raise ValueError(f"the state is not a mapping: {state!r}")
    missing = [name for name in names if name not in state]
    if missing:
        raise ValueError(f"the state lacks {', '.join(missing)}")
    return [state[name] for name in names]


def count(value: Any, name: str) -> int:
    """A non-negative JSON integer."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name} {value!r} is not a non-negative integer")
    return value


def real(value: Any, name: str) -> float:
    """A JSON number that is not NaN."""
    if not isinstance(value, int | float) or isinstance(value, bool) or math.isnan(value):
        raise ValueError(f"{name} {value!r} is not a number")
    return float(value)


def best_in(value: Any, sign: float) -> float:
    """A saved best value (``None``: none yet) as the callbacks hold it."""
    return sign * math.inf if value is None else real(value, "best")


def best_out(best: float) -> float | None:
    """A best value as a state saves it: ``None`` for none yet (JSON has no infinity)."""
    return best if math.isfinite(best) else None


def weights(params: Any, model: Any) -> list[Any]:
    """Saved weights (an EarlyStopping's best) checked against ``model``: host arrays."""
    from ._validation import check_weights

    shapes = model.weight_shapes
    if not isinstance(params, list) or len(params) != len(shapes):
        raise ValueError(f"best_params are not {len(shapes)} arrays")
    try:
        return check_weights(params, shapes, model.dtype)
    except TypeError as exc:
        raise ValueError(f"best_params: {exc}") from None


def csv_state(state: Any) -> tuple[str, list[str] | None]:
    """A CSVLogger's saved text and columns."""
    text, columns = fields(state, "text", "columns")
    if not isinstance(text, str):
        raise ValueError("text is not a string")
    if columns is not None and not (
        isinstance(columns, list) and all(isinstance(c, str) for c in columns)
    ):
        raise ValueError(f"columns {columns!r} are not a list of names")
    return text, columns


# -- the CSV log ------------------------------------------------------------------------------
def _cell(value: Any) -> str:
    """A log value as CSV text: integers as such, reals by ``repr`` (which reads back)."""
    import numbers

    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return str(value)
    if isinstance(value, numbers.Integral):
        return str(int(value))
    return repr(float(value))


def csv_line(cells: list[Any], separator: str) -> str:
    """One CSV line of ``cells``, quoted where a cell needs it, ending in ``\\n``."""
    import csv
    import io

    out = io.StringIO()
    csv.writer(out, delimiter=separator, lineterminator="\n").writerow(map(_cell, cells))
    return out.getvalue()


def read_appended(path: str) -> str:
    """The text of the CSV file that a log appends to (empty if there is none), ending in a
    newline unless empty."""
    if not os.path.isfile(path):
        return ""
    try:
        with open(path, encoding="utf-8", newline="") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"CSVLogger cannot append to {path}: {exc}") from None
    return text if not text or text.endswith("\n") else text + "\n"
