"""Grid files: studies of dotted config keys -> value lists, expanded into combinations.

A grid file (YAML)::

    fixed:                       # optional: applied to every run of every study
      trainer.max_epochs: 20
    studies:
      - name: act_init_opt       # the runs of a study are the product of its grid's value lists
        fixed: {}                # optional: applied to every run of this study
        grid:
          model.net.init_args.activation: [relu, tanh, leaky_relu]
          model.optimizer:
            - {class_path: torch.optim.SGD, init_args: {lr: 0.05, momentum: 0.9}}
            - {class_path: torch.optim.Adam, init_args: {lr: 0.001}}

A file with a top-level ``grid:`` instead of ``studies:`` is one study named after the file. Keys are the
dotted jsonargparse keys of the config (what ``python -m lightning_lab fit --help`` lists after ``--``).
The sweep is the union of the studies; combinations that resolve to the same run are run once.
"""
from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import yaml

from lightning_lab.errors import ConfigError, first_line
from lightning_lab.experiments.results import BOOKKEEPING_KEYS, is_under

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass(frozen=True)
class Study:
    name: str
    grid: dict[str, list[Any]]
    fixed: dict[str, Any] = field(default_factory=dict)

    def combinations(self) -> list[dict[str, Any]]:
        """The product of the grid's value lists (first key varies slowest), each with the fixed keys first."""
        keys = list(self.grid)
        return [{**self.fixed, **dict(zip(keys, values))}
                for values in itertools.product(*(self.grid[k] for k in keys))]


@dataclass(frozen=True)
class Combination:
    """One point of a study: the config overrides of one run."""

    study: str
    overrides: dict[str, Any]


def find_grid(path: str | Path) -> Path:
    """`path` as given, else relative to the repository's configs/ (so `--grid grids/x.yaml` and
    `--grid configs/grids/x.yaml` work from any directory)."""
    from lightning_lab.paths import CONFIG_DIR

    path = Path(path)
    for candidate in (path, CONFIG_DIR.parent / path, CONFIG_DIR / path, CONFIG_DIR / "grids" / path.name):
        if candidate.is_file():
            return candidate
    raise ConfigError(f"grid file {str(path)!r} not found (looked in the working directory and {CONFIG_DIR})")


def load_grid(path: str | Path) -> list[Study]:
    """Read and check a grid file's structure (keys and values are checked later, by the CLI parser)."""
    path = find_grid(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"grid {path}: not valid YAML: {err}") from err
    except (OSError, UnicodeDecodeError) as err:  # a folder, an unreadable or a binary file
        raise ConfigError(f"grid {path}: cannot be read as a YAML text file ({first_line(err)})") from err
    return parse_grid(data, source=str(path), default_name=path.stem)


def parse_grid(data: Any, source: str = "grid", default_name: str = "grid") -> list[Study]:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping with 'studies:' (or 'grid:'), got {type(data).__name__}")
    unknown = set(data) - {"fixed", "studies", "grid", "description"}
    if unknown:
        raise ConfigError(f"{source}: unknown top-level key(s) {sorted(unknown)}; "
                          "expected 'studies' (a list) or 'grid', and optionally 'fixed'")
    if ("studies" in data) == ("grid" in data):
        raise ConfigError(f"{source}: give either 'studies:' (a list of {{name, grid}}) or one 'grid:', not "
                          + ("both" if "grid" in data else "neither"))
    fixed = _overrides(data.get("fixed") or {}, f"{source}: fixed")
    raw_studies = data["studies"] if "studies" in data else [{"name": default_name, "grid": data["grid"]}]
    if not isinstance(raw_studies, list) or not raw_studies:
        raise ConfigError(f"{source}: 'studies' must be a non-empty list of {{name, grid}} mappings")
    studies: list[Study] = []
    for i, raw in enumerate(raw_studies, 1):
        where = f"{source}: study {i}"
        if not isinstance(raw, dict) or "grid" not in raw:
            raise ConfigError(f"{where}: expected a mapping with 'name' and 'grid', got {raw!r}")
        unknown = set(raw) - {"name", "grid", "fixed", "description"}
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; expected name, grid, fixed")
        name = str(raw.get("name") or f"study{i}")
        if not _NAME.match(name):
            raise ConfigError(f"{where}: name {name!r} may only use letters, digits, '_', '-', '.'")
        if name in {s.name for s in studies}:
            raise ConfigError(f"{where}: duplicate study name {name!r}")
        where = f"{source}: study {name!r}"
        grid = raw["grid"]
        if not isinstance(grid, dict) or not grid:
            raise ConfigError(f"{where}: 'grid' must be a non-empty mapping of dotted config keys to value lists")
        values: dict[str, list[Any]] = {}
        for key, options in _overrides(grid, where).items():
            if not isinstance(options, list) or not options:
                raise ConfigError(f"{where}: {key} must be a non-empty list of values, got {options!r} "
                                  f"(write [{json.dumps(options)}] for a single value, or put it under 'fixed:')")
            values[key] = options
        study_fixed = {**fixed, **_overrides(raw.get("fixed") or {}, f"{where}: fixed")}
        clash = set(study_fixed) & set(values)
        if clash:
            raise ConfigError(f"{where}: {sorted(clash)} both fixed and varied")
        studies.append(Study(name, values, study_fixed))
    return studies


def _overrides(mapping: Any, where: str) -> dict[str, Any]:
    if not isinstance(mapping, dict):
        raise ConfigError(f"{where}: expected a mapping of dotted config keys, got {mapping!r}")
    for key in mapping:
        if not isinstance(key, str) or not _KEY.match(key):
            raise ConfigError(f"{where}: {key!r} is not a dotted config key such as model.net.init_args.activation")
        if is_under(key, BOOKKEEPING_KEYS):
            raise ConfigError(f"{where}: {key} is set by the sweep itself (it names or places a run, and run ids "
                              "leave it out) and cannot be in a grid")
    return dict(mapping)


def expand(studies: Sequence[Study]) -> list[Combination]:
    """Every study's combinations, in file order (duplicates are merged later, by run id)."""
    return [Combination(s.name, overrides) for s in studies for overrides in s.combinations()]


def override_args(overrides: dict[str, Any]) -> list[str]:
    """CLI arguments setting each dotted key: strings as they are, everything else as JSON."""
    args: list[str] = []
    for key, value in overrides.items():
        args += [f"--{key}", value if isinstance(value, str) else json.dumps(value)]
    return args


def exact_text(value: Any) -> str:
    """A value as exact JSON text (keys sorted, 1 and 1.0 apart): how run ids and grid values are written, so the
    same input always gives the same text. (results.canonical makes 1 and 1.0 alike, to compare settings.)"""
    return json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))
