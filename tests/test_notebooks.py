"""The notebooks run top to bottom, writing only into their scratch folder (`make notebooks` refreshes the
committed outputs; this proves the committed code still runs)."""
from __future__ import annotations

import asyncio
from pathlib import Path

import nbclient
import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


def test_the_three_experiments_have_notebooks():
    assert [p.name for p in NOTEBOOKS] == ["01_numpy_mnist.ipynb", "02_numpy_moons.ipynb", "03_cnn_study.ipynb"]


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory) -> dict[Path, tuple[Path, BaseException | None]]:
    """Every notebook executed once, all at the same time, each in its own kernel and folder: {notebook: (the
    folder it ran in, the error that stopped it or None)}. Their kernels spend part of their time waiting (on
    Ray's start and the study's trials), so side by side they take less than one after another (67 s against
    84 s, the file alone on the 2-core machine)."""
    async def execute(path: Path, folder: Path) -> None:
        client = nbclient.NotebookClient(nbformat.read(path, as_version=4), timeout=300, kernel_name="python3",
                                         resources={"metadata": {"path": str(folder)}})
        await client.async_execute()  # raises on a failing cell

    async def execute_all() -> dict[Path, tuple[Path, BaseException | None]]:
        folders = [tmp_path_factory.mktemp(path.stem) for path in NOTEBOOKS]
        errors = await asyncio.gather(*map(execute, NOTEBOOKS, folders), return_exceptions=True)
        return {path: (folder, error) for path, folder, error in zip(NOTEBOOKS, folders, errors)}

    with pytest.MonkeyPatch.context() as env:
        # The study notebook's local Ray would run its trials at niceness 15 (Ray's `worker_niceness`), behind the
        # other pytest worker's processes; the kernels pass this on to the Ray they start (as in the sweep tests).
        env.setenv("RAY_worker_niceness", "0")
        return asyncio.run(execute_all())


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(path: Path, executed: dict[Path, tuple[Path, BaseException | None]]):
    folder, error = executed[path]
    if error is not None:
        raise error
    assert {p.name for p in folder.iterdir()} <= {"_scratch"}  # nothing outside its scratch folder


def test_committed_notebooks_carry_no_run_noise():
    for path in NOTEBOOKS:
        notebook = nbformat.read(path, as_version=4)
        code = [cell for cell in notebook.cells if cell.cell_type == "code"]
        assert all(cell.execution_count is None and "execution" not in cell.metadata for cell in code), path.name
        assert all(cell.outputs for cell in code if "display(" in cell.source or "print(" in cell.source), \
            f"{path.name} is committed without its outputs: run `make notebooks`"
