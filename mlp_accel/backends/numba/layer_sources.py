"""The sources of the per-layer kernel modules: one per activation (bias + activation,
derivative + column sums) and one per (loss, output activation) pair (the loss and its
gradient from the logits), rendered from the math table (:mod:`mlp_accel.ops`).

:func:`.kernels.layer_module` and :func:`.kernels.output_module` write them to
the kernel cache directory and import them.
"""

from __future__ import annotations

from ...ops.table import ActivationRow, LossRow, activation_row, loss_row
from .kernels import (
    _SERIAL,
    Constants,
    Writer,
    emit_softmax,
    module_header,
    render_activation,
    render_derivative,
    render_loss_grad,
    render_loss_value,
)

__all__ = ["layer_source", "output_source"]


def layer_source(activation: str, dtype: str) -> str:
    """Source of ``dense_forward``/``dense_backward`` for one activation.

    ``dense_forward(z, b, a)``: ``z += b`` and ``a = f(z)`` row by row (for the identity
    ``a`` may be ``z`` and is left alone). ``dense_backward(grad, z, a, dz, db)``:
    ``dz = f'(z) * grad`` (the softmax VJP for softmax; for the identity ``dz`` may be
    ``grad``) and ``db = sum(dz, axis=0)``, accumulated in float64: float32 sums over a
    large batch would drift from NumPy's pairwise sum.
    """
    row = activation_row(activation)
    c = Constants()
    w = Writer()
    w("")
    w("")
    w(_SERIAL)
    w("def dense_forward(z, b, a):")
    with w.indent():
        w("n, m = z.shape")
        w("for r in range(n):")
        with w.indent():
            w("for j in range(m):")
            w("    z[r, j] += b[j]")
            if row.name == "softmax":
                emit_softmax(w, "m", lambda k: f"z[r, {k}]", lambda k: f"a[r, {k}]", "_exp_neg")
            elif row.name != "identity":
                w("for j in range(m):")
                w(f"    a[r, j] = {render_activation(row, 'z[r, j]', c)}")
    w("")
    w("")
    w(_SERIAL)
    w("def dense_backward(grad, z, a, dz, db):")
    with w.indent():
        w("n, m = grad.shape")
        w("acc = np.zeros(m)")
        w("for r in range(n):")
        with w.indent():
            if row.name == "softmax":
                w("dot = _0")
                w("for j in range(m):")
                w("    dot += grad[r, j] * a[r, j]")
                w("for j in range(m):")
                w("    dz[r, j] = a[r, j] * (grad[r, j] - dot)")
            elif row.name == "identity":
                w("for j in range(m):")
                w("    dz[r, j] = grad[r, j]")
            else:
                der = render_derivative(row, "z[r, j]", "a[r, j]", c)
                w("for j in range(m):")
                w(f"    dz[r, j] = grad[r, j] * ({der})")
            w("for j in range(m):")
            w("    acc[j] += dz[r, j]")
        w("for j in range(m):")
        w("    db[j] = acc[j]")
    header = module_header(f"the {activation!r} layer kernels ({row.expr})", dtype, c)
    return "\n".join(header + w.lines) + "\n"


def output_source(loss: str, activation: str, dtype: str) -> str:
    """Source of ``loss_sum`` and ``output_loss_gradient``.

    ``loss_sum(z, yhat, y)``: the loss summed over the batch from the logits, accumulated in
    float64. ``output_loss_gradient(z, yhat, y, scale, dz)``: that sum, and
    ``dz = dL/dz`` with ``L = sum * scale``. For the matched pair of the loss (sigmoid + binary
    cross-entropy, softmax + cross-entropy, identity + squared error, exp + poisson)
    ``dz = (yhat - y) * scale`` exactly; otherwise the chain rule through the activation.
    """
    lrow, arow = loss_row(loss), activation_row(activation)
    c = Constants()
    w = Writer()
    w("")
    w("")
    w(_SERIAL)
    _row_loss(w, lrow, c)
    w("")
    w("")
    w(_SERIAL)
    w("def loss_sum(z, yhat, y):")
    with w.indent():
        w("total = 0.0")
        w("for r in range(z.shape[0]):")
        w("    total += _row_loss(z, yhat, y, r)")
        w("return total")
    w("")
    w("")
    w(_SERIAL)
    w("def output_loss_gradient(z, yhat, y, scale, dz):")
    with w.indent():
        w("n, m = z.shape")
        w("sc = DT(scale)")
        w("total = 0.0")
        w("for r in range(n):")
        with w.indent():
            w("total += _row_loss(z, yhat, y, r)")
            _row_gradient(w, lrow, arow, c)
        w("return total")
    header = module_header(f"the {loss!r} output with {activation!r}", dtype, c)
    return "\n".join(header + w.lines) + "\n"


def _row_loss(w: Writer, lrow: LossRow, c: Constants) -> None:
    """``_row_loss(z, yhat, y, r)``: the loss of row ``r`` from the logits."""
    w("def _row_loss(z, yhat, y, r):")
    with w.indent():
        w('"""Loss of row ``r`` from the logits."""')
        w("m = z.shape[1]")
        w("total = 0.0")
        if lrow.value_tree is None:  # cross-entropy: sum_j y_j (logsumexp(z) - z_j)
            w("top = z[r, 0]")
            w("for k in range(1, m):")
            w("    if z[r, k] > top:")
            w("        top = z[r, k]")
            w("s = 0.0")
            w("for k in range(m):")
            w("    s += _exp_neg(z[r, k] - top)")
            w("lse = top + math.log(s)")
            w("for k in range(m):")
            w("    total += y[r, k] * (lse - z[r, k])")
        else:
            value = render_loss_value(lrow, "z[r, j]", "yhat[r, j]", "y[r, j]", c)
            w("for j in range(m):")
            w(f"    total += {value}")
        w("return total")


def _row_gradient(w: Writer, lrow: LossRow, arow: ActivationRow, c: Constants) -> None:
    """Lines setting row ``r`` of ``dz``: the matched pair's ``(yhat - y) * scale``, or the
    chain rule through the activation (the softmax's Jacobian for softmax)."""
    grad = render_loss_grad(lrow, "yhat[r, j]", "y[r, j]", c)
    if lrow.matched == arow.name:
        w("for j in range(m):")
        w("    dz[r, j] = (yhat[r, j] - y[r, j]) * sc")
    elif arow.name == "softmax":  # p * (g - <g, p>)
        w("dot = _0")
        w("for j in range(m):")
        w(f"    dot += ({grad}) * sc * yhat[r, j]")
        w("for j in range(m):")
        w(f"    dz[r, j] = yhat[r, j] * (({grad}) * sc - dot)")
    else:
        der = render_derivative(arow, "z[r, j]", "yhat[r, j]", c)
        w("for j in range(m):")
        w(f"    dz[r, j] = ({grad}) * sc * ({der})")
