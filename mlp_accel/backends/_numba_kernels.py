"""Numba kernels of the ``numba`` backend: one flat module of small ``@njit`` functions.

Each kernel is named after the backend hook it replaces and works in place on C-contiguous
float32/float64 arrays. Serial kernels loop over the batch; their ``*_parallel`` twins split
the rows into ``chunks`` pieces, one per thread (``prange``), and call the serial kernel on
each chunk, so
the arithmetic is written once. The backend picks the parallel twin only where the work is
large enough to pay for waking the thread pool.

``fastmath`` is restricted to reassociation-type flags: with ``nnan``/``ninf`` the compiler
may fold away the NaN and inf checks that catch a diverging training run.

Activations and losses are passed as small integer codes (:data:`ACTIVATION_CODES`,
:data:`LOSS_CODES`) so one compiled kernel serves all of them.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

__all__ = ["ACTIVATION_CODES", "LOSS_CODES", "FASTMATH", "KERNELS"]

#: Only reassociation-type flags: keep NaN/inf semantics intact.
FASTMATH = {"reassoc", "contract", "arcp"}

#: Activation name -> code understood by the kernels.
ACTIVATION_CODES = {
    "identity": 0,
    "relu": 1,
    "leaky_relu": 2,
    "sigmoid": 3,
    "tanh": 4,
    "softmax": 5,
}

#: Loss name -> code understood by the kernels.
LOSS_CODES = {"binary_cross_entropy": 0, "cross_entropy": 1, "squared_error": 2}

_SLOPE = 0.01  # mlp_accel.activations.LEAKY_RELU_SLOPE, restated: kernels cannot import it.

# error_model="numpy": a float division by zero gives inf/NaN (as NumPy does, and the
# divergence check catches) instead of a Python exception, whose check per division keeps
# LLVM from vectorizing any loop that divides (Adam's update, softmax).
_jit = njit(cache=True, fastmath=FASTMATH, error_model="numpy")
_jit_parallel = njit(cache=True, fastmath=FASTMATH, parallel=True, error_model="numpy")


# -- elementwise activation pieces ---------------------------------------------------------
# Python float literals are float64 to Numba; constants taken from a float32 array keep a
# float32 kernel in float32 (and vectorized twice as wide).
@_jit
def _constants(dtype):
    """0, 1/2, 1 and the leaky slope in ``dtype``."""
    return np.array((0.0, 0.5, 1.0, _SLOPE)).astype(dtype)


@_jit
def _activate(z, code):
    # Comparisons are written so a NaN passes through, as np.maximum and np.where do.
    if code == 1:
        return 0.0 if z <= 0.0 else z
    if code == 2:
        return z if z > 0.0 else z * _SLOPE
    if code == 3:
        return 0.5 * (math.tanh(0.5 * z) + 1.0)
    if code == 4:
        return math.tanh(z)
    return z


@_jit
def _derivative(z, a, code):
    if code == 1:
        return 1.0 if z > 0.0 else 0.0
    if code == 2:
        return 1.0 if z > 0.0 else _SLOPE
    if code == 3:
        return a * (1.0 - a)
    if code == 4:
        return 1.0 - a * a
    return 1.0


# -- dense_forward -------------------------------------------------------------------------
@_jit
def dense_forward(z, b, code, a):
    """``z += b`` and ``a = f(z)`` row by row (softmax over each row for code 5).

    For the identity (code 0) ``a`` may be ``z`` itself and is left alone. The activation is
    chosen outside the inner loops, so that the common ones (relu, leaky relu) vectorize.
    """
    n, m = z.shape
    k = _constants(z.dtype)
    zero, half, one, slope = k[0], k[1], k[2], k[3]
    for r in range(n):
        for j in range(m):
            z[r, j] += b[j]
        if code == 1:
            for j in range(m):
                v = z[r, j]
                a[r, j] = zero if v <= zero else v
        elif code == 2:
            for j in range(m):
                v = z[r, j]
                a[r, j] = v if v > zero else v * slope
        elif code == 3:
            for j in range(m):
                a[r, j] = half * (math.tanh(half * z[r, j]) + one)
        elif code == 4:
            for j in range(m):
                a[r, j] = math.tanh(z[r, j])
        elif code == 5:
            top = z[r, 0]
            for j in range(1, m):
                if z[r, j] > top:
                    top = z[r, j]
            total = zero
            for j in range(m):
                e = math.exp(z[r, j] - top)
                a[r, j] = e
                total += e
            inv = one / total
            for j in range(m):
                a[r, j] *= inv


@_jit_parallel
def dense_forward_parallel(z, b, code, a, chunks):
    """:func:`dense_forward` over one chunk of rows per thread."""
    n = z.shape[0]
    for c in prange(chunks):
        lo, hi = c * n // chunks, (c + 1) * n // chunks
        dense_forward(z[lo:hi], b, code, a[lo:hi])


# -- dense_backward ------------------------------------------------------------------------
@_jit
def dense_backward(grad, z, a, code, dz, db):
    """``dz = f'(z) * grad`` (the softmax VJP for code 5) and ``db = sum(dz, axis=0)``.

    For the identity (code 0) ``dz`` may be ``grad`` itself. ``db`` is overwritten.
    """
    n, m = grad.shape
    k = _constants(grad.dtype)
    zero, one, slope = k[0], k[2], k[3]
    # float64 column sums: float32 sums over a large batch would drift from NumPy's pairwise sum
    acc = np.zeros(m)
    for r in range(n):
        if code == 1:
            for j in range(m):
                dz[r, j] = grad[r, j] * (one if z[r, j] > zero else zero)
        elif code == 2:
            for j in range(m):
                dz[r, j] = grad[r, j] * (one if z[r, j] > zero else slope)
        elif code == 3:
            for j in range(m):
                dz[r, j] = grad[r, j] * (a[r, j] * (one - a[r, j]))
        elif code == 4:
            for j in range(m):
                dz[r, j] = grad[r, j] * (one - a[r, j] * a[r, j])
        elif code == 5:
            dot = zero
            for j in range(m):
                dot += grad[r, j] * a[r, j]
            for j in range(m):
                dz[r, j] = a[r, j] * (grad[r, j] - dot)
        else:
            for j in range(m):
                dz[r, j] = grad[r, j]
        for j in range(m):
            acc[j] += dz[r, j]
    for j in range(m):
        db[j] = acc[j]


@_jit_parallel
def dense_backward_parallel(grad, z, a, code, dz, db, chunks):
    """:func:`dense_backward` over one chunk of rows per thread; ``db`` partials added."""
    n, m = grad.shape
    partial = np.zeros((chunks, m), dtype=db.dtype)
    for c in prange(chunks):
        lo, hi = c * n // chunks, (c + 1) * n // chunks
        dense_backward(grad[lo:hi], z[lo:hi], a[lo:hi], code, dz[lo:hi], partial[c])
    for j in range(m):
        db[j] = 0.0
    for c in range(chunks):
        for j in range(m):
            db[j] += partial[c, j]


# -- output layer ---------------------------------------------------------------------------
@_jit
def _row_loss(z, yhat, y, r, loss_code):
    """Loss of row ``r`` from the logits, as the generic formulas compute it."""
    m = z.shape[1]
    total = 0.0
    if loss_code == 0:
        # softplus(z) - y z, stable for any z
        for j in range(m):
            zj = z[r, j]
            total += (0.0 if zj <= 0.0 else zj) - y[r, j] * zj
            total += math.log1p(math.exp(-abs(zj)))
    elif loss_code == 1:
        top = z[r, 0]
        for j in range(1, m):
            if z[r, j] > top:
                top = z[r, j]
        s = 0.0
        for j in range(m):
            s += math.exp(z[r, j] - top)
        lse = top + math.log(s)
        for j in range(m):
            total += y[r, j] * (lse - z[r, j])
    else:
        for j in range(m):
            d = yhat[r, j] - y[r, j]
            total += 0.5 * d * d
    return total


@_jit
def loss_sum(z, yhat, y, loss_code):
    """The loss summed over the batch (accumulated in float64)."""
    total = 0.0
    for r in range(z.shape[0]):
        total += _row_loss(z, yhat, y, r, loss_code)
    return total


@_jit
def output_loss_gradient(z, yhat, y, loss_code, code, fused, scale, dz):
    """Loss sum of the batch and ``dz = dL/dz`` at the output, with ``L = sum * scale``.

    ``fused`` marks a matched output/loss pair (sigmoid + binary cross-entropy, softmax +
    cross-entropy, identity + squared error), for which ``dz = (yhat - y) * scale`` exactly.
    Otherwise the loss is squared error (the only loss that accepts other outputs) and
    ``dz`` is the activation's VJP of ``(yhat - y) * scale``.
    """
    n, m = z.shape
    total = 0.0
    for r in range(n):
        total += _row_loss(z, yhat, y, r, loss_code)
        if fused:
            for j in range(m):
                dz[r, j] = (yhat[r, j] - y[r, j]) * scale
        elif code == 5:
            dot = 0.0
            for j in range(m):
                dot += (yhat[r, j] - y[r, j]) * scale * yhat[r, j]
            for j in range(m):
                dz[r, j] = yhat[r, j] * ((yhat[r, j] - y[r, j]) * scale - dot)
        else:
            for j in range(m):
                g = (yhat[r, j] - y[r, j]) * scale
                dz[r, j] = g * _derivative(z[r, j], yhat[r, j], code)
    return total


@_jit_parallel
def output_loss_gradient_parallel(z, yhat, y, loss_code, code, fused, scale, dz, chunks):
    """:func:`output_loss_gradient` over one chunk of rows per thread."""
    n = z.shape[0]
    partial = np.zeros(chunks)
    for c in prange(chunks):
        lo, hi = c * n // chunks, (c + 1) * n // chunks
        partial[c] = output_loss_gradient(
            z[lo:hi], yhat[lo:hi], y[lo:hi], loss_code, code, fused, scale, dz[lo:hi]
        )
    return partial.sum()


# -- optimizers (in place; 1-D or 2-D of any layout) -------------------------------------
# ``p.ndim`` of an argument is a compile-time constant to Numba, so each branch below is
# compiled only for the arrays it can take; rows of a 2-D array are 1-D views.
@_jit
def _sgd_rows(p, g, lr):
    for i in range(p.shape[0]):
        p[i] -= lr * g[i]


@_jit
def sgd_update(p, g, lr):
    """``p -= lr * g``."""
    lr = np.array((lr,)).astype(p.dtype)[0]
    if p.ndim == 1:
        _sgd_rows(p, g, lr)
    else:
        for r in range(p.shape[0]):
            _sgd_rows(p[r], g[r], lr)


@_jit
def _momentum_rows(p, g, v, lr, momentum, nesterov):
    for i in range(p.shape[0]):
        vi = momentum * v[i] + g[i]
        v[i] = vi
        if nesterov:
            p[i] -= lr * (g[i] + momentum * vi)
        else:
            p[i] -= lr * vi


@_jit
def sgd_momentum_update(p, g, v, lr, momentum, nesterov):
    """``v = momentum v + g``; ``p -= lr (g + momentum v)`` (Nesterov) or ``lr v``."""
    k = np.array((lr, momentum)).astype(p.dtype)
    lr, momentum = k[0], k[1]
    if p.ndim == 1:
        _momentum_rows(p, g, v, lr, momentum, nesterov)
    else:
        for r in range(p.shape[0]):
            _momentum_rows(p[r], g[r], v[r], lr, momentum, nesterov)


@_jit
def _adam_rows(p, g, m, v, lr, beta1, beta2, eps, c1, c2, rest1, rest2):
    for i in range(p.shape[0]):
        gi = g[i]
        mi = beta1 * m[i] + rest1 * gi
        vi = beta2 * v[i] + rest2 * (gi * gi)
        m[i] = mi
        v[i] = vi
        p[i] -= lr * (mi / c1) / (math.sqrt(vi / c2) + eps)


@_jit
def adam_update(p, g, m, v, lr, beta1, beta2, eps, c1, c2):
    """Adam in PyTorch's form with bias corrections ``c1 = 1 - beta1**t``, ``c2``."""
    k = np.array((lr, beta1, beta2, eps, c1, c2, 1.0 - beta1, 1.0 - beta2)).astype(p.dtype)
    lr, beta1, beta2, eps, c1, c2, rest1, rest2 = k[0], k[1], k[2], k[3], k[4], k[5], k[6], k[7]
    if p.ndim == 1:
        _adam_rows(p, g, m, v, lr, beta1, beta2, eps, c1, c2, rest1, rest2)
    else:
        for r in range(p.shape[0]):
            _adam_rows(p[r], g[r], m[r], v[r], lr, beta1, beta2, eps, c1, c2, rest1, rest2)


@_jit_parallel
def adam_update_parallel(p, g, m, v, lr, beta1, beta2, eps, c1, c2, chunks):
    """:func:`adam_update` with the rows (or elements of a 1-D array) split over threads."""
    n = p.shape[0]
    for c in prange(chunks):
        lo, hi = c * n // chunks, (c + 1) * n // chunks
        adam_update(p[lo:hi], g[lo:hi], m[lo:hi], v[lo:hi], lr, beta1, beta2, eps, c1, c2)


#: Hook name -> (serial kernel, parallel kernel or None).
KERNELS = {
    "dense_forward": (dense_forward, dense_forward_parallel),
    "dense_backward": (dense_backward, dense_backward_parallel),
    "output_loss_gradient": (output_loss_gradient, output_loss_gradient_parallel),
    "loss_sum": (loss_sum, None),
    "sgd_update": (sgd_update, None),
    "sgd_momentum_update": (sgd_momentum_update, None),
    "adam_update": (adam_update, adam_update_parallel),
}
