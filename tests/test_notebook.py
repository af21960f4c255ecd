"""notebooks/diffmtl_quickstart: the paired .py and .ipynb agree, git holds no outputs, and the
notebook runs top to bottom at its 'ci' size (a cell that raises fails the test)."""

import os

import jupytext
import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient

from diffmtl.evaluation import evaluator

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(ROOT, "notebooks", "diffmtl_quickstart.ipynb")
SCRIPT = os.path.join(ROOT, "notebooks", "diffmtl_quickstart.py")


def test_the_notebook_and_its_script_hold_the_same_cells_and_no_outputs():
    notebook, script = nbformat.read(NOTEBOOK, as_version=4), jupytext.read(SCRIPT)
    assert [(c.cell_type, c.source) for c in notebook.cells] == [
        (c.cell_type, c.source) for c in script.cells
    ], "out of sync: run `jupytext --sync notebooks/diffmtl_quickstart.py`"
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code), (
        "outputs in git: clear them (jupyter nbconvert --clear-output --inplace)"
    )
    assert "colab-badge" in notebook.cells[0].source


@pytest.mark.slow  # about 2 minutes here: two short trainings, their evaluations and a TAS.
def test_the_notebook_runs_top_to_bottom_at_its_smallest_size(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFMTL_NOTEBOOK_SIZE", "ci")
    monkeypatch.setenv("DIFFMTL_NOTEBOOK_WORKDIR", str(tmp_path))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    # The kernel 'python3' is ipykernel's native spec: this interpreter (the project's venv).
    client = NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": ROOT}}
    )
    client.execute()  # CellExecutionError names the cell that raised.
    printed = "".join(
        out.get("text", "") for cell in notebook.cells for out in cell.get("outputs", [])
    )
    assert "log-SNR cost:" in printed and "gradient clusters: [(0, " in printed
    for variant in ("vanilla", "ant"):
        run = tmp_path / "ci" / variant
        assert (run / "samples.png").is_file()
        assert evaluator.read_headline(str(run)).startswith("FID_FMNIST")
    assert np.load(tmp_path / "ci" / "ant" / "tas.npy").shape == (1000, 1000)
    images = [
        o for c in notebook.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})
    ]
    assert len(images) >= 5  # schedule, clusters, two live plots, samples, TAS


def notebook_sizes() -> dict:
    """The notebook's SIZES dict, read from its source (ast: the assignment alone)."""
    import ast

    source = "\n".join(c.source for c in jupytext.read(SCRIPT).cells if c.cell_type == "code")
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "SIZES":
            return ast.literal_eval(node.value)
    raise AssertionError("no SIZES in the notebook")


@pytest.mark.parametrize("size,devices", [("ci", 4), ("ci", 1), ("colab", 1), ("colab", 8)])
def test_every_notebook_size_is_a_valid_config_for_both_runs(size, devices):
    from configs import fashion_mnist
    from diffmtl import config_validation
    from diffmtl.analysis.sweep import override

    for variant in ("vanilla", "ant"):
        config = override(fashion_mnist.get_config(variant), notebook_sizes()[size])
        config_validation.validate(config, devices, check_files=False)
