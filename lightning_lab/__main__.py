"""Entry point: `python -m lightning_lab {fit,validate,test,predict,classify,sweep,report,baselines} ...`."""
from __future__ import annotations

import sys

from lightning_lab.errors import LabError


def _lab_error_in(err: BaseException) -> LabError | None:
    """The LabError behind `err`, if any: jsonargparse and Lightning wrap what our classes raise."""
    seen: set[int] = set()
    stack = [err]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, LabError):
            return current
        stack += [e for e in (current.__cause__, current.__context__) if e is not None]
    return None


def run(argv: list[str]) -> int:
    """Run one command; a LabError (bad input the user can fix) is printed as one `error: ...` line, exit 2."""
    try:
        if argv and argv[0] == "classify":
            import lightning_lab.cli  # noqa: F401  (the same quiet Lightning as fit: no advertising tips)
            from lightning_lab.classify import main as classify

            return classify(argv[1:])
        if argv and argv[0] in ("sweep", "report"):
            from lightning_lab import experiments

            return experiments.main(argv)
        if argv and argv[0] == "baselines":
            from lightning_lab import baselines

            return baselines.main(argv[1:])
        from lightning_lab.cli import main

        main(argv)
    except Exception as err:
        lab_error = _lab_error_in(err)
        if lab_error is None:
            raise
        print(f"error: {lab_error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
