"""`python -m lightning_lab` end to end: configs train, checkpoints and TensorBoard logs are written, bad input
is refused before training, the CLI's defaults (progress bar, atomic checkpoint IO, GPU precision), and a
2-process DDP run on CPU."""
from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import QUICK, DigitsRun, cli, network_batches, quick_args, run_entry
from fake_datasets import write_cifar10, write_mnist, write_pet_images
from lightning_lab.cli import main
from lightning_lab.models import ParametricCNN


def events(log_dir: Path) -> EventAccumulator:
    accumulator = EventAccumulator(str(log_dir), size_guidance={"images": 0, "scalars": 0})
    accumulator.Reload()
    return accumulator


def only_version(root: Path) -> Path:
    versions = sorted(root.glob("version_*"))
    assert len(versions) == 1, versions
    return versions[0]


def assert_run_written(workdir: Path, experiment: str) -> tuple[Path, Path]:
    """One checkpoint folder and one TensorBoard run, with the files a user looks for."""
    ckpt_dir = only_version(workdir / "checkpoints" / experiment)
    assert (ckpt_dir / "last.ckpt").is_file()
    best = [p for p in ckpt_dir.glob("epoch*.ckpt")]
    assert len(best) == 1 and "-acc" in best[0].name  # no "val/" sub-folder from the metric name
    assert (ckpt_dir / "best_weights.pt").is_file()
    log_dir = only_version(workdir / "lightning_logs" / experiment)
    assert list(log_dir.glob("events.out.tfevents.*"))
    assert (log_dir / "config.yaml").is_file()
    return ckpt_dir, log_dir


def assert_logged_everything(log_dir: Path, images: bool) -> None:
    accumulator = events(log_dir)
    tags = accumulator.Tags()
    # HPARAMS tab: the session summary naming the final metrics shown beside the hyperparameters
    hparams = accumulator.PluginTagToContent("hparams")
    assert "_hparams_/experiment" in hparams and b"val/acc_best" in hparams["_hparams_/experiment"]
    # beside the model's: the data module's and the Trainer's settings the run sets (every run here sets these)
    assert all(key in hparams[tag] for key in (b"data.batch_size", b"trainer.max_epochs", b"net")
               for tag in ("_hparams_/experiment", "_hparams_/session_start_info"))
    assert {"train/loss", "train/acc", "val/loss", "val/acc", "val/acc_best", "test/acc", "test/loss"} <= set(
        tags["scalars"])  # test/*: test_after_fit is on by default
    if images:
        assert {"test/confusion_matrix", "test/predictions"} <= set(tags["images"])
    assert any(name.startswith("lr-") for name in tags["scalars"])  # LearningRateMonitor


@pytest.mark.slow
def test_fit_moons(workdir: Path) -> None:
    main(["fit", "--config", "moons.yaml", *QUICK])
    _, log_dir = assert_run_written(workdir, "moons_mlp")
    assert_logged_everything(log_dir, images=False)


@pytest.mark.slow
def test_fit_mnist_from_idx_files(workdir: Path) -> None:
    write_mnist(workdir / "data", n_train=200, n_test=40)
    main(["fit", "--config", "mnist.yaml", "--data.init_args.download", "false", "--data.init_args.val_split", "40",
          "--data.init_args.num_workers", "0", "--data.init_args.batch_size", "16", *QUICK])
    assert_run_written(workdir, "mnist_cnn")


@pytest.mark.slow
@pytest.mark.parametrize("config,experiment", [("cifar.yaml", "cifar_cnn"), ("resnet18_cifar.yaml", "cifar_resnet18")])
def test_fit_cifar10_from_pickle_batches(workdir: Path, skip_cifar_md5: None, config: str, experiment: str) -> None:
    write_cifar10(workdir / "data", n_per_batch=20, n_test=20)
    extra = ["--model.net.init_args.weights", "none"] if "resnet" in config else []
    main(["fit", "--config", config, "--data.init_args.download", "false", "--data.init_args.val_split", "20",
          "--data.init_args.num_workers", "0", "--data.init_args.batch_size", "8", *extra, *QUICK])
    assert_run_written(workdir, experiment)


@pytest.mark.slow
@pytest.mark.parametrize("config,experiment", [("cats_dogs.yaml", "cats_dogs_cnn"),
                                               ("resnet18_cats_dogs.yaml", "cats_dogs_resnet18")])
def test_fit_cats_dogs_from_jpeg_tree(workdir: Path, config: str, experiment: str) -> None:
    write_pet_images(workdir / "data", n_per_class=12, size=40)
    extra = ["--model.net.init_args.weights", "none"] if "resnet" in config else []
    main(["fit", "--config", config, "--data.init_args.download", "false", "--data.init_args.image_size", "32",
          "--data.init_args.num_workers", "0", "--data.init_args.batch_size", "4", *extra, *QUICK])
    assert_run_written(workdir, experiment)


@pytest.mark.slow
def test_cnn_learns_digits_and_best_weights_load_without_lightning(digits_run: DigitsRun) -> None:
    """The shared run (conftest): `fit --config digits.yaml` for 2 epochs, then its test."""
    ckpt_dir, log_dir = assert_run_written(digits_run.root, "digits_cnn")
    assert_logged_everything(log_dir, images=True)
    test_acc = events(log_dir).Scalars("test/acc")[-1].value
    assert test_acc == pytest.approx(digits_run.test_acc) and test_acc >= 0.9  # chance is 0.1
    net = ParametricCNN((1, 8, 8), 10, channels=[64, 128], convs_per_block=2, dropout=0.25)  # as digits.yaml
    net.load_state_dict(torch.load(ckpt_dir / "best_weights.pt", weights_only=True))
    from lightning_lab.data import DigitsDataModule

    data = DigitsDataModule(seed=42, val_split=0.1, test_split=0.2)
    data.setup("test")
    x, y = network_batches(data, data.test_dataloader())  # stored uint8 -> what the network takes
    with torch.no_grad():
        assert (net.eval()(x).argmax(1) == y).float().mean() == pytest.approx(test_acc)  # the best checkpoint's


@pytest.mark.slow
def test_rerun_and_resume_continue_in_the_same_places(workdir: Path) -> None:
    main(["fit", "--config", "moons.yaml", *QUICK])
    main(["fit", "--config", "moons.yaml", *QUICK])  # the saved config.yaml must not block a second run
    assert sorted(p.name for p in (workdir / "lightning_logs" / "moons_mlp").iterdir()) == ["version_0", "version_1"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        main(["fit", "--config", "moons.yaml", "--ckpt_path", "last", *quick_args(max_epochs=2)])
    assert not [w for w in caught if "exists and is not empty" in str(w.message)]  # its own folder, as meant
    assert not [w for w in caught if "did not start with" in str(w.message)]  # only max_epochs changed
    assert sorted(p.name for p in (workdir / "lightning_logs" / "moons_mlp").iterdir()) == ["version_0", "version_1"]
    last = torch.load(workdir / "checkpoints/moons_mlp/version_1/last.ckpt", weights_only=False)
    assert last["epoch"] == 1 and last["global_step"] == 6


def test_a_resume_that_would_change_the_schedule_length_is_refused(workdir: Path,
                                                                   capsys: pytest.CaptureFixture) -> None:
    """The cosine schedule's T_max is the run's max_epochs, and resuming restores it: a longer resumed run would
    train its extra epochs at learning rate 0 and beyond, so it is refused before training, the run untouched."""
    assert cli("fit", "--config", "digits.yaml", *quick_args(max_epochs=2)) == 0
    last = workdir / "checkpoints" / "digits_cnn" / "version_0" / "last.ckpt"
    saved = last.stat().st_mtime_ns
    capsys.readouterr()
    assert cli("fit", "--config", "digits.yaml", "--ckpt_path", "last", *quick_args(max_epochs=3)) == 2
    err = capsys.readouterr().err
    assert "that run's CosineAnnealingLR spans 2 epochs (its T_max)" in err
    assert "with trainer.max_epochs 3 it would train epoch 3 past the schedule's end" in err
    assert err.rstrip().endswith("resume with --trainer.max_epochs 2, or train a new run of the length you want")
    assert last.stat().st_mtime_ns == saved
    assert [p.name for p in (workdir / "lightning_logs" / "digits_cnn").iterdir()] == ["version_0"]
    assert cli("fit", "--config", "digits.yaml", "--ckpt_path", "last", *quick_args(max_epochs=2)) == 0


def test_a_schedule_length_set_in_code_is_compared_as_it_is(tmp_path: Path) -> None:
    """A Classifier built in Python may bind T_max itself (the CLI leaves it to max_epochs): that value counts."""
    import functools

    from lightning_lab.run_config import refuse_resume_with_another_schedule_length as refuse
    from lightning_lab.errors import CheckpointError
    from lightning_lab.models import MLP, Classifier

    checkpoint = tmp_path / "run.ckpt"
    torch.save({"state_dict": {}, "lr_schedulers": [{"T_max": 4}]}, checkpoint)

    def model(t_max: int) -> Classifier:
        cosine = functools.partial(torch.optim.lr_scheduler.CosineAnnealingLR, T_max=t_max)
        return Classifier(MLP, num_classes=2, input_shape=(2,), scheduler=cosine)

    refuse(checkpoint, model(4), max_epochs=10)  # the same length: resumes
    with pytest.raises(CheckpointError, match=r"with T_max 6 it would keep T_max 4; resume with the T_max it "
                                              r"started with \(4\)"):
        refuse(checkpoint, model(6), max_epochs=10)


def test_a_resume_with_other_settings_says_which(workdir: Path) -> None:
    main(["fit", "--config", "moons.yaml", "--trainer.precision", "64-true", *QUICK])
    with pytest.warns(UserWarning, match=r"resuming version_0 with settings it did not start with: "
                                         r"trainer\.precision \(64-true -> default\) \(its config\.yaml"):
        main(["fit", "--config", "moons.yaml", "--ckpt_path", "last", *quick_args(max_epochs=2)])


@pytest.mark.slow
def test_last_without_a_checkpoint_starts_a_new_run_and_the_summary_says_where_everything_is(
        workdir: Path, capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        main(["fit", "--config", "moons.yaml", "--ckpt_path", "last", *QUICK])
    assert "No last.ckpt under checkpoints/moons_mlp/: starting a new run." in caplog.text
    run = Path("checkpoints/moons_mlp/version_0")
    summary = capsys.readouterr().out.split("Run finished.", 1)[1].splitlines()
    expected = [f"  best checkpoint : {next(run.glob('epoch*.ckpt'))}  (val/acc=", f"  best weights    : {run}/best_weights.pt",
                f"  last checkpoint : {run}/last.ckpt  (resume with --ckpt_path last)", "  test/acc        : ",
                "  test/loss       : ", "  TensorBoard logs: lightning_logs/moons_mlp/version_0",
                "  view them with  : tensorboard --logdir lightning_logs"]
    assert [line for line in summary if line.strip()] and all(
        any(line.startswith(start) for line in summary) for start in expected), summary


@pytest.mark.slow
def test_a_checkpoint_of_another_experiment_continues_in_a_new_version_of_this_one(workdir: Path) -> None:
    """Resuming experiment `a` from `b`'s version_0 must not write into `a`'s own, unrelated version_0."""
    main(["fit", "--config", "moons.yaml", "--trainer.logger.init_args.name", "a", *QUICK])
    main(["fit", "--config", "moons.yaml", "--trainer.logger.init_args.name", "b", *QUICK])
    a_last = (workdir / "checkpoints/a/version_0/last.ckpt").read_bytes()
    main(["fit", "--config", "moons.yaml", "--trainer.logger.init_args.name", "a", "--ckpt_path",
          "checkpoints/b/version_0/last.ckpt", *quick_args(max_epochs=2)])
    assert (workdir / "checkpoints/a/version_0/last.ckpt").read_bytes() == a_last
    assert torch.load(workdir / "checkpoints/a/version_1/last.ckpt", weights_only=False)["epoch"] == 1
    assert sorted(p.name for p in (workdir / "lightning_logs" / "a").iterdir()) == ["version_0", "version_1"]


@pytest.mark.slow
def test_ckpt_path_last_for_test_and_with_a_dirpath_and_default_root_dir(
        workdir: Path, capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture) -> None:
    # test/validate/predict need a checkpoint: without one `last` is refused, not an untrained model evaluated
    assert cli("test", "--config", "moons.yaml", "--ckpt_path", "last", *QUICK) == 2
    err = capsys.readouterr().err
    assert "error: --ckpt_path last: no last.ckpt under checkpoints/moons_mlp/" in err and "Traceback" not in err
    # a run that keeps its checkpoints in its own dirpath continues from there
    own = ["--checkpoint.dirpath", "mine", *QUICK]
    main(["fit", "--config", "moons.yaml", *own])
    main(["fit", "--config", "moons.yaml", "--ckpt_path", "last", *own[:2], *quick_args(max_epochs=2)])
    assert torch.load(workdir / "mine" / "last.ckpt", weights_only=False)["epoch"] == 1
    with caplog.at_level(logging.INFO):
        assert cli("test", "--config", "moons.yaml", "--ckpt_path", "last", *own) == 0
    assert "Using mine/last.ckpt" in caplog.text
    # Lightning's default_root_dir holds the logs and checkpoints
    main(["fit", "--config", "moons.yaml", "--trainer.default_root_dir", "runs", *QUICK])
    assert (workdir / "runs/lightning_logs/moons_mlp/version_0").is_dir()
    assert (workdir / "runs/checkpoints/moons_mlp/version_0/last.ckpt").is_file()


def test_no_validation_with_a_val_monitor_is_refused_before_training(workdir: Path,
                                                                     capsys: pytest.CaptureFixture) -> None:
    assert cli("fit", "--config", "moons.yaml", "--trainer.limit_val_batches", "0") == 2
    assert "error: --trainer.limit_val_batches 0 turns validation off" in capsys.readouterr().err
    assert not (workdir / "checkpoints").exists()
    args = ["--trainer.limit_val_batches", "0", "--checkpoint.monitor", "train/loss", "--checkpoint.mode", "min",
            "--early_stopping.monitor", "train/loss", "--early_stopping.mode", "min", "--test_after_fit", "false"]
    assert cli("fit", "--config", "moons.yaml", *QUICK, *args) == 0
    # digits.yaml keeps the last epoch (no checkpoint monitor): only its early stopping needs another metric
    assert cli("fit", "--config", "digits.yaml", "--trainer.limit_val_batches", "0") == 2
    err = capsys.readouterr().err
    assert err.rstrip().endswith("watch a training metric: --early_stopping.monitor train/loss "
                                 "--early_stopping.mode min"), err


@pytest.mark.parametrize("args,needle", [
    (["--trainer.max_epoch", "3"], "max_epoch"),
    (["--model.net.init_args.activation", "sigmoid"], "relu"),
    (["--model.net.init_args.init", "he"], "xavier"),
    (["--model.optimizer.init_args.lr", "-1"], "Invalid learning rate"),
    (["--data.init_args.batch_size", "-8"], "batch_size"),
])
def test_bad_input_exits_before_training(workdir: Path, capsys: pytest.CaptureFixture, args: list[str],
                                         needle: str) -> None:
    code = cli("fit", "--config", "digits.yaml", *args)
    assert code == 2
    stderr = capsys.readouterr().err
    assert needle in stderr and "Traceback" not in stderr
    assert not (workdir / "lightning_logs").exists() and not (workdir / "checkpoints").exists()


def test_a_config_file_found_nowhere_names_where_it_looked(workdir: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli("fit", "--config", "digit.yaml") == 2
    line, = capsys.readouterr().err.splitlines()
    assert line.startswith("error: config file digit.yaml not found: looked for digit.yaml, configs/digit.yaml")
    assert "the lab's configs: " in line and "digits.yaml" in line


def test_a_misspelt_option_is_one_error_line(capsys: pytest.CaptureFixture) -> None:
    hint = " (python -m lightning_lab fit --help lists the options)"
    for args, line in [(["--trainer.max_epoch", "3"], "error: unrecognized arguments: --trainer.max_epoch 3"),
                       (["--data.init_args.batchsize", "8"], "error: Parser key \"data\": Problem with given "
                        "class_path 'lightning_lab.data.DigitsDataModule': Option 'batchsize' is not accepted")]:
        assert cli("fit", "--config", "digits.yaml", *args) == 2
        assert capsys.readouterr().err.splitlines() == [line + hint]


def test_bad_config_file_key_exits_before_training(workdir: Path, capsys: pytest.CaptureFixture) -> None:
    """A misspelt key in a config file: exit code 2 and a message naming it, before anything is written."""
    (workdir / "typo.yaml").write_text("trainer:\n  max_epoch: 3\n")
    assert cli("fit", "--config", "digits.yaml", "--config", "typo.yaml") == 2
    stderr = capsys.readouterr().err
    assert "max_epoch" in stderr and "Traceback" not in stderr
    assert stderr.splitlines() == ["error: Subcommand 'fit' does not accept option 'trainer.max_epoch' "
                                   "(python -m lightning_lab fit --help lists the options)"]  # not every option
    assert not (workdir / "lightning_logs").exists() and not (workdir / "checkpoints").exists()


@pytest.mark.slow
def test_ddp_two_processes_on_cpu(tmp_path: Path) -> None:
    """With Lightning's EMA callback too, which copies the model (a copy that reached the DDP Trainer failed)."""
    ema = "--trainer.callbacks+=lightning.pytorch.callbacks.EMAWeightAveraging"
    result = run_entry("fit", "--config", "digits.yaml", "--trainer.accelerator", "cpu", "--trainer.devices", "2",
                       "--trainer.strategy", "ddp", "--trainer.deterministic", "false", ema, *QUICK, cwd=tmp_path,
                       timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "GLOBAL_RANK: 1" in result.stderr + result.stdout or "distributed_backend=gloo" in result.stderr
    _, log_dir = assert_run_written(tmp_path, "digits_cnn")
    assert "test/acc" in events(log_dir).Tags()["scalars"]
    record = json.loads((log_dir / "run.json").read_text())  # written by rank 0 alone, without a collective
    assert record["status"] == "ok" and record["world_size"] == 2 and record["metrics"]["test/acc"] is not None
    assert "current_model_state" in torch.load(record["checkpoint"], weights_only=False)  # the averaged weights'


# ------------------------------------------------------------------------------------------ the CLI's defaults
def test_top_level_help_names_every_command(capsys: pytest.CaptureFixture) -> None:
    assert cli("--help") == 0
    out = capsys.readouterr().out
    assert all(command in out for command in ("fit", "classify", "sweep", "report", "baselines"))


def test_classify_is_dispatched_with_its_own_arguments(workdir: Path, capsys: pytest.CaptureFixture) -> None:
    (workdir / "a.png").write_bytes(b"")  # it exists: the checkpoint is looked at next
    assert cli("classify", "missing.ckpt", "a.png") == 2
    assert capsys.readouterr().err == "error: checkpoint missing.ckpt does not exist\n"
    assert cli("classify", "--help") == 0 and "CHECKPOINT" in capsys.readouterr().out


def test_trainer_defaults_progress_bar_atomic_io_and_cpu_precision(workdir: Path) -> None:
    from lightning.pytorch.callbacks import TQDMProgressBar

    from lightning_lab.callbacks import AtomicCheckpointIO, LabCheckpoint, LastCheckpoint
    from lightning_lab.cli import PROGRESS_REFRESH_STEPS, LabCLI, resolve_config_paths

    config = resolve_config_paths(["--config", "digits.yaml"])[1]

    trainer = LabCLI(args=["--config", config], run=False).trainer
    bar = trainer.progress_bar_callback
    assert isinstance(bar, TQDMProgressBar) and bar.refresh_rate == PROGRESS_REFRESH_STEPS > 1
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)
    assert trainer.precision == "32-true"  # CPU: Lightning's default
    assert isinstance(trainer.checkpoint_callback, LabCheckpoint)  # the main one comes first, last.ckpt after it
    assert isinstance(trainer.checkpoint_callbacks[-1], LastCheckpoint)
    quiet = LabCLI(args=["--config", config, "--trainer.enable_progress_bar", "false"], run=False).trainer
    assert quiet.progress_bar_callback is None


@pytest.mark.parametrize("precision,accelerator,cuda,bf16,expected", [
    (None, "auto", True, True, "bf16-mixed"),    # a GPU with bf16: the fast default
    (None, "gpu", True, False, "16-mixed"),      # an older GPU
    (None, "auto", False, False, None),          # CPU: Lightning's default (32-true)
    (None, "cpu", True, True, None),             # a GPU machine told to train on the CPU
    ("32-true", "auto", True, True, "32-true"),  # an explicit choice is kept
])
def test_gpu_precision_default_is_a_function_of_the_device(precision, accelerator, cuda, bf16, expected) -> None:
    from lightning_lab.cli import auto_precision

    assert auto_precision(precision, accelerator, cuda_available=cuda, bf16_supported=bf16) == expected


def test_lightning_advertising_is_not_shown(workdir: Path) -> None:
    import lightning as L
    from lightning.pytorch.loggers import TensorBoardLogger

    import lightning_lab.cli  # noqa: F401  (installs the filter)

    seen: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    log = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    handler = Collect()
    log.addHandler(handler)
    try:
        L.Trainer(logger=TensorBoardLogger("logs"), enable_checkpointing=False, accelerator="cpu")
    finally:
        log.removeHandler(handler)
    assert any("GPU available" in line for line in seen)  # Lightning's useful lines still come through
    assert not any("Tip" in line or "litlogger" in line for line in seen), seen


def test_bad_trainer_argument_is_one_line_naming_the_key(workdir: Path, capsys: pytest.CaptureFixture) -> None:
    code = cli("fit", "--config", "digits.yaml", "--trainer.max_epochs", "-5")
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err[-2000:]
    assert "trainer.max_epochs" in lines[0] and "-5" in lines[0]
    assert not (workdir / "lightning_logs").exists()


def test_config_with_a_tab_is_one_line_naming_the_file(workdir: Path, capsys: pytest.CaptureFixture) -> None:
    (workdir / "tabbed.yaml").write_text("trainer:\n\tmax_epochs: 3\n")
    code = cli("fit", "--config", "digits.yaml", "--config", "tabbed.yaml")
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err[-2000:]
    assert "tabbed.yaml" in lines[0] and "line 2" in lines[0] and "tab" in lines[0]


@pytest.mark.parametrize("monitor", [
    ["--early_stopping.monitor", "train/loss", "--early_stopping.mode", "min"],
    ["--checkpoint.monitor", "train/loss", "--checkpoint.mode", "min"],
])
def test_train_loss_can_be_monitored_like_any_logged_metric(workdir: Path, monitor: list[str]) -> None:
    """train/loss is in callback_metrics after every step, even with steps that Lightning does not log."""
    from lightning_lab.cli import LabCLI, resolve_config_paths

    config = resolve_config_paths(["--config", "digits.yaml"])[1]
    run = LabCLI(args=["fit", "--config", config, *monitor, *quick_args(max_epochs=2), "--trainer.log_every_n_steps",
                       "50", "--test_after_fit", "false"])
    trainer = run.trainer
    assert trainer.global_step == 6 and trainer.callback_metrics["train/loss"].isfinite()
    watcher = trainer.early_stopping_callback if "--early_stopping.monitor" in monitor else trainer.checkpoint_callback
    assert watcher.monitor == "train/loss"
    score = watcher.best_score if "--early_stopping.monitor" in monitor else watcher.best_model_score
    assert score is not None and score.isfinite()


def test_lightnings_backbone_finetuning_is_refused_before_training(workdir: Path,
                                                                 capsys: pytest.CaptureFixture) -> None:
    code = cli("fit", "--config", "resnet18_cifar.yaml", "--model.net.init_args.weights", "none",
               "--trainer.callbacks+=lightning.pytorch.callbacks.BackboneFinetuning")
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: Lightning's BackboneFinetuning") and "StagedFinetuning" in err
    assert not (workdir / "lightning_logs").exists() and not (workdir / "data").exists()


def test_a_weight_averaged_run_is_tested_on_the_averaged_weights_it_checkpoints(workdir: Path) -> None:
    """Lightning's EMA callback validates and checkpoints the averaged weights; the test after fit must score
    those (as `test --ckpt_path` and `classify` do), not the raw ones the callback would restore."""
    from lightning_lab.cli import LabCLI, resolve_config_paths
    from lightning_lab.quiet import hide_weight_averaging_notes

    ema = ('--trainer.callbacks+={"class_path": "lightning.pytorch.callbacks.EMAWeightAveraging", '
           '"init_args": {"decay": 0.5}}')
    with warnings.catch_warnings(record=True) as shown:
        hide_weight_averaging_notes()  # as importing the CLI does (pytest resets warning filters for each test)
        fit = LabCLI(args=resolve_config_paths(["fit", "--config", "moons.yaml", ema, *QUICK]))
    best = fit.trainer.checkpoint_callback.best_model_path
    saved = torch.load(best, weights_only=False)
    averaged, raw = saved["state_dict"], saved["current_model_state"]
    assert any(not torch.equal(averaged[k], raw[k]) for k in averaged)  # the average is not the raw weights
    with warnings.catch_warnings(record=True) as also_shown:
        hide_weight_averaging_notes()
        tested = LabCLI(args=resolve_config_paths(["test", "--config", "moons.yaml", ema, "--ckpt_path", best,
                                                   *QUICK]))
    assert tested.trainer.callback_metrics["test/loss"] == fit.trainer.callback_metrics["test/loss"]
    notes = [str(w.message) for w in shown + also_shown]
    assert not [n for n in notes if "WeightAveraging" in n or "callbacks used to create" in n], notes



def test_a_run_shows_no_deprecation_notice_meant_for_lightning(workdir: Path) -> None:
    """torch's LeafSpec FutureWarning, which Lightning 2.6 triggers in every run (a process of its own: the
    filter is the one importing the CLI installs)."""
    done = run_entry("fit", "--config", "moons.yaml", *QUICK, cwd=workdir)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "LeafSpec" not in done.stderr


def test_a_copy_of_the_model_shares_the_cli_built_optimizer_instead_of_copying_the_cli(workdir: Path) -> None:
    """LightningCLI's optimizer factory holds the CLI (Trainer, data module and its data): Lightning's weight
    averaging copies the model, and a copy that took them along doubled the data and failed under DDP."""
    import copy

    from lightning_lab.cli import LabCLI, resolve_config_paths

    made = LabCLI(args=resolve_config_paths(["--config", "digits.yaml", *QUICK]), run=False)
    made.datamodule.setup("fit")
    clone = copy.deepcopy(made.model)
    assert clone.optimizer_factory is made.model.optimizer_factory
    assert clone.scheduler_factory is made.model.scheduler_factory
    original, copied = dict(made.model.named_parameters()), dict(clone.named_parameters())
    assert original.keys() == copied.keys() and all(
        torch.equal(original[k], copied[k]) and original[k].data_ptr() != copied[k].data_ptr() for k in original)


def test_the_summary_says_when_the_kept_checkpoint_is_the_last_epoch(workdir: Path,
                                                                      capsys: pytest.CaptureFixture) -> None:
    main(["fit", "--config", "moons.yaml", "--checkpoint.monitor", "null", *quick_args(max_epochs=2)])
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("  best checkpoint : "))
    assert "/epoch001-" in line and line.endswith(".ckpt  (the last epoch: checkpoint.monitor is null)"), line
