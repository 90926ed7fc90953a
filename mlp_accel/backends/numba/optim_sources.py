"""The sources of the optimizer kernel modules: one per rule of the optimizer table
(:mod:`mlp_accel.ops.optimizers`) and dtype, rendered from the rule's expressions.

An elementwise rule gets ``update(p, g, *state, *scalars, *tensor_scalars)``: one pass over
the tensor, in place. A layer-wise rule gets ``first(...)``, which updates the state and
returns the float64 sums of ``p * p`` and of the raw update ``u * u`` (added in the order of
the elements: a fixed order, whatever the thread count), and ``second(..., s)``, which
evaluates ``u`` again from the new state and applies the tensor's step scalar ``s``. Every
kernel is serial and ``nogil``, takes 1-D or 2-D arrays (rows of a 2-D array are 1-D views),
and casts its scalars to the arrays' dtype once, so a float32 tensor is updated in float32 as
NumPy updates it with Python scalars.

:func:`.kernels.optimizer_module` writes the source to the kernel cache directory and
imports it.
"""

from __future__ import annotations

from ...ops import expr as E
from ...ops.optimizers import OptimizerRow, optimizer_row
from .kernels import _SERIAL, Constants, Writer, module_header

__all__ = ["optimizer_source"]

_ARRAYS = ("p", "g")


def _names(row: OptimizerRow) -> dict[str, str]:
    """Python names of the rule's variables: ``e_`` elements and locals, ``c_`` scalars."""
    names = {name: f"c_{name}" for name in (*row.scalars, *row.tensor_scalars, "s")}
    for target, _ in (*row.update, *row.apply):
        names.setdefault(target, f"e_{target}")
    names.update({name: f"e_{name}" for name in (*_ARRAYS, *row.state, "u")})
    return names


def _emit_assignments(
    w: Writer, trees: tuple[tuple[str, E.Node], ...], names: dict[str, str], c: Constants
) -> None:
    for target, tree in trees:
        w(f"{names[target]} = {E.to_python(tree, names, c)}")


def _emit_loads(w: Writer, row: OptimizerRow, trees: list[E.Node]) -> None:
    for name in row.reads(trees):
        w(f"e_{name} = a_{name}[i]")


def _emit_stores(w: Writer, row: OptimizerRow, targets: set[str]) -> None:
    for name in (*row.state, "p"):
        if name in targets:
            w(f"a_{name}[i] = e_{name}")


def _emit_entry(
    w: Writer, name: str, row: OptimizerRow, arrays: str, scalars: list[str], reduce: bool
) -> None:
    """The public kernel ``name``: casts the scalars, then calls ``_<name>_rows`` on the tensor
    (or on each row of a 2-D one), adding up the two sums where ``reduce``."""
    w("")
    w("")
    w(_SERIAL)
    w(f"def {name}({arrays}, {', '.join(scalars)}):")
    with w.indent():
        w(f"k = np.array(({', '.join(scalars)},)).astype(a_p.dtype)")
        cast = ", ".join(f"c_{s[2:]}" for s in scalars)
        w(f"{cast}, = {', '.join(f'k[{i}]' for i in range(len(scalars)))},")
        args = f"{{}}, {cast}"
        rows = f"_{name}_rows"
        whole = args.format(arrays)
        per_row = args.format(", ".join(f"{a}[r]" for a in arrays.split(", ")))
        if not reduce:
            w("if a_p.ndim == 1:")
            w(f"    {rows}({whole})")
            w("else:")
            w("    for r in range(a_p.shape[0]):")
            w(f"        {rows}({per_row})")
            return
        w("if a_p.ndim == 1:")
        w(f"    return {rows}({whole})")
        w("wsq = 0.0")
        w("usq = 0.0")
        w("for r in range(a_p.shape[0]):")
        w(f"    w_r, u_r = {rows}({per_row})")
        w("    wsq += w_r")
        w("    usq += u_r")
        w("return wsq, usq")


def optimizer_source(rule: str, dtype: str) -> str:
    """Source of the kernels of the optimizer table's rule ``rule`` in ``dtype``."""
    row = optimizer_row(rule)
    c = Constants()
    w = Writer()
    names = _names(row)
    arrays = ", ".join(f"a_{name}" for name in (*_ARRAYS, *row.state))
    scalars = [f"s_{name}" for name in (*row.scalars, *row.tensor_scalars)]
    cast = ", ".join(f"c_{s[2:]}" for s in scalars)
    update = [tree for _, tree in row.update_trees]
    if not row.layerwise:
        w("")
        w("")
        w(_SERIAL)
        w(f"def _update_rows({arrays}, {cast}):")
        with w.indent():
            w("for i in range(a_p.shape[0]):")
            with w.indent():
                _emit_loads(w, row, update)
                _emit_assignments(w, row.update_trees, names, c)
                _emit_stores(w, row, {t for t, _ in row.update})
        _emit_entry(w, "update", row, arrays, scalars, reduce=False)
    else:
        assert row.direction_tree is not None
        direction = E.to_python(row.direction_tree, names, c)
        w("")
        w("")
        w(_SERIAL)
        w(f"def _first_rows({arrays}, {cast}):")
        with w.indent():
            w("wsq = 0.0")
            w("usq = 0.0")
            w("for i in range(a_p.shape[0]):")
            with w.indent():
                _emit_loads(w, row, [*update, row.direction_tree, E.Var("p")])
                _emit_assignments(w, row.update_trees, names, c)
                _emit_stores(w, row, {t for t, _ in row.update})
                w(f"e_u = {direction}")
                w("wsq += np.float64(e_p * e_p)")
                w("usq += np.float64(e_u * e_u)")
            w("return wsq, usq")
        _emit_entry(w, "first", row, arrays, scalars, reduce=True)
        apply = [tree for _, tree in row.apply_trees]
        w("")
        w("")
        w(_SERIAL)
        w(f"def _second_rows({arrays}, {cast}, c_s):")
        with w.indent():
            w("for i in range(a_p.shape[0]):")
            with w.indent():
                _emit_loads(w, row, [row.direction_tree, *apply])
                w(f"e_u = {direction}")
                _emit_assignments(w, row.apply_trees, names, c)
                _emit_stores(w, row, {t for t, _ in row.apply})
        _emit_entry(w, "second", row, arrays, [*scalars, "s_s"], reduce=False)
    header = module_header(f"the optimizer rule {rule!r}", dtype, c)
    return "\n".join(header + w.lines) + "\n"
