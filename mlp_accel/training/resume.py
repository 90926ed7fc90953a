"""Resuming a :func:`~mlp_accel.fit` run from a checkpoint, as the run it continues.

A checkpoint records the run's batch size, gradient accumulation and learning-rate schedule
(:class:`RunSettings`), and a resume takes them from it: a resume that quietly trained with
other ones would be another run, and one that fell back to the full batch would read a
memory-mapped file whole. So ``fit`` tells a keyword left out (:data:`NOT_GIVEN`) from one
given, ``batch_size=None`` included, and refuses a given value that differs from the
checkpoint's.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from .._validation import check_count
from ..optim import Optimizer, get_optimizer
from ..schedules import Constant, Cosine, InvScaling, Schedule, StepDecay, Warmup

__all__ = [
    "NOT_GIVEN",
    "NotGiven",
    "RunSettings",
    "schedule_spec",
    "schedule_from_spec",
    "run_options",
    "resume",
]


class _NotGiven(enum.Enum):
    NOT_GIVEN = "NOT_GIVEN"

    def __repr__(self) -> str:
        return "NOT_GIVEN"


#: The default of the ``fit`` keywords a resume takes from its checkpoint: "left out", as
#: opposed to ``None`` (for ``batch_size``, the full batch).
NOT_GIVEN = _NotGiven.NOT_GIVEN
NotGiven = Literal[_NotGiven.NOT_GIVEN]

# Only these classes, not subclasses, are rebuilt from their attributes: a subclass may
# compute its factor from anything.
_BUILT_IN = {cls.__name__: cls for cls in (Constant, StepDecay, Cosine, InvScaling, Warmup)}


def schedule_spec(schedule: Any) -> dict[str, Any] | None:
    """The JSON description of a schedule that :func:`schedule_from_spec` rebuilds.

    ``None`` for no schedule or :class:`~mlp_accel.schedules.Constant` (the same rates),
    ``{"name": ..., "params": {...}}`` for a built-in schedule, and ``{"custom": repr}`` for
    any other callable, which a checkpoint cannot hold.
    """
    if schedule is None or type(schedule) is Constant:
        return None
    return _spec(schedule)


def _spec(schedule: Any) -> dict[str, Any]:
    cls = type(schedule)
    if _BUILT_IN.get(cls.__name__) is not cls:
        return {"custom": repr(schedule)}
    params = {}
    for key, value in vars(schedule).items():
        if callable(value):  # Warmup's schedule after the warmup
            value = _spec(value)
            if "custom" in value:
                return {"custom": repr(schedule)}
        params[key] = value
    return {"name": cls.__name__, "params": params}


def schedule_from_spec(spec: Any) -> Schedule | None:
    """The schedule that :func:`schedule_spec` described (``None`` for none).

    Raises
    ------
    ValueError
        A malformed description, or a custom schedule's (which only its code can rebuild).
    """
    if spec is None:
        return None
    if not isinstance(spec, dict):
        raise ValueError(f"a schedule is described by a mapping, not {spec!r}")
    if "custom" in spec:
        raise ValueError(f"the custom schedule {spec['custom']} cannot be rebuilt from a file")
    cls, params = _BUILT_IN.get(spec.get("name")), spec.get("params")
    if cls is None or not isinstance(params, dict):
        raise ValueError(f"unknown schedule {spec.get('name')!r}")
    if isinstance(params.get("after"), dict):
        params = {**params, "after": schedule_from_spec(params["after"])}
    try:
        return cls(**params)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"invalid schedule {spec}: {exc}") from None


@dataclass(frozen=True)
class RunSettings:
    """What a checkpoint records of its run: ``batch_size`` (``None``: the full batch),
    ``accumulate`` and the schedule's :func:`schedule_spec`."""

    batch_size: int | None
    accumulate: int
    schedule: dict[str, Any] | None

    def to_json(self) -> dict[str, Any]:
        """The settings as the checkpoint's JSON holds them."""
        return {
            "batch_size": self.batch_size,
            "accumulate": self.accumulate,
            "schedule": self.schedule,
        }

    @classmethod
    def from_json(cls, path: str, raw: Any) -> RunSettings | None:
        """The settings a checkpoint at ``path`` recorded (``None`` if it recorded none).

        Raises
        ------
        ValueError
            Malformed settings; the message names the file.
        """
        if raw is None:
            return None
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: the checkpoint's run settings are not a mapping")
        try:
            batch_size = check_count(raw.get("batch_size"), "batch_size", allow_none=True)
            accumulate = check_count(raw.get("accumulate"), "accumulate")
            spec = raw.get("schedule")
            if not (isinstance(spec, dict) and "custom" in spec):
                schedule_from_spec(spec)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path}: invalid run settings: {exc}") from None
        return cls(batch_size, accumulate, spec)


def _differs(path: Any, name: str, saved: str, given: str) -> ValueError:
    return ValueError(
        f"resume_from={os.fspath(path)!r} continues a run that trained with {name}={saved}, "
        f"not {given}: leave {name} out to continue it (or give the same value), or train "
        "a new run without resume_from"
    )


def run_options(
    path: Any,
    recorded: RunSettings | None,
    batch_size: int | NotGiven | None,
    accumulate: int | NotGiven,
    schedule: Schedule | Callable[[int, float], float] | NotGiven | None,
) -> tuple[int | None, int, Any]:
    """``fit``'s batch size, accumulation and schedule, checked: the given ones, else the
    checkpoint's when resuming from ``path`` (``None`` for a fresh run), else the defaults.

    Raises
    ------
    ValueError
        A given value differs from the checkpoint's, or the checkpoint does not record one
        that was left out.
    """
    if batch_size is not NOT_GIVEN:
        batch_size = check_count(batch_size, "batch_size", allow_none=True)
    if accumulate is not NOT_GIVEN:
        accumulate = check_count(accumulate, "accumulate")
    if path is None:  # a fresh run: the defaults
        return (
            None if batch_size is NOT_GIVEN else batch_size,
            1 if accumulate is NOT_GIVEN else accumulate,
            None if schedule is NOT_GIVEN else schedule,
        )
    given: dict[str, Any] = {"batch_size": batch_size, "accumulate": accumulate}
    if recorded is None:
        missing = [
            name for name, value in {**given, "schedule": schedule}.items() if value is NOT_GIVEN
        ]
        if missing:
            raise ValueError(
                f"{os.fspath(path)} does not record its run's {', '.join(missing)}: give them "
                "(batch_size=None for the full batch, accumulate=1, schedule=None)"
            )
        return batch_size, accumulate, schedule  # type: ignore[return-value]
    for name in ("batch_size", "accumulate"):
        saved = getattr(recorded, name)
        if given[name] is NOT_GIVEN:
            given[name] = saved
        elif given[name] != saved:
            raise _differs(path, name, repr(saved), repr(given[name]))
    return given["batch_size"], given["accumulate"], _resumed(path, recorded.schedule, schedule)


def _resumed(path: Any, saved: dict[str, Any] | None, schedule: Any) -> Any:
    """The schedule of a resume: the given one if it is the checkpoint's, else the latter."""
    custom = saved["custom"] if saved is not None and "custom" in saved else None
    if schedule is NOT_GIVEN:
        if custom is not None:
            raise ValueError(
                f"{os.fspath(path)} was trained with the schedule {custom}, which a "
                "checkpoint cannot hold: give it again as schedule="
            )
        return schedule_from_spec(saved)
    mine = schedule_spec(schedule)
    if mine != saved and not (custom is not None and mine is not None and "custom" in mine):
        shown = custom if custom is not None else repr(schedule_from_spec(saved))
        raise _differs(path, "schedule", shown, repr(schedule))
    return schedule


def resume(
    model: Any, optimizer: Optimizer | None, path: Any, ck: dict[str, Any]
) -> tuple[Optimizer, dict[str, Any]]:
    """Put the checkpoint ``ck`` read from ``path`` into ``model`` and the optimizer (one
    rebuilt from the checkpoint if ``None``); returns it and the training state."""
    meta = ck["model_meta"]
    mine = (list(model.layers), list(model.activations), model.loss)
    theirs = (meta["layers"], meta["activations"], meta["loss"])
    if mine != theirs:
        raise ValueError(f"checkpoint {os.fspath(path)} is for a model {theirs}, not {mine}")
    if (model.preprocessing is None) != (ck["preprocessing"] is None) or (
        model.preprocessing is not None and not model.preprocessing.same_as(ck["preprocessing"])
    ):
        raise ValueError(
            f"checkpoint {os.fspath(path)} was trained with {ck['preprocessing']} (feature "
            f"scaling, labels), this model has {model.preprocessing}: its weights would not fit"
        )
    model.set_weights(ck["weights"])
    opt_state = ck["optimizer"]
    if optimizer is None:
        optimizer = get_optimizer(opt_state["name"], **opt_state["hyperparameters"])
    optimizer.load_state_dict(opt_state, model.backend)
    state = ck["state"]
    model.rng = ck["rng"]  # of the checkpoint's kind, which may not be the model's
    # The saved rate may be a scheduled one; the base rate is the state's, and the training
    # step (the one writer of the rate) puts it back before the first step.
    return optimizer, state
