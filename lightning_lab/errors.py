"""Errors the lab raises for bad input; the CLI prints them as one readable line instead of a traceback."""
from __future__ import annotations


class LabError(Exception):
    """Base class: something the user can fix (data, config, weights)."""


class DatasetNotFoundError(LabError, FileNotFoundError):
    """A dataset's files are missing or unreadable; the message names the path and how to get them."""


class ConfigError(LabError, ValueError):
    """A configuration value is invalid; raised before training starts."""


class CheckpointError(ConfigError):
    """A checkpoint is missing, unreadable, ambiguous, or not one of the lab's."""


class WeightsError(LabError, FileNotFoundError):
    """Pretrained weights are missing or do not fit the model."""


# jsonargparse's union-type errors list every subtype it tried; these lines only frame the ones that say what is wrong.
_PARSER_SCAFFOLDING = ("Does not validate against any of the Union subtypes", "Subtypes:", "Errors:",
                       "Expected a <class 'NoneType'>", "Given value type:", "Given value:")


def first_line(error: BaseException, *, all_lines: bool = False, chained: bool = False,
               limit: int | None = None) -> str:
    """`TypeName: first line of the message`, for one-line error reports.

    `all_lines`: every line that says something instead (torchvision lists each mirror's failure, jsonargparse each
    nested key, on later lines). `chained`: the causes follow, `... <- Cause: ...` (Ray wraps the reason a
    connection failed). `limit`: cut to that many characters, ending in " ...".
    """
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        lines = [line.strip() for line in str(current).strip().splitlines()]
        if all_lines:
            lines = [line.strip(" -") for line in lines]
            lines = [line for line in lines if line and not line.startswith(_PARSER_SCAFFOLDING)]
        message = " ".join(lines if all_lines else lines[:1])
        parts.append(f"{type(current).__name__}: {message}" if message else type(current).__name__)
        current = (current.__cause__ or current.__context__) if chained else None
    text = " <- ".join(parts)
    return text if limit is None or len(text) <= limit else text[:max(limit - 4, 0)] + " ..."


def lab_error_in(error: BaseException) -> LabError | None:
    """The LabError behind `error`, if any: jsonargparse and Lightning wrap what the lab's classes raise."""
    seen: set[int] = set()
    stack = [error]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, LabError):
            return current
        stack += [e for e in (current.__cause__, current.__context__) if e is not None]
    return None
