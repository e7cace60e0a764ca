"""`python -m lightning_lab {fit,validate,test,predict}`: LightningCLI with the lab's defaults."""
from __future__ import annotations

import inspect
import re
import sys
import warnings
from argparse import ArgumentError
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.accelerators import CUDAAccelerator
from lightning.pytorch.callbacks import (Callback, EarlyStopping, LearningRateMonitor, ModelCheckpoint, ProgressBar,
                                         TQDMProgressBar, WeightAveraging)
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.plugins.io import CheckpointIO
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from lightning_lab.callbacks import (AtomicCheckpointIO, DiscardRefusedRun, LabCheckpoint, LastCheckpoint,
                                     PredictionWriter, RunRecord, last_checkpoint_path, refuse_finetuning_that_breaks)
from lightning_lab.checkpoint import (find_last_checkpoint, read_checkpoint,
                                      refuse_checkpoint_of_another_model, refuse_checkpoint_that_does_not_fit,
                                      version_of)
from lightning_lab.errors import CheckpointError, ConfigError, LabError, first_line
from lightning_lab.fast_defaults import fast_defaults, machine_fast_defaults
from lightning_lab.models import Classifier
from lightning_lab.paths import CHECKPOINT_ROOT, CONFIG_DIR, LOG_DIR
from lightning_lab.quiet import hide_library_deprecations, hide_lightning_tips, hide_weight_averaging_notes
from lightning_lab.run_config import changed_settings, refuse_resume_with_another_schedule_length, run_settings

DEFAULT_LOGGER = {
    "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
    "init_args": {"save_dir": LOG_DIR, "name": "default", "default_hp_metric": False},
}
# The progress bar redraws every N steps (tqdm's formatting costs host time). It shows the values logged with
# prog_bar=True: the epoch metrics. A step value logged with prog_bar=True would be read to the host by Lightning
# at every batch end (a device sync per step on a GPU), so train/loss goes to callback_metrics and the loggers only.
PROGRESS_REFRESH_STEPS = 10
INTERRUPTED_EXIT = 130  # the exit status of a run stopped by Ctrl-C (128 + SIGINT, as shells report it)

hide_lightning_tips()
hide_weight_averaging_notes()
hide_library_deprecations()


# -- config files ---------------------------------------------------------------------------------------------
def resolve_config_paths(argv: list[str]) -> list[str]:
    """Let `--config cifar.yaml` also find configs/cifar.yaml when it is not in the working directory; a config
    file that is not valid YAML is refused here, naming the file and the line."""
    resolved = list(argv)
    for i, arg in enumerate(resolved):
        if arg in ("--config", "-c") and i + 1 < len(resolved):
            resolved[i + 1] = check_yaml(_find_config(resolved[i + 1]))
        elif arg.startswith("--config="):
            resolved[i] = "--config=" + check_yaml(_find_config(arg.split("=", 1)[1]))
    return resolved


def _find_config(path: str) -> str:
    if Path(path).exists() or path.lstrip().startswith(("{", "[")) or "\n" in path or ": " in path:
        return path  # a file, or a config given inline
    candidates = (Path("configs") / path, CONFIG_DIR / path, CONFIG_DIR / Path(path).name)
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate)
    looked = ", ".join(dict.fromkeys(str(p) for p in (Path(path), *candidates)))
    shipped = ", ".join(sorted(p.name for p in CONFIG_DIR.glob("*.yaml")))
    raise ConfigError(f"config file {path} not found: looked for {looked}; the lab's configs: {shipped}")


def check_yaml(path: str) -> str:
    """`path` unchanged if it is not a file or parses as YAML; else a ConfigError naming file, line and fix."""
    if not Path(path).is_file():
        return path
    text = Path(path).read_text(errors="replace")
    try:
        yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        line = text.splitlines()[mark.line] if mark is not None and mark.line < len(text.splitlines()) else ""
        if "\t" in line:
            raise ConfigError(f"{path}{where}: a tab character; YAML indents with spaces only, replace the tab "
                              f"with spaces") from err
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{path}{where} is not valid YAML ({problem}); fix that line") from err
    return path


# -- trainer defaults -----------------------------------------------------------------------------------------
def trains_on_cuda(accelerator: Any, cuda_available: bool) -> bool:
    """Whether a Trainer with this `accelerator` setting trains on a CUDA GPU."""
    if isinstance(accelerator, CUDAAccelerator):
        return True
    return cuda_available and (accelerator is None or str(accelerator) in ("auto", "gpu", "cuda"))


def auto_precision(precision: Any, accelerator: Any, cuda_available: bool | None = None,
                   bf16_supported: bool | None = None) -> Any:
    """The Trainer precision: the user's when set; left unset, the fast default of the device the run trains on
    (bf16-mixed on a CUDA GPU that has it, Lightning's 32-true (None) on CPU). Device answers default to torch's."""
    if precision is not None:
        return precision
    cuda = trains_on_cuda(accelerator, torch.cuda.is_available() if cuda_available is None else cuda_available)
    if bf16_supported is None:
        return machine_fast_defaults("cuda" if cuda else "cpu").precision
    return fast_defaults("cuda" if cuda else "cpu", bf16_supported).precision


def _as_list(value: Any) -> list[Any]:
    return [] if value is None else list(value) if isinstance(value, (list, tuple)) else [value]


def trainer_error(err: Exception) -> ConfigError:
    """Lightning's complaint about a Trainer argument as a ConfigError naming the trainer.* key."""
    message = " ".join(str(err).split())
    names = [name for name in re.findall(r"`(\w+)", message) if name in inspect.signature(L.Trainer).parameters]
    if names:
        return ConfigError(f"trainer.{names[0]}: {message} Fix --trainer.{names[0]} (or {names[0]}: in the "
                           f"config's trainer: block).")
    return ConfigError(f"invalid trainer setting: {message} Fix the --trainer.* options or the config's trainer: "
                       f"block.")


def refuse_monitor_without_validation(trainer: L.Trainer) -> None:
    """A fit without validation (`limit_val_batches 0`) whose checkpoint or early stopping watches a val/ metric
    would stop with Lightning's error after its first epoch; refuse it before training, naming the fix."""
    if trainer.limit_val_batches != 0:
        return
    watching = {}  # key -> the val/ metric it watches
    for callback in trainer.callbacks:
        monitor = getattr(callback, "monitor", None) if isinstance(callback, (ModelCheckpoint, EarlyStopping)) else None
        if monitor and str(monitor).startswith("val/"):
            watching.setdefault("early_stopping" if isinstance(callback, EarlyStopping) else "checkpoint", monitor)
    if watching:
        key, monitor = next(iter(watching.items()))
        fix = " ".join(f"--{k}.monitor train/loss --{k}.mode min" for k in watching)  # only what watches val/
        raise ConfigError(f"--trainer.limit_val_batches 0 turns validation off, but {key}.monitor is {monitor}; "
                          f"keep validation, or watch a training metric: {fix}")


def run_test_on_best_checkpoint(trainer: L.Trainer, model: L.LightningModule, datamodule: L.LightningDataModule,
                                verbose: bool = True) -> dict[str, float]:
    """Test the weights of the checkpoint the run chose (the model as it is when there is none), exactly as
    `test --ckpt_path` with that file, `classify` and its best_weights.pt see them.

    Lightning's weight averaging (EMA, SWA) validates, chooses and checkpoints the averaged weights (as
    `state_dict`; the raw ones ride along), but the callback, still holding its fit-time average, would restore
    the raw ones into this test: it is taken off the finished trainer first."""
    checkpoint = trainer.checkpoint_callback
    best = checkpoint.best_model_path if checkpoint and checkpoint.best_model_path else None
    callbacks = trainer.callbacks
    averaging = [c for c in callbacks if isinstance(c, WeightAveraging)]
    trainer.callbacks = [c for c in callbacks if c not in averaging]
    try:
        with warnings.catch_warnings():
            for callback in averaging:  # Lightning notes the checkpoint was written with it: taken off on purpose
                warnings.filterwarnings("ignore", message=r"Be aware that when using `ckpt_path`.*"
                                        + re.escape(f"callbacks: [{callback.state_key!r}]"))
            return trainer.test(model, datamodule=datamodule, ckpt_path=best, verbose=verbose)[0]
    finally:
        trainer.callbacks = callbacks


def default_callbacks(run_id: str | None = None) -> list[Callback]:
    """Callbacks every run gets besides the configurable `checkpoint`, `early_stopping` and `prediction_writer`;
    LightningCLI adds them after those (so last.ckpt is written after this epoch's best). `run_id` names the run in
    its run.json (default: its log folder). A plain fit and a sweep's trial both get exactly this list."""
    return [LearningRateMonitor(logging_interval="epoch"), LastCheckpoint(), RunRecord(run_id)]


class LabCLI(LightningCLI):
    """LightningCLI with: model/data linked, checkpoint + early-stopping + LR-monitor callbacks, TensorBoard,
    atomic checkpoint files, `--ckpt_path last` resuming the newest run of the experiment, fast defaults on a
    GPU, and an optional test after fit."""

    def __init__(self, args: Any = None, run: bool = True, **kwargs: Any) -> None:
        kwargs.setdefault("trainer_defaults", {"callbacks": default_callbacks()})
        # A typo such as --trainer.max_epoch must fail, not silently match --trainer.max_epochs.
        # Parse errors raise (exit_on_error false) and become one `error: ...` line (parse_arguments), not argparse's
        # usage of every option followed by the message.
        kwargs.setdefault("parser_kwargs", {
            "allow_abbrev": False, "exit_on_error": False, "prog": "python -m lightning_lab",
            "description": "Train, validate, test or predict with a config (configs/*.yaml). Other commands: "
                           "classify (label your own images with a trained model), sweep (a grid of runs), "
                           "report (their results) and baselines (a config beside scikit-learn and a textbook "
                           "CNN): python -m lightning_lab {classify,sweep,report,baselines} --help."})
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
        parser.add_lightning_class_args(PredictionWriter, "prediction_writer")
        parser.set_defaults({
            "checkpoint.monitor": "val/acc",
            "checkpoint.mode": "max",
            "checkpoint.save_top_k": 1,
            # Without this, a metric named val/acc turns into a sub-folder "val" in the file name.
            "checkpoint.auto_insert_metric_name": False,
            "checkpoint.filename": "epoch{epoch:03d}-acc{val/acc:.4f}",
        })
        parser.add_lightning_class_args(EarlyStopping, "early_stopping")
        parser.set_defaults({"early_stopping.monitor": "val/acc", "early_stopping.mode": "max",
                             "early_stopping.patience": 10})
        parser.set_defaults({"trainer.logger": DEFAULT_LOGGER})
        parser.add_argument("--test_after_fit", type=bool, default=True,
                            help="After fit, run the test set on the best checkpoint (default true).")

    # -- checkpoints of another model -------------------------------------------------------------------------
    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Parse (a bad option or config key: a ConfigError naming it), then refuse a --ckpt_path of another model
        before LightningCLI adopts its hyperparameters."""
        try:
            super().parse_arguments(parser, args)
        except ArgumentError as err:
            raise ConfigError(parse_error_line(err, args if isinstance(args, list) else sys.argv[1:])) from err
        subcommand = self.config.get("subcommand")
        if subcommand:
            config = self.config[subcommand]
            refuse_checkpoint_of_another_model(config.get("ckpt_path"), config.get("model"))

    def after_instantiate_classes(self) -> None:
        """The model gets the run's settings to log (`run_settings`); a --ckpt_path whose weights do not fit the
        instantiated network, or a resume that would change the length of its learning-rate schedule, fails here,
        before any training."""
        if isinstance(getattr(self, "model", None), Classifier) and self.subcommand in ("fit", None):
            self.model.run_settings = run_settings(self.config[self.subcommand] if self.subcommand else self.config)
        if self.subcommand:
            ckpt_path = self.config[self.subcommand].get("ckpt_path")
            refuse_checkpoint_that_does_not_fit(ckpt_path, self.model)
            if self.subcommand == "fit":
                refuse_resume_with_another_schedule_length(ckpt_path, self.model, self.trainer.max_epochs)

    # -- where the run goes, and resuming ----------------------------------------------------------------------
    def before_instantiate_classes(self) -> None:
        if not self.subcommand:
            return
        config = self.config[self.subcommand]
        logger = config.trainer.logger
        has_logger = isinstance(logger, (dict, type(config))) and "init_args" in logger
        root_dir = config.trainer.get("default_root_dir")
        if root_dir:  # Lightning's meaning: the folder for logs and checkpoints whose place is not set otherwise
            if has_logger and logger.init_args.get("save_dir") == LOG_DIR:
                logger.init_args.save_dir = str(Path(root_dir, LOG_DIR))
            if config.checkpoint.get("root") == CHECKPOINT_ROOT:
                config.checkpoint.root = str(Path(root_dir, CHECKPOINT_ROOT))
        name = str(logger.init_args.get("name") or "default") if has_logger else "default"
        root, dirpath = config.checkpoint.get("root") or CHECKPOINT_ROOT, config.checkpoint.get("dirpath")
        if config.get("ckpt_path") == "last":
            self._resolve_last(config, name, root, dirpath)
        if self.subcommand != "fit" or not config.ckpt_path or not has_logger:
            return
        checkpoint = Path(config.ckpt_path)
        version = version_of(checkpoint)
        # Continue the same TensorBoard run, but only a run of this experiment: a checkpoint of another one
        # starts a new version here instead of writing into this experiment's version of the same number.
        same_experiment = not dirpath and checkpoint.resolve().parent.parent == Path(root, name).resolve()
        if version is not None and same_experiment and logger.init_args.get("version") is None:
            logger.init_args.version = version
            # It continues in its own checkpoint folder, which ModelCheckpoint warns "exists and is not empty".
            own = re.escape(str(Path(name, f"version_{version}")))
            warnings.filterwarnings("ignore", message=rf"Checkpoint directory .*{own} exists and is not empty")
            saved = Path(logger.init_args.get("save_dir") or LOG_DIR, name, f"version_{version}", "config.yaml")
            changed = changed_settings(saved, config)
            if changed:
                rank_zero_warn(f"resuming version_{version} with settings it did not start with: {'; '.join(changed)} "
                               f"(its config.yaml and run.json will hold the new ones)")
        if logger.class_path.endswith("TensorBoardLogger") and checkpoint.is_file():
            # TensorBoard hides the events a killed run wrote after its checkpoint (the partly run epoch, which
            # is trained again): SummaryWriter(purge_step=N) starts the event file with a restart marker at N.
            # Lightning logs at the number of optimizer steps, which is the checkpoint's global_step.
            step = int(read_checkpoint(checkpoint).get("global_step", 0))
            logger.dict_kwargs = {**(logger.get("dict_kwargs") or {}), "purge_step": step}

    def _resolve_last(self, config: Any, name: str, root: str, dirpath: str | None) -> None:
        """`--ckpt_path last`: the experiment's newest last.ckpt (in checkpoint.dirpath when that is set). `fit`
        without one starts a new run; test, validate and predict without one are refused (Lightning would go on
        with the untrained model)."""
        last = find_last_checkpoint(name, root, dirpath)
        where = dirpath or f"{root}/{name}"
        if last is None and self.subcommand == "fit":
            rank_zero_info(f"No last.ckpt under {where}/: starting a new run.")
            config.ckpt_path = None
            return
        if last is None:
            raise CheckpointError(f"--ckpt_path last: no last.ckpt under {where}/ (experiment {name}); train it "
                                  f"first (fit), or pass a checkpoint file: --ckpt_path PATH.ckpt")
        refuse_checkpoint_of_another_model(str(last), config.get("model"))
        config.ckpt_path = str(last)
        rank_zero_info(f"Resuming from {last}" if self.subcommand == "fit" else f"Using {last}")

    # -- the trainer ------------------------------------------------------------------------------------------
    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        """Lightning's Trainer plus the lab's defaults that depend on other settings: the fixed callbacks, a
        progress bar that redraws every PROGRESS_REFRESH_STEPS steps, atomic checkpoint files, the GPU precision
        when none is set; a bad Trainer argument becomes a ConfigError naming the key, and fine-tuning callbacks
        that would go wrong with this trainer are refused."""
        config = self.config_init[self.subcommand] if self.subcommand else self.config_init
        trainer_config = config.get("trainer") or {}
        callbacks = _as_list(trainer_config.get("callbacks"))
        if trainer_config.get("enable_progress_bar") is not False and not any(
                isinstance(c, ProgressBar) for c in callbacks):
            callbacks.append(TQDMProgressBar(refresh_rate=PROGRESS_REFRESH_STEPS))
        plugins = _as_list(trainer_config.get("plugins"))
        if not any(isinstance(p, CheckpointIO) for p in plugins):
            plugins.append(AtomicCheckpointIO())
        defaults: dict[str, Any] = {"callbacks": callbacks, "plugins": plugins}
        precision = auto_precision(trainer_config.get("precision"), trainer_config.get("accelerator"))
        if precision is not None:
            defaults["precision"] = precision
        try:
            trainer = super().instantiate_trainer(**{**defaults, **kwargs})
        except LabError:
            raise
        except (MisconfigurationException, ValueError) as err:
            raise trainer_error(err) from err
        refuse_finetuning_that_breaks(trainer)
        if self.subcommand == "fit":
            refuse_monitor_without_validation(trainer)
        trainer.callbacks.append(DiscardRefusedRun.for_trainer(trainer))
        return trainer

    # -- fit and after it -------------------------------------------------------------------------------------
    def fit(self, **kwargs: Any) -> None:
        """`trainer.fit` (LightningCLI runs a subcommand through the CLI's method of that name when it has one).
        Lightning ends a fit stopped by Ctrl-C with SystemExit(1) after its graceful shutdown, so `after_fit`
        would never run: here the interrupted run still gets its summary (on stderr), and the command exits
        130, as a shell reports Ctrl-C and as `sweep` does."""
        try:
            self.trainer.fit(**kwargs)
        except SystemExit:
            if not self.trainer.interrupted:
                raise
            self.after_fit()
            raise SystemExit(INTERRUPTED_EXIT) from None

    def after_fit(self) -> None:
        trainer = self.trainer
        if self.config[self.subcommand].get("test_after_fit") and not trainer.interrupted:
            run_test_on_best_checkpoint(trainer, self.model, self.datamodule, verbose=True)
        record = RunRecord.of(trainer)
        if record is not None:
            record.finish(trainer)  # `ok` only now: trained to its budget and, if asked, tested
        if trainer.is_global_zero:
            print(run_summary(trainer), file=sys.stderr if trainer.interrupted else sys.stdout)


def run_summary(trainer: L.Trainer) -> str:
    """Where the run's checkpoint, weights and logs are, and how to look at them."""
    lines = ["", "Run finished." if not trainer.interrupted else "Run interrupted."]
    checkpoint = trainer.checkpoint_callback
    if isinstance(checkpoint, LabCheckpoint) and checkpoint.dirpath:
        if checkpoint.best_model_path:
            score = checkpoint.best_model_score
            chosen = (f"  ({checkpoint.monitor}={score:.4f})" if score is not None else "") if checkpoint.monitor \
                else "  (the last epoch: checkpoint.monitor is null)"
            lines.append(f"  best checkpoint : {checkpoint.best_model_path}{chosen}")
        if checkpoint.best_weights_path and checkpoint.best_weights_path.exists():
            lines.append(f"  best weights    : {checkpoint.best_weights_path}  (plain state dict of model.net)")
    last = last_checkpoint_path(trainer)
    if last:
        lines.append(f"  last checkpoint : {last}  (resume with --ckpt_path last)")
    for name in ("test/acc", "test/loss"):
        if name in trainer.callback_metrics:
            lines.append(f"  {name:<15} : {trainer.callback_metrics[name].item():.4f}")
    if trainer.logger is not None and trainer.logger.log_dir:
        lines.append(f"  TensorBoard logs: {trainer.logger.log_dir}")
        lines.append(f"  view them with  : tensorboard --logdir {trainer.logger.save_dir}")
    return "\n".join(lines)


def parse_error_line(err: ArgumentError, args: list[str]) -> str:
    """jsonargparse's message in one line, without the union-type scaffolding, and where the options are listed."""
    command = next((a for a in args if a in ("fit", "validate", "test", "predict")), None)
    message = first_line(err, all_lines=True).removeprefix(f"{type(err).__name__}: ")
    if command:  # jsonargparse names the subcommand among the arguments it did not recognise
        message = message.replace(f"unrecognized arguments: {command} ", "unrecognized arguments: ", 1)
    where = f"python -m lightning_lab {command}" if command else "python -m lightning_lab"
    return f"{message} ({where} --help lists the options)"


def main(args: list[str] | None = None) -> None:
    """Run the CLI on `args` (default: the command line)."""
    if args is None or args == sys.argv[1:]:
        # LightningCLI warns when given args beside a command line; rewrite the command line instead.
        sys.argv[1:] = resolve_config_paths(sys.argv[1:])
        LabCLI()
    else:
        LabCLI(args=resolve_config_paths(args))
