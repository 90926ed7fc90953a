"""The README and docs render whole: headings are headings, code blocks are code, links resolve;
and every Python block runs, so that no recipe rots.

A broken fence (text after a closing fence) makes a CommonMark renderer swallow the sections
after it into one code block, on the project page and in the package's long description.

Each ``python`` block runs on its own, in a fresh namespace, with the working directory a
temporary folder (files it writes land there) and ``MLP_ACCEL_BACKEND=numpy`` (``"auto"``
trains on NumPy: no compile time). An HTML comment right before a block, invisible on the
rendered page, adapts it:

- ``<!-- test-setup: NAME -->``: first run ``setup_NAME(tmp_path)`` of this module, which
  writes the block's files into the folder (small ones) and returns the names the block uses
  without defining them (a block may go on from the page's earlier text).
- ``<!-- test-skip: REASON -->``: do not run it (it needs a GPU, a cluster, ...); the test is
  skipped with the reason.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

markdown_it = pytest.importorskip("markdown_it")

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

README_SECTIONS = [
    "Install",
    "Quickstart",
    "Pick a backend",
    "Benchmark",
    "Train on big data",
    "scikit-learn drop-in",
    "Read more",
]


def _tokens(path: Path) -> list:
    return markdown_it.MarkdownIt("commonmark").parse(path.read_text(encoding="utf-8"))


def _headings(tokens: list, level: str) -> list[str]:
    return [
        tokens[i + 1].content
        for i, tok in enumerate(tokens)
        if tok.type == "heading_open" and tok.tag == level
    ]


def test_readme_sections_render_as_headings() -> None:
    headings = _headings(_tokens(ROOT / "README.md"), "h2")
    assert headings == README_SECTIONS


def test_readme_is_a_first_page() -> None:
    # What a newcomer needs, and links to docs/ for the rest.
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines; move details to docs/"


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_no_heading_is_swallowed_by_a_code_block(path: Path) -> None:
    # Every line that starts with "## " outside fences in the source must be a rendered heading.
    for tok in _tokens(path):
        if tok.type == "fence":
            lines = tok.content.splitlines()
            assert not any(line.startswith("## ") for line in lines), (
                f"{path.name}: a code block starting at line {tok.map[0] + 1} holds a heading"
            )


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_python_blocks_compile(path: Path) -> None:
    blocks = [t for t in _tokens(path) if t.type == "fence" and t.info.strip() == "python"]
    for tok in blocks:
        try:
            compile(tok.content, f"{path.name}:{tok.map[0] + 1}", "exec")
        except SyntaxError as exc:  # pragma: no cover - the message is the point
            pytest.fail(f"{path.name}: python block at line {tok.map[0] + 1}: {exc}")


def _python_blocks() -> list:
    """``(id, code, directive, argument)`` of every python block of the docs."""
    blocks = []
    for path in DOCS:
        tokens = _tokens(path)
        for i, tok in enumerate(tokens):
            if tok.type != "fence" or tok.info.strip() != "python":
                continue
            directive = argument = None
            if i and tokens[i - 1].type == "html_block":
                found = _DIRECTIVE.fullmatch(tokens[i - 1].content.strip())
                if found:
                    directive, argument = found.group(1), found.group(2)
            blocks.append((f"{path.name}:{tok.map[0] + 1}", tok.content, directive, argument))
    return blocks


_DIRECTIVE = re.compile(r"<!--\s*test-(setup|skip):\s*(.+?)\s*-->")


def setup_big_npy(tmp_path: Path) -> dict:
    """A small ``big.npy``: 64 features and a 0/1 label a row, as the big-data recipes read."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, 64)).astype(np.float32)
    y = (X[:, 0] * X[:, 1] + X[:, 2] > 0).astype(np.float32)
    np.save(tmp_path / "big.npy", np.column_stack([X, y]))
    return {}


def setup_digits_split(tmp_path: Path) -> dict:
    """A small digits split: ``X_train, X_test, y_train, y_test``."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    names = ("X_train", "X_test", "y_train", "y_test")
    return dict(zip(names, train_test_split(X[:300], y[:300], random_state=0), strict=True))


def setup_onnx(tmp_path: Path) -> dict:
    """Nothing to write; a block that runs an ONNX export skips where '.[onnx]' is missing."""
    pytest.importorskip("onnx", reason="ONNX export needs pip install 'mlp-accel[onnx]'")
    pytest.importorskip("onnxruntime", reason="the exported file runs on onnxruntime")
    return {}


@pytest.mark.parametrize(
    "name, code, directive, argument", _python_blocks(), ids=[b[0] for b in _python_blocks()]
)
def test_python_blocks_run(name, code, directive, argument, tmp_path, monkeypatch) -> None:
    if directive == "skip":
        pytest.skip(argument)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLP_ACCEL_BACKEND", "numpy")
    namespace = {"__name__": "__doc_block__"}
    if directive == "setup":
        namespace.update(globals()[f"setup_{argument}"](tmp_path))
    exec(compile(code, name, "exec"), namespace)


def test_every_directive_names_a_setup() -> None:
    for name, _, directive, argument in _python_blocks():
        if directive == "setup":
            assert callable(globals().get(f"setup_{argument}")), f"{name}: no setup_{argument}"


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_relative_links_resolve(path: Path) -> None:
    for tok in _tokens(path):
        for child in tok.children or []:
            href = child.attrGet("href") if child.type == "link_open" else None
            if href and "://" not in href and not href.startswith("#"):
                target = (path.parent / href.split("#")[0]).resolve()
                assert target.exists(), f"{path.name}: link to missing {href}"


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_docs_stand_alone(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert "DESIGN.md" not in text, f"{path.name} points outside the repository"
    assert "shared folder" not in text


def test_license_file_matches_the_metadata() -> None:
    assert "MIT License" in (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert 'license = "MIT"' in (ROOT / "pyproject.toml").read_text(encoding="utf-8")


def test_mlp_docstring_names_every_builtin_activation_and_loss() -> None:
    # The API reference renders this docstring: a name added to the table must appear in it.
    from mlp_accel import MLP
    from mlp_accel.activations import ACTIVATION_ROWS
    from mlp_accel.losses import LOSS_ROWS

    doc = MLP.__doc__ or ""
    builtin = [n for n, row in ACTIVATION_ROWS.items() if row.builtin]
    missing = [n for n in (*builtin, *LOSS_ROWS) if f"``{n}``" not in doc]
    assert not missing, f"MLP's docstring does not name {missing}"


def test_every_docs_page_is_in_the_site_nav() -> None:
    # mkdocs --strict warns of a page left out of the nav only where CI installs mkdocs.
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    pages = sorted(p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md"))
    assert [p for p in pages if f": {p}" not in nav] == []
