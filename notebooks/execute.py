"""Run the notebooks top to bottom in place (working directory: this folder), then strip run-to-run noise.

    python notebooks/execute.py                 # every notebooks/*.ipynb (`make notebooks`)
    python notebooks/execute.py 02_numpy_moons.ipynb
    python notebooks/execute.py --clean-only    # strip execution counts and timing metadata, run nothing

Kept in the committed files: the cells, their outputs, the kernel's name and language. Removed: execution
counts, per-cell execution timestamps and the interpreter's version, which change on every run.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
CELL_TIMEOUT_S = 600


def clean(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """`nb` without execution counts and run metadata."""
    nb.metadata = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                   "language_info": {"name": "python"}}
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        if cell.cell_type == "code":
            cell.execution_count = None
            for output in cell.outputs:
                if "execution_count" in output:
                    output.execution_count = None
    return nb


def execute(path: Path) -> float:
    """Run `path` in place with this folder as the working directory; the seconds it took."""
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                   resources={"metadata": {"path": str(HERE)}}).execute()
    seconds = time.perf_counter() - start
    nbformat.write(clean(nb), path)
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", help="file names in notebooks/ (default: all)")
    parser.add_argument("--clean-only", action="store_true", help="strip noise without running")
    args = parser.parse_args(argv)
    paths = [HERE / name for name in args.notebooks] or sorted(HERE.glob("*.ipynb"))
    for path in paths:
        if args.clean_only:
            nbformat.write(clean(nbformat.read(path, as_version=4)), path)
            print(f"cleaned  {path.name}")
        else:
            print(f"executed {path.name} in {execute(path):.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
