"""The notebooks run top to bottom, writing only into their scratch folder (`make notebooks` refreshes the
committed outputs; this proves the committed code still runs)."""
from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="the notebooks extra: pip install -e '.[notebooks]'")
nbclient = pytest.importorskip("nbclient", reason="the notebooks extra: pip install -e '.[notebooks]'")

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


def test_the_three_experiments_have_notebooks():
    assert [p.name for p in NOTEBOOKS] == ["01_numpy_mnist.ipynb", "02_numpy_moons.ipynb", "03_cnn_study.ipynb"]


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(path: Path, tmp_path: Path):
    notebook = nbformat.read(path, as_version=4)
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()  # raises on a failing cell
    assert {p.name for p in tmp_path.iterdir()} <= {"_scratch"}  # nothing outside its scratch folder


def test_committed_notebooks_carry_no_run_noise():
    for path in NOTEBOOKS:
        notebook = nbformat.read(path, as_version=4)
        code = [cell for cell in notebook.cells if cell.cell_type == "code"]
        assert all(cell.execution_count is None and "execution" not in cell.metadata for cell in code), path.name
        assert all(cell.outputs for cell in code if "display(" in cell.source or "print(" in cell.source), \
            f"{path.name} is committed without its outputs: run `make notebooks`"
