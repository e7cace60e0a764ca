"""`python -m lightning_lab {fit,validate,test,predict}`: LightningCLI with the lab's defaults."""
from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities import rank_zero_info

from lightning_lab.callbacks import CHECKPOINT_ROOT, LabCheckpoint
from lightning_lab.errors import ConfigError, LabError
from lightning_lab.models import Classifier

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
LOG_DIR = "lightning_logs"
DEFAULT_LOGGER = {
    "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
    "init_args": {"save_dir": LOG_DIR, "name": "default", "default_hp_metric": False},
}
_VERSION_DIR = re.compile(r"^version_(\d+)$")
# --ckpt_path values that Lightning resolves itself (not files).
_CKPT_ALIASES = ("last", "best", "hpc")


def resolve_config_paths(argv: list[str]) -> list[str]:
    """Let `--config cifar.yaml` also find configs/cifar.yaml when it is not in the working directory."""
    resolved = list(argv)
    for i, arg in enumerate(resolved):
        if arg == "--config" and i + 1 < len(resolved):
            resolved[i + 1] = _find_config(resolved[i + 1])
        elif arg.startswith("--config="):
            resolved[i] = "--config=" + _find_config(arg.split("=", 1)[1])
    return resolved


def _find_config(path: str) -> str:
    if Path(path).exists() or path.lstrip().startswith(("{", "[")):
        return path
    for candidate in (Path("configs") / path, CONFIG_DIR / path, CONFIG_DIR / Path(path).name):
        if candidate.is_file():
            return str(candidate)
    return path  # jsonargparse reports the missing file


def find_last_checkpoint(experiment: str, root: str = CHECKPOINT_ROOT) -> Path | None:
    """The newest last.ckpt under checkpoints/<experiment>/version_*/."""
    candidates = sorted(Path(root, experiment).glob("version_*/last*.ckpt"), key=lambda p: p.stat().st_mtime)
    return candidates[-1] if candidates else None


def version_of(checkpoint: Path) -> int | None:
    """N for a checkpoint inside a version_N folder (so a resumed run logs into the same TensorBoard version)."""
    match = _VERSION_DIR.match(checkpoint.parent.name)
    return int(match.group(1)) if match else None


def _is_checkpoint_file_arg(ckpt_path: Any) -> bool:
    return (isinstance(ckpt_path, (str, Path)) and str(ckpt_path) not in _CKPT_ALIASES
            and not str(ckpt_path).startswith("registry") and "://" not in str(ckpt_path))


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint's contents (memory-mapped: cheap even for large files), or a ConfigError naming the file."""
    if not Path(path).is_file():
        raise ConfigError(f"checkpoint {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # pickle/zip errors of a truncated or foreign file
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"{path} is not a readable Lightning checkpoint ({first})") from err
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ConfigError(f"{path} is not a Lightning checkpoint (no state_dict; a plain weights file such as "
                          f"best_weights.pt loads with --model.init_args.weights where the model has one)")
    return checkpoint


def checkpoint_model_class(checkpoint: dict[str, Any]) -> str | None:
    """The network class a checkpoint was saved from (LightningCLI records it in the hyperparameters)."""
    return ((checkpoint.get("hyper_parameters") or {}).get("net") or {}).get("class_path")


def logging_step(checkpoint: dict[str, Any]) -> int:
    """The logger step a run resumed from `checkpoint` continues at (Lightning logs at _batches_that_stepped)."""
    try:
        return int(checkpoint["loops"]["fit_loop"]["epoch_loop.state_dict"]["_batches_that_stepped"])
    except (KeyError, TypeError):
        return int(checkpoint.get("global_step", 0))


class LabCLI(LightningCLI):
    """LightningCLI with: model/data linked, checkpoint + early-stopping + LR-monitor callbacks, TensorBoard,
    `--ckpt_path last` resuming the newest run of the experiment, and an optional test after fit."""

    def __init__(self, args: Any = None, run: bool = True, **kwargs: Any) -> None:
        kwargs.setdefault("trainer_defaults", {"callbacks": [LearningRateMonitor(logging_interval="epoch")]})
        # A typo such as --trainer.max_epoch must fail, not silently match --trainer.max_epochs.
        kwargs.setdefault("parser_kwargs", {
            "allow_abbrev": False, "prog": "python -m lightning_lab",
            "description": "Train, validate, test or predict with a config (configs/*.yaml). Sweeps and their "
                           "report: python -m lightning_lab sweep --help, python -m lightning_lab report --help."})
        super().__init__(
            Classifier,
            L.LightningDataModule,
            subclass_mode_model=False,
            subclass_mode_data=True,
            save_config_kwargs={"overwrite": True},
            seed_everything_default=42,
            auto_configure_optimizers=False,
            args=args,
            run=run,
            **kwargs,
        )

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.link_arguments("data.input_shape", "model.input_shape", apply_on="instantiate")
        parser.add_lightning_class_args(LabCheckpoint, "checkpoint")
        parser.set_defaults({
            "checkpoint.monitor": "val/acc",
            "checkpoint.mode": "max",
            "checkpoint.save_top_k": 1,
            "checkpoint.save_last": True,
            # Without this, a metric named val/acc turns into a sub-folder "val" in the file name.
            "checkpoint.auto_insert_metric_name": False,
            "checkpoint.filename": "epoch{epoch:03d}-acc{val/acc:.4f}",
        })
        parser.add_lightning_class_args(EarlyStopping, "early_stopping")
        parser.set_defaults({"early_stopping.monitor": "val/acc", "early_stopping.mode": "max",
                             "early_stopping.patience": 10})
        parser.set_defaults({"trainer.logger": DEFAULT_LOGGER})
        parser.add_argument("--test_after_fit", type=bool, default=False,
                            help="After fit, run the test set on the best checkpoint.")

    # -- checkpoints of another model ---------------------------------------------------------------------
    def _parse_ckpt_path(self) -> None:
        """LightningCLI replaces the configured model by the one stored in the checkpoint's hyperparameters, even
        when it is another class (a moons MLP checkpoint would silently turn a digits CNN run into an MLP run).
        Refuse that, naming both classes; a checkpoint of the same class keeps Lightning's behaviour."""
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if _is_checkpoint_file_arg(ckpt_path):
            checkpoint = read_checkpoint(ckpt_path)
            saved = checkpoint_model_class(checkpoint)
            wanted = self.config[subcommand].get("model.net.class_path")
            if saved and wanted and saved != wanted:
                raise ConfigError(f"checkpoint {ckpt_path} holds a {saved.rsplit('.', 1)[-1]} ({saved}), but this "
                                  f"run's model is {wanted.rsplit('.', 1)[-1]} ({wanted}); pass a checkpoint of the "
                                  f"same model or the config it was trained with")
        super()._parse_ckpt_path()

    def after_instantiate_classes(self) -> None:
        """A checkpoint whose weights do not fit the instantiated network fails here, before any training, with
        the first mismatching tensor named (instead of a state_dict traceback after data preparation)."""
        ckpt_path = self.config[self.subcommand].get("ckpt_path") if self.subcommand else None
        if not _is_checkpoint_file_arg(ckpt_path):
            return
        checkpoint = read_checkpoint(ckpt_path)
        saved = {k.replace("_orig_mod.", ""): tuple(v.shape) for k, v in checkpoint["state_dict"].items()}
        wanted = {k.replace("_orig_mod.", ""): tuple(v.shape) for k, v in self.model.state_dict().items()}
        problems = [f"{k} is missing" for k in wanted if k not in saved]
        problems += [f"{k} is not in the model" for k in saved if k not in wanted]
        problems += [f"{k} has shape {list(saved[k])} but the model expects {list(wanted[k])}"
                     for k in wanted if k in saved and saved[k] != wanted[k]]
        if problems:
            source = checkpoint_model_class(checkpoint) or "another model"
            raise ConfigError(f"checkpoint {ckpt_path} (saved from {source}) does not fit this run's "
                              f"{type(self.model).__name__}: {problems[0]}"
                              + (f" (and {len(problems) - 1} more differences)" if len(problems) > 1 else ""))

    # -- resume -----------------------------------------------------------------------------------------
    def before_instantiate_classes(self) -> None:
        if self.subcommand != "fit":
            return
        config = self.config[self.subcommand]
        logger = config.trainer.logger
        if not isinstance(logger, (dict, type(config))) or "init_args" not in logger:
            return
        name = logger.init_args.get("name") or "default"
        ckpt_path = config.get("ckpt_path")
        if ckpt_path == "last":
            last = find_last_checkpoint(str(name), self._checkpoint_root())
            if last is None:
                rank_zero_info(f"No last.ckpt under {self._checkpoint_root()}/{name}/: starting a new run.")
                config.ckpt_path = None
                return
            config.ckpt_path = str(last)
            rank_zero_info(f"Resuming from {last}")
        if config.ckpt_path and logger.init_args.get("version") is None:
            version = version_of(Path(config.ckpt_path))
            if version is not None:
                logger.init_args.version = version  # continue the same TensorBoard run
        if config.ckpt_path and logger.class_path.endswith("TensorBoardLogger") and Path(config.ckpt_path).is_file():
            # TensorBoard hides the events a killed run wrote after its checkpoint (the partly run epoch, which
            # is trained again): SummaryWriter(purge_step=N) starts the event file with a restart marker at N.
            step = logging_step(read_checkpoint(config.ckpt_path))
            logger.dict_kwargs = {**(logger.get("dict_kwargs") or {}), "purge_step": step}

    def _checkpoint_root(self) -> str:
        config = self.config[self.subcommand]
        return config.checkpoint.get("root") or CHECKPOINT_ROOT

    # -- failures -----------------------------------------------------------------------------------------
    def _run_subcommand(self, subcommand: str) -> None:
        """A run refused before its first training step (bad data files found in prepare_data/setup) leaves no
        log folder behind: Lightning creates it (and an event file) before the data module reports the problem."""
        log_dir = self.trainer.logger.log_dir if self.trainer.logger is not None else None
        existed = log_dir is not None and os.path.exists(log_dir)
        try:
            super()._run_subcommand(subcommand)
        except LabError:
            if (log_dir and not existed and self.trainer.global_step == 0 and self.trainer.is_global_zero
                    and os.path.isdir(log_dir)):
                shutil.rmtree(log_dir, ignore_errors=True)
            raise

    # -- after fit ----------------------------------------------------------------------------------------
    def after_fit(self) -> None:
        trainer = self.trainer
        checkpoint = trainer.checkpoint_callback
        if self.config[self.subcommand].get("test_after_fit") and not trainer.interrupted:
            best = checkpoint.best_model_path if checkpoint and checkpoint.best_model_path else None
            trainer.test(self.model, datamodule=self.datamodule, ckpt_path=best, verbose=True)
        if trainer.is_global_zero:
            print(run_summary(trainer), file=sys.stderr if trainer.interrupted else sys.stdout)


def run_summary(trainer: L.Trainer) -> str:
    """Where the run's checkpoint, weights and logs are, and how to look at them."""
    lines = ["", "Run finished." if not trainer.interrupted else "Run interrupted."]
    checkpoint = trainer.checkpoint_callback
    if isinstance(checkpoint, LabCheckpoint) and checkpoint.dirpath:
        if checkpoint.best_model_path:
            score = checkpoint.best_model_score
            lines.append(f"  best checkpoint : {checkpoint.best_model_path}"
                         + (f"  ({checkpoint.monitor}={score:.4f})" if score is not None else ""))
        if checkpoint.best_weights_path and checkpoint.best_weights_path.exists():
            lines.append(f"  best weights    : {checkpoint.best_weights_path}  (plain state dict of model.net)")
        if checkpoint.last_model_path:
            lines.append(f"  last checkpoint : {checkpoint.last_model_path}  (resume with --ckpt_path last)")
    for name in ("test/acc", "test/loss"):
        if name in trainer.callback_metrics:
            lines.append(f"  {name:<15} : {trainer.callback_metrics[name].item():.4f}")
    if trainer.logger is not None and trainer.logger.log_dir:
        lines.append(f"  TensorBoard logs: {trainer.logger.log_dir}")
        lines.append(f"  view them with  : tensorboard --logdir {trainer.logger.save_dir}")
    return "\n".join(lines)


def main(args: list[str] | None = None) -> None:
    """Run the CLI on `args` (default: the command line)."""
    if args is None or args == sys.argv[1:]:
        # LightningCLI warns when given args beside a command line; rewrite the command line instead.
        sys.argv[1:] = resolve_config_paths(sys.argv[1:])
        LabCLI()
    else:
        LabCLI(args=resolve_config_paths(args))
