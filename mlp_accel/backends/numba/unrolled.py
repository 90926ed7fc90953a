"""The unrolled per-sample strategy of the specialized network kernel (:mod:`.fused`):
for the smallest networks, every weight a scalar local and every sample's forward and backward
pass straight-line code, which LLVM vectorizes across the samples of a block.
"""

from __future__ import annotations

from ..base import NetworkSpec
from .fused import _UNROLLED_ROWS as ROWS
from .kernels import Writer, emit_softmax
from .output import act as _act
from .output import der as _der
from .output import emit_element_output, emit_softmax_output

__all__ = ["ROWS", "scalar_chunks"]


def scalar_chunks(w: Writer, spec: NetworkSpec, serial: str) -> None:
    """``train_chunk``/``forward_chunk`` as unrolled scalar code per sample.

    Each block of :data:`ROWS` samples takes three loops: the forward pass to the output
    logits, the output activation and loss (over unit-stride scratch, with the inlined
    math helpers), and the forward pass again with the backward pass. LLVM vectorizes all
    three across samples; the gradients are scalar reductions it keeps in vector registers.
    """
    _train_chunk(w, spec, serial)
    _forward_chunk(w, spec, serial)


def _params(spec: NetworkSpec) -> str:
    return ", ".join(f"W{k}, b{k}" for k in range(1, len(spec.widths)))


def _load_weights(w: Writer, spec: NetworkSpec) -> None:
    d, L = spec.widths, len(spec.widths) - 1
    for k in range(1, L + 1):
        for i in range(d[k - 1]):
            for j in range(d[k]):
                w(f"w{k}_{i}_{j} = W{k}[{i}, {j}]")
        for j in range(d[k]):
            w(f"b{k}_{j} = b{k}[{j}]")


def _train_chunk(w: Writer, spec: NetworkSpec, serial: str) -> None:
    d, L = spec.widths, len(spec.widths) - 1
    dL = d[-1]
    w("")
    w("")
    w(serial)
    w(f"def train_chunk(X, Y, {_params(spec)}, lo, hi, sc, grads, nl):")
    with w.indent():
        w('"""Loss sum of rows [lo, hi); their gradients are added into ``grads``."""')
        _load_weights(w, spec)
        for k in range(1, L + 1):
            for i in range(d[k - 1]):
                for j in range(d[k]):
                    w(f"gw{k}_{i}_{j} = _0")
            for j in range(d[k]):
                w(f"gb{k}_{j} = _0")
        # Flat scratch, one row of ROWS per output: the output loop reads and writes it with
        # unit stride, as it must to vectorize.
        for name in ("ZB", "YB", "GB"):
            w(f"{name} = np.empty({dL * ROWS}, dtype=DT)")
        w("lsum = 0.0")
        w(f"for r0 in range(lo, hi, {ROWS}):")
        with w.indent():
            w(f"m = min(hi - r0, {ROWS})")
            w("for t in range(m):")
            with w.indent():
                w("r = r0 + t")
                _scalar_forward(w, spec, through_output=True)
                for j in range(dL):
                    w(f"ZB[{j * ROWS} + t] = z{L}_{j}")
                    w(f"YB[{j * ROWS} + t] = Y[r, {j}]")
            _scalar_output(w, spec)
            w("for t in range(m):")
            with w.indent():
                w("r = r0 + t")
                _scalar_forward(w, spec, through_output=False)
                for j in range(dL):
                    w(f"d{L}_{j} = GB[{j * ROWS} + t]")
                _scalar_backward(w, spec)
        q = 0
        for k in range(1, L + 1):
            for i in range(d[k - 1]):
                for j in range(d[k]):
                    w(f"grads[{q}] += gw{k}_{i}_{j}")
                    q += 1
            for j in range(d[k]):
                w(f"grads[{q}] += gb{k}_{j}")
                q += 1
        w("return lsum")


def _scalar_backward(w: Writer, spec: NetworkSpec) -> None:
    """Sample ``r``'s gradient terms added to ``gw``/``gb``, from its output dz ``d{L}_j``."""
    d, L = spec.widths, len(spec.widths) - 1
    for k in range(L, 0, -1):
        for i in range(d[k - 1]):
            for j in range(d[k]):
                w(f"gw{k}_{i}_{j} += a{k - 1}_{i} * d{k}_{j}")
        for j in range(d[k]):
            w(f"gb{k}_{j} += d{k}_{j}")
        if k == 1:
            continue
        act = spec.activations[k - 2]
        for i in range(d[k - 1]):
            terms = " + ".join(f"w{k}_{i}_{j} * d{k}_{j}" for j in range(d[k]))
            if act == "identity":
                w(f"d{k - 1}_{i} = {terms}")
            else:
                der = _der(w, act, f"z{k - 1}_{i}", f"a{k - 1}_{i}")
                w(f"d{k - 1}_{i} = ({terms}) * {der}")


def _forward_chunk(w: Writer, spec: NetworkSpec, serial: str) -> None:
    dL, L = spec.widths[-1], len(spec.widths) - 1
    w("")
    w("")
    w(serial)
    w(f"def forward_chunk(X, {_params(spec)}, lo, hi, out, nl):")
    with w.indent():
        w('"""Outputs of rows [lo, hi) into ``out``."""')
        _load_weights(w, spec)
        w("for r in range(lo, hi):")
        with w.indent():
            _scalar_forward(w, spec, through_output=True)
            for j in range(dL):
                w(f"out[r, {j}] = z{L}_{j}")
        out = spec.activations[-1]
        w("for r in range(lo, hi):")
        with w.indent():
            if out == "softmax":
                row = lambda k: f"out[r, {k}]"  # noqa: E731
                emit_softmax(w, str(dL), row, row, "_exp_neg")
            else:
                w(f"for k in range({dL}):")
                w("    v = out[r, k]")
                w(f"    out[r, k] = {_act(w, out, 'v')}")


def _scalar_forward(w: Writer, spec: NetworkSpec, through_output: bool) -> None:
    """Unrolled forward pass of sample ``r`` into scalar locals ``z{k}_{j}``, ``a{k}_{j}``."""
    d, L = spec.widths, len(spec.widths) - 1
    for i in range(d[0]):
        w(f"a0_{i} = X[r, {i}]")
    for k in range(1, L + 1 if through_output else L):
        for j in range(d[k]):
            terms = " + ".join(f"a{k - 1}_{i} * w{k}_{i}_{j}" for i in range(d[k - 1]))
            w(f"z{k}_{j} = b{k}_{j} + {terms}")
            if k < L:
                w(f"a{k}_{j} = {_act(w, spec.activations[k - 1], f'z{k}_{j}')}")


def _scalar_output(w: Writer, spec: NetworkSpec) -> None:
    """Loss of the block's ``m`` rows into ``lsum`` and their output dz into ``GB``.

    Reads the logits ``ZB`` and targets ``YB`` (output ``k`` of row ``t`` at ``k * ROWS + t``).
    Elementwise outputs loop over the rows innermost, which vectorizes.
    """
    dL, B = spec.widths[-1], ROWS
    if spec.activations[-1] == "softmax":
        w("for t in range(m):")
        with w.indent():
            emit_softmax_output(
                w,
                spec,
                lambda k: f"ZB[{k} * {B} + t]",
                lambda k: f"YB[{k} * {B} + t]",
                lambda k: f"GB[{k} * {B} + t]",
            )
            w("lsum += lrow")
        return
    w(f"for k in range({dL}):")
    with w.indent():
        w("for t in range(m):")
        with w.indent():
            w(f"q = k * {B} + t")
            w("v = ZB[q]")
            w("yk = YB[q]")
            emit_element_output(w, spec)
            w("lsum += lv")
            w("GB[q] = g")
