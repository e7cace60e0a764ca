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


def first_line(error: BaseException) -> str:
    """`TypeName: first line of the message`, for one-line error reports."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


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
