"""Plan a sweep: every combination of a grid file checked by the CLI's own parser, deduplicated into runs.

Run ids are ``<config stem>-<8 hex>``: a hash of the run's resolved config (config file, grid values, extra
CLI overrides, seeds, as the CLI's parser resolves them) without the keys that only name or place a run, so
combinations that resolve to the same settings, from any studies or spellings (``1e-2``, ``0.01``), are one
run; an edited config file gives new ids; the first repeat of a combination is the config as is and keeps the
id it has without ``--repeats``. Each run has one folder, ``<save_dir>/<dataset>_sweep/<run_id>/version_0`` (logs, config.yaml,
run.json), and checkpoints to ``<checkpoint root>/<dataset>_sweep/<run_id>/version_0``; every attempt of the run
continues there. Every path a run gets is absolute (Ray starts trials in their own working directory). Every
run is tested after its fit (``test_after_fit``): a run is finished when it is trained and tested.
"""
from __future__ import annotations

import hashlib
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from lightning_lab.cli import LabCLI, resolve_config_paths
from lightning_lab.errors import ConfigError, first_line
from lightning_lab.experiments.grid import Study, exact_text, expand, load_grid, override_args
from lightning_lab.experiments.results import SEED_NAMES, flatten, non_default_settings
from lightning_lab.paths import CHECKPOINT_ROOT, LOG_DIR, dataset_name
from lightning_lab.quiet import ARGS_WARNING

RESERVED_EXTRAS = ("--ckpt_path", "--trainer.logger", "--checkpoint.root", "--seed_everything", "--test_after_fit")
VERSION = 0  # the run's one version folder: version_0


@dataclass
class PlannedRun:
    """One run of the sweep: what a trial needs to train it (JSON-able: it travels to Ray workers)."""

    run_id: str
    studies: list[str]
    overrides: dict[str, Any]          # the grid values of this run, as written in the grid file
    args: list[str]                    # LabCLI arguments after `fit` (absolute paths), without --ckpt_path
    dataset: str
    logger_name: str                   # <dataset>_sweep/<run_id>
    save_dir: str                      # absolute TensorBoard root
    log_dir: str                       # <save_dir>/<logger_name>/version_0: logs, config.yaml, run.json
    checkpoint_root: str               # absolute checkpoint root
    seed: int | None = None
    max_epochs: int | None = None
    describe: str = ""                 # the settings shown in progress lines
    varied: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class PlanningCLI(LabCLI):
    """The lab's CLI parsing a command line without building anything (the sweep checks each run with it)."""

    def instantiate_classes(self) -> None:
        pass


def _checker(args: list[str], where: str) -> tuple[Any, Any]:
    """The CLI's parser and the config it parsed from `args` (parsing one more combination takes ~50 ms)."""
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=ARGS_WARNING)
            cli = PlanningCLI(args=args, run=False,
                                 parser_kwargs={"allow_abbrev": False, "exit_on_error": False,
                                                "prog": "python -m lightning_lab"})
    except Exception as err:
        raise ConfigError(f"{where}: {first_line(err, all_lines=True, limit=600)}") from err
    return cli.parser, cli.config


def _parse(parser: Any, args: list[str], where: str, instantiate: bool = True) -> Any:
    try:
        cfg = parser.parse_args(args)
        if instantiate:
            parser.instantiate(cfg)  # values the model or data module rejects fail here, before training
        return cfg
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from err
    except Exception as err:  # jsonargparse's ArgumentError, a model's ValueError, ...
        raise ConfigError(f"{where}: {first_line(err, all_lines=True, limit=600)}") from err


def lookup(cfg: Any, key: str) -> Any:
    """cfg[key] as plain data, or None where the config has no such key."""
    try:
        value = cfg[key]
    except (KeyError, TypeError, AttributeError):
        return None
    return value.as_dict() if hasattr(value, "as_dict") else value


def _absolute(path: Any) -> str:
    return str(Path(str(path)).expanduser().resolve())


def absolute_files(args: Sequence[str]) -> list[str]:
    """`args` with every relative value that names an existing file (a `--config` file, weights, ...) made absolute
    from the working directory, as the main config is: Ray starts each trial in a folder of its own. Only values
    written as paths (with a `/` or a suffix) count: `--model.net.init_args.activation tanh` stays `tanh` even
    beside a file of that name."""
    def absolute(value: str) -> str:
        as_path = Path(value)
        looks_like_a_path = "/" in value or as_path.suffix != ""
        return _absolute(value) if looks_like_a_path and not as_path.is_absolute() and as_path.is_file() else value

    out = []
    for arg in args:
        if arg.startswith("-"):
            key, equals, value = arg.partition("=")
            out.append(f"{key}={absolute(value)}" if equals else arg)
        else:
            out.append(absolute(arg))
    return out


def check_extras(extra: Sequence[str]) -> list[str]:
    for arg in extra:
        if arg.startswith(RESERVED_EXTRAS):
            raise ConfigError(f"{arg.split('=')[0]} is set by the sweep (run names, resuming, seeds); leave it out")
    return resolve_config_paths(list(extra))


def _short(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def _show(value: Any) -> str:
    if isinstance(value, dict) and "class_path" in value:
        name = str(value["class_path"]).rsplit(".", 1)[-1]
        lr = (value.get("init_args") or {}).get("lr")
        return f"{name}(lr={lr})" if lr is not None else name
    return exact_text(value).strip('"')


def plan_sweep(config: str, grid: str | None = None, extra: Sequence[str] = (), repeats: int = 1) -> list[PlannedRun]:
    """Every run of the sweep, deduplicated, each combination parsed and instantiated by the CLI's parser
    (so unknown keys, wrong types and values the model rejects fail here, before any training)."""
    if repeats < 1:
        raise ConfigError(f"--repeats must be at least 1, got {repeats}")
    config_path = resolve_config_paths(["--config", config])[1]
    if not Path(config_path).is_file():
        raise ConfigError(f"config {config!r} not found")
    config_path = _absolute(config_path)
    extra = check_extras(extra)  # as given (with configs found as `fit` finds them): what the run ids see
    extra_args = absolute_files(extra)  # what the runs get
    stem = Path(config_path).stem
    studies = load_grid(grid) if grid else [Study("base", {}, {})]
    varied_by = {s.name: list(s.grid) for s in studies}
    if repeats > 1:
        _refuse_varied_seeds(studies)
    grid_name = f"grid {grid}" if grid else f"config {config_path}"
    parser, base_cfg = _checker(["--config", config_path, *extra_args],
                                config_path + (f" with {' '.join(extra)}" if extra else ""))
    save_dir = _absolute(lookup(base_cfg, "trainer.logger.init_args.save_dir") or LOG_DIR)
    checkpoint_root = _absolute(lookup(base_cfg, "checkpoint.root") or CHECKPOINT_ROOT)
    paths = ["--trainer.logger.init_args.save_dir", save_dir, "--checkpoint.root", checkpoint_root,
             "--trainer.logger.init_args.version", str(VERSION), "--test_after_fit", "true"]
    data_dir = lookup(base_cfg, "data.init_args.data_dir")
    if isinstance(data_dir, str) and not Path(data_dir).is_absolute() and "://" not in data_dir:
        paths += ["--data.init_args.data_dir", _absolute(data_dir)]

    runs: dict[str, PlannedRun] = {}
    for number, combo in enumerate(expand(studies), 1):
        shown = ", ".join(f"{k}={exact_text(v)}" for k, v in combo.overrides.items()) or "the config as is"
        where = f"{grid_name}, study {combo.study!r}, combination {number} ({shown})"
        grid_values = override_args(combo.overrides)
        grid_args = ["--config", config_path, *grid_values]
        cfg = _parse(parser, [*grid_args, *extra], where)
        if extra:
            grid_last = _parse(parser, ["--config", config_path, *extra, *grid_values], where, instantiate=False)
            _refuse_extras_over_grid(cfg, grid_last, varied_by[combo.study], where)
        for repeat in range(repeats):
            seeds = repeat_seeds(cfg, repeat, where) if repeat else {}
            overrides = {**combo.overrides, **seeds}
            tail = override_args(seeds)  # the sweep's seeds come last: an extra's data seed is their base
            run_cfg = _parse(parser, [*grid_args, *extra, *tail], where) if seeds else cfg
            run_id = run_id_of(stem, run_cfg)
            if run_id in runs:
                if combo.study not in runs[run_id].studies:
                    runs[run_id].studies.append(combo.study)
                continue
            dataset = dataset_name(lookup(run_cfg, "data.class_path"))
            logger_name = f"{dataset}_sweep/{run_id}"
            seed = lookup(run_cfg, "seed_everything")
            runs[run_id] = PlannedRun(
                run_id=run_id, studies=[combo.study], overrides=overrides,
                args=[*absolute_files(grid_args), *extra_args, *tail, *paths,
                      "--trainer.logger.init_args.name", logger_name],
                dataset=dataset, logger_name=logger_name, save_dir=save_dir, checkpoint_root=checkpoint_root,
                log_dir=str(Path(save_dir, logger_name, f"version_{VERSION}")),
                seed=None if isinstance(seed, bool) or seed is None else int(seed),
                max_epochs=lookup(run_cfg, "trainer.max_epochs"),
            )
    values: dict[str, set[str]] = {}
    for run in runs.values():
        for key, value in run.overrides.items():
            values.setdefault(key, set()).add(exact_text(value))
    for run in runs.values():
        run.varied = [k for k in run.overrides if len(values[k]) > 1 and not (repeats > 1 and is_seed_key(k))]
        shown = [f"{_short(k)}={_show(run.overrides[k])}" for k in run.varied]
        if repeats > 1 and run.seed is not None:
            shown.append(f"seed={run.seed}")
        run.describe = ", ".join(shown) or "config as is"
    return list(runs.values())


def run_id_of(stem: str, cfg: Any) -> str:
    """`<config stem>-<8 hex>`: a hash of the resolved config's settings that differ from their class's defaults,
    without the keys that only name or place a run (results.BOOKKEEPING_KEYS), so equal settings share an id
    however they were written, from any folder, and a library's new argument left at its default changes none."""
    settings = non_default_settings(cfg.as_dict() if hasattr(cfg, "as_dict") else dict(cfg))
    return f"{stem}-{hashlib.sha1(exact_text(settings).encode()).hexdigest()[:8]}"


def is_seed_key(key: str) -> bool:
    return key.rsplit(".", 1)[-1] in SEED_NAMES


def repeat_seeds(cfg: Any, repeat: int, where: str) -> dict[str, int]:
    """The seeds of repeat `repeat` (1, 2, ...): every whole-number seed key of the resolved config, each offset
    from its own value (repeat 0 is the config as is)."""
    base = lookup(cfg, "seed_everything")
    if isinstance(base, bool) or not isinstance(base, int):
        raise ConfigError(f"{where}: --repeats needs a whole-number seed_everything to offset, got {base!r}")
    flat = flatten(cfg.as_dict())
    return {key: value + repeat for key, value in flat.items()
            if is_seed_key(key) and isinstance(value, int) and not isinstance(value, bool)}


def _refuse_varied_seeds(studies: Sequence[Study]) -> None:
    for study in studies:
        for key in study.grid:
            if is_seed_key(key):
                raise ConfigError(f"study {study.name!r} varies {key}: --repeats sets the seeds itself; "
                                  "give the seeds in the grid or --repeats, not both")


def _refuse_extras_over_grid(cfg: Any, grid_last: Any, varied: list[str], where: str) -> None:
    """Arguments after `--` come after the grid's values (`cfg`): one that changes a key the grid varies (its value
    differs from `grid_last`, parsed with the grid's values last) would train something else than the run's label."""
    for key in varied:
        if lookup(cfg, key) != lookup(grid_last, key):
            raise ConfigError(f"{where}: the arguments after -- change {key}, which the grid varies; "
                              "leave it out of them or out of the grid")


def study_id(runs: Sequence[PlannedRun]) -> str:
    """A stable name for the Ray experiment of a planned sweep: the same command gives the same name."""
    digest = hashlib.sha1(exact_text(sorted(r.run_id for r in runs)).encode()).hexdigest()[:10]
    datasets = sorted({r.dataset for r in runs}) or ["sweep"]
    return f"{'+'.join(datasets)}-{digest}"
