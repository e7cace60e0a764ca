"""Entry point: `python -m lightning_lab {fit,validate,test,predict,classify,sweep,report,baselines} ...`."""
from __future__ import annotations

import sys

from lightning_lab.errors import lab_error_in


def dispatch(argv: list[str]) -> int:
    """Hand `argv` to the command it names; fit/validate/test/predict (and --help) go to LightningCLI."""
    command = argv[0] if argv else None
    if command == "classify":
        from lightning_lab.classify import main as classify

        return classify(argv[1:])
    if command in ("sweep", "report"):
        from lightning_lab import experiments

        return experiments.main(argv)
    if command == "baselines":
        from lightning_lab import baselines

        return baselines.main(argv[1:])
    from lightning_lab.cli import main

    main(argv)
    return 0


def run(argv: list[str]) -> int:
    """Run one command; a LabError (bad input the user can fix) is printed as one `error: ...` line, exit 2."""
    try:
        return dispatch(argv)
    except Exception as err:
        lab_error = lab_error_in(err)
        if lab_error is None:
            raise
        print(f"error: {lab_error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
