"""Lines of generated network kernels shared by every strategy (:mod:`.fused`,
:mod:`.unrolled`, :mod:`.generic`): an activation and its derivative from the
math table, and the output layer's loss and dz, written in this one place.
"""

from __future__ import annotations

from collections.abc import Callable

from ...ops.table import activation_row, loss_row
from ..base import NetworkSpec
from .kernels import (
    Writer,
    emit_softmax,
    render_activation,
    render_derivative,
    render_loss_grad,
    render_loss_value,
)

__all__ = ["act", "der", "emit_element_output", "emit_softmax_output"]


def act(w: Writer, name: str, z: str) -> str:
    """The table's ``f(z)`` of activation ``name``, rendered for this module."""
    return render_activation(activation_row(name), z, w.consts, fused=True)


def der(w: Writer, name: str, z: str, a: str) -> str:
    """The table's ``f'(z)`` of activation ``name`` (given ``a = f(z)``)."""
    return render_derivative(activation_row(name), z, a, w.consts, fused=True)


def emit_element_output(w: Writer, spec: NetworkSpec) -> None:
    """Lines that set ``lv`` (loss) and ``g`` (dz) of one output element from the logit ``v``,
    the target ``yk`` and the scale ``sc``: the one place the fused kernels write the loss.

    Matched pairs take ``g = (p - yk) * sc`` exactly; other pairs the chain rule.
    """
    out, lrow = spec.activations[-1], loss_row(spec.loss)
    w(f"p = {act(w, out, 'v')}")
    w(f"lv = {render_loss_value(lrow, 'v', 'p', 'yk', w.consts)}")
    if lrow.matched == out:
        w("g = (p - yk) * sc")
    else:
        grad = render_loss_grad(lrow, "p", "yk", w.consts)
        w(f"g = ({grad}) * sc * {der(w, out, 'v', 'p')}")


def emit_softmax_output(
    w: Writer,
    spec: NetworkSpec,
    z: Callable[[str], str],
    y: Callable[[str], str],
    g: Callable[[str], str],
) -> None:
    """Lines for one row of a softmax output: the row's loss into ``lrow`` and its dz into
    ``g(k)`` (which first holds the probabilities); ``z(k)``, ``y(k)`` read logits, targets."""
    dL, lrow = spec.widths[-1], loss_row(spec.loss)
    emit_softmax(w, str(dL), z, g, "_exp_neg")
    w("lrow = 0.0")
    if lrow.value_tree is None:  # cross-entropy: sum_k y_k (logsumexp(z) - z_k)
        w("lse = top + math.log(tot)")
        w(f"for k in range({dL}):")
        w(f"    lrow += {y('k')} * (lse - {z('k')})")
    else:
        value = render_loss_value(lrow, z("k"), g("k"), y("k"), w.consts)
        w(f"for k in range({dL}):")
        w(f"    lrow += {value}")
    if lrow.matched == "softmax":  # matched pair: dz = (softmax(z) - y) * scale
        w(f"for k in range({dL}):")
        w(f"    {g('k')} = ({g('k')} - {y('k')}) * sc")
        return
    # the loss gradient through the softmax Jacobian: p * (g - <g, p>)
    grad = render_loss_grad(lrow, g("k"), y("k"), w.consts)
    w("dot = _0")
    w(f"for k in range({dL}):")
    w(f"    dot += ({grad}) * sc * {g('k')}")
    w(f"for k in range({dL}):")
    w(f"    {g('k')} = {g('k')} * (({grad}) * sc - dot)")
