"""Planning a sweep without Ray: grid files checked by the CLI's parser, run ids, placement, the shipped grids."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lightning_lab import __main__ as entry
from lightning_lab.errors import ConfigError
from lightning_lab.experiments import cluster, sweep as sweep_mod
from lightning_lab.experiments import plan as plan_mod

ACTIVATION = "model.net.init_args.activation"


def test_the_shipped_grids_plan_their_runs():
    """digits_tiny: 2 x 2; cnn_ablation: 27 + 32 - 1 (the config's own combination is in both studies)."""
    assert len(plan_mod.plan_sweep("configs/digits.yaml", "configs/grids/digits_tiny.yaml")) == 4
    ablation = plan_mod.plan_sweep("configs/cifar.yaml", "configs/grids/cnn_ablation.yaml")
    assert len(ablation) == 58 and len({r.run_id for r in ablation}) == 58
    assert sum(r.studies == ["act_init_opt", "architecture"] for r in ablation) == 1


def test_every_run_has_one_folder_and_is_tested(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    [run] = plan_mod.plan_sweep("configs/digits.yaml")
    assert run.log_dir == str(tmp_path / "lightning_logs" / "digits_sweep" / run.run_id / "version_0")
    args = " ".join(run.args)
    assert "--trainer.logger.init_args.version 0" in args and "--test_after_fit true" in args


def test_dry_run_lists_the_runs_and_their_status(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert entry.run(["sweep", "--config", "configs/digits.yaml", "--grid", "configs/grids/digits_tiny.yaml",
                      "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "4 runs planned; none started yet; 4 to train" in out and out.count(" todo ") == 4
# ------------------------------------------------------------------------------ planning, without Ray
def test_a_grid_that_is_not_text_is_one_error_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.yaml").write_bytes(b"\xff\xfe grid: \x00\x81")
    assert entry.run(["sweep", "--config", "configs/digits.yaml", "--grid", "bad.yaml", "--dry-run"]) == 2
    assert "error: grid bad.yaml: cannot be read as a YAML text file" in capsys.readouterr().err


@pytest.mark.parametrize("grid_text, message", [
    ("studies:\n  - name: s\n    grid:\n      model.net.init_args.activaton: [relu, tanh]\n", "activaton"),
    ("studies:\n  - name: s\n    grid:\n      model.net.init_args.activation: [relu, sigmoid]\n", "sigmoid"),
    ("studies:\n  - name: s\n    grid:\n      model.net.init_args.kernel_size: [3, 4]\n", "odd"),
    ("studies:\n  - name: s\n    grid:\n      model.net.init_args.dropout: 0.5\n", "non-empty list"),
    ("grid:\n  trainer.logger.init_args.name: [x]\n", "set by the sweep"),
    ("studys: []\n", "unknown top-level"),
])
def test_bad_grid_fails_before_any_training(tmp_path, monkeypatch, capsys, grid_text, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.yaml").write_text(grid_text)

    def no_ray(*args, **kwargs):
        raise AssertionError("trained despite a bad grid")

    monkeypatch.setattr(sweep_mod, "_train_on_ray", no_ray)
    assert entry.run(["sweep", "--config", "configs/digits.yaml", "--grid", "bad.yaml"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and message in err[-1]
    assert not (tmp_path / "results").exists() and not (tmp_path / "lightning_logs").exists()


def test_plan_deduplicates_across_studies_ids_are_stable_and_paths_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "g.yaml").write_text(yaml.safe_dump({"studies": [
        {"name": "act", "grid": {ACTIVATION: ["relu", "tanh"]}},
        # dropout 0.25 with relu is the config itself, i.e. the 'relu' run of the first study
        {"name": "drop", "grid": {"model.net.init_args.dropout": [0.25, 0.0]}},
    ]}))
    plan = plan_mod.plan_sweep("configs/digits.yaml", "g.yaml")
    assert len(plan) == 3 and [r.studies for r in plan] == [["act", "drop"], ["act"], ["drop"]]
    assert [r.run_id for r in plan] == [r.run_id for r in plan_mod.plan_sweep("configs/digits.yaml", "g.yaml")]
    other = plan_mod.plan_sweep("configs/digits.yaml", "g.yaml", ["--trainer.max_epochs", "1"])
    assert not {r.run_id for r in plan} & {r.run_id for r in other}  # the extra overrides are part of the id
    single = plan_mod.plan_sweep("configs/digits.yaml")
    assert len(single) == 1 and single[0].run_id == plan[0].run_id
    run = plan[1]
    assert run.save_dir == str(tmp_path / "lightning_logs") and run.checkpoint_root == str(tmp_path / "checkpoints")
    config = run.args[run.args.index("--config") + 1]
    assert Path(config).is_absolute() and Path(config).is_file()
    # repeats: the first seed is the config's own (same run id), the others get their own ids
    repeated = plan_mod.plan_sweep("configs/digits.yaml", repeats=3)
    assert [r.seed for r in repeated] == [42, 43, 44] and repeated[0].run_id == single[0].run_id
    assert len({r.run_id for r in repeated}) == 3
    assert "--data.init_args.seed" in repeated[2].args and "seed=44" in repeated[2].describe


def test_extra_config_files_and_file_values_reach_the_runs_absolute(tmp_path, monkeypatch):
    """Ray starts each trial in its own folder: a relative `--config` after `--`, or a value naming a file, would
    not be found there."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "extra.yaml").write_text("trainer:\n  max_epochs: 1\n")
    (tmp_path / "more.yaml").write_text("trainer:\n  max_epochs: 2\n")
    (tmp_path / "preds.csv").write_text("")
    extra = ["--config", "extra.yaml", "--prediction_writer.out=preds.csv", "--prediction_writer.grid", "new.png"]
    [run] = plan_mod.plan_sweep("configs/digits.yaml", extra=extra)
    assert run.max_epochs == 1
    args = run.args
    assert args[args.index("--config", 2) + 1] == str(tmp_path / "extra.yaml")
    assert f"--prediction_writer.out={tmp_path / 'preds.csv'}" in args
    assert args[args.index("--prediction_writer.grid") + 1] == "new.png"  # names no file: left as written
    [later] = plan_mod.plan_sweep("configs/digits.yaml", extra=["--config=more.yaml"])
    assert f"--config={tmp_path / 'more.yaml'}" in later.args and later.max_epochs == 2
    (tmp_path / "tanh").write_text("")  # a word is a setting, not a path, even beside a file of that name
    [word] = plan_mod.plan_sweep("configs/digits.yaml", extra=["--model.net.init_args.activation", "tanh"])
    assert word.args[word.args.index("--model.net.init_args.activation") + 1] == "tanh"


@pytest.mark.parametrize("resources, asked, expected", [
    ({"CPU": 2}, (None, None, None), (1, 0, 1)),                  # CPU: one core per run, side by side
    ({"CPU": 16, "GPU": 8}, (None, None, None), (2, 1, 1)),       # one GPU per run, the CPUs shared out
    ({"CPU": 16, "GPU": 1}, (None, 0.25, None), (4, 0.25, 1)),    # four runs packed on one GPU
    ({"CPU": 16, "GPU": 8}, (None, 2, None), (4, 2, 2)),          # two GPUs: DDP over two workers
    ({"CPU": 2}, (2, None, 2), (2, 0, 2)),                        # CPU DDP
])
def test_placement_defaults(resources, asked, expected):
    place = cluster.placement(resources, *asked)
    assert (place.cpus, place.gpus, place.workers) == expected
    if place.workers > 1:  # the DDP workers hold the run's resources, less a sliver for the trial waiting on them
        assert place.trial_resources()["CPU"] + place.workers * place.worker_cpus() == pytest.approx(place.cpus)
    else:
        assert place.trial_resources() == {"CPU": place.cpus, "GPU": place.gpus}


@pytest.mark.parametrize("asked, message", [((None, 2, None), "Ray sees 0 GPU"), ((4, None, None), "Ray sees 2 CPU"),
                                            ((None, 1.5, None), "whole number")])
def test_placement_refuses_what_the_cluster_cannot_give(asked, message):
    with pytest.raises(ConfigError, match=message):
        cluster.placement({"CPU": 2, "GPU": 0 if asked[1] != 1.5 else 2}, *asked)


# ------------------------------------------------------------------------------ run ids: what the run trains
def _config_copy(folder: Path, **data_args) -> str:
    """configs/digits.yaml written to `folder`/digits.yaml (the same file name), its data arguments updated."""
    config = yaml.safe_load(Path(plan_mod.resolve_config_paths(["--config", "digits.yaml"])[1]).read_text())
    config["data"]["init_args"].update(data_args)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "digits.yaml").write_text(yaml.safe_dump(config))
    return str(folder / "digits.yaml")


def test_run_ids_follow_the_resolved_config_not_the_file_name(tmp_path, monkeypatch):
    """A resumed study skips runs whose id has an `ok` record: an edited config (or another config of the same
    name) must give other ids, an equal one the same id, from any working directory."""
    monkeypatch.chdir(tmp_path)
    [plain] = plan_mod.plan_sweep("configs/digits.yaml")
    [same] = plan_mod.plan_sweep(_config_copy(tmp_path / "same"))
    [seven] = plan_mod.plan_sweep(_config_copy(tmp_path / "seven", seed=7))
    assert same.run_id == plain.run_id and seven.run_id != plain.run_id
    assert plain.run_id.startswith("digits-") and len(plain.run_id) == len("digits-") + 8
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # other absolute paths (data_dir, logs, checkpoints): the same id
    [moved] = plan_mod.plan_sweep(str(tmp_path / "same" / "digits.yaml"))
    assert moved.run_id == plain.run_id and moved.save_dir != plain.save_dir


def test_combinations_that_resolve_to_one_config_are_one_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "g.yaml").write_text(
        "studies:\n"
        "  - name: whole\n"
        "    fixed: {model.optimizer: {init_args: {lr: 0.01}, class_path: torch.optim.Adam}}\n"
        "    grid: {model.net.init_args.activation: [relu]}\n"
        "  - name: lr\n"
        "    grid: {model.optimizer.init_args.lr: [0.01, 1e-2]}\n")  # YAML reads 1e-2 as a string
    [run] = plan_mod.plan_sweep("configs/digits.yaml", "g.yaml")
    assert run.studies == ["whole", "lr"]


def test_extras_may_not_change_what_the_grid_varies(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "g.yaml").write_text("grid:\n  model.optimizer.init_args.lr: [0.1, 0.01]\n")
    (tmp_path / "lr.yaml").write_text("model:\n  optimizer:\n    init_args: {lr: 0.5}\n")
    for extra in (["--model.optimizer.init_args.lr", "0.5"], ["--config", "lr.yaml"]):
        with pytest.raises(ConfigError, match=r"after -- change model\.optimizer\.init_args\.lr, which the grid"):
            plan_mod.plan_sweep("configs/digits.yaml", "g.yaml", extra)
    runs = plan_mod.plan_sweep("configs/digits.yaml", "g.yaml", ["--trainer.max_epochs", "1"])
    assert [r.describe for r in runs] == ["lr=0.1", "lr=0.01"] and {r.max_epochs for r in runs} == {1}


@pytest.mark.parametrize("key", ["test_after_fit", "checkpoint.root", "data.init_args.data_dir", "ckpt_path"])
def test_a_grid_may_not_vary_what_the_sweep_sets(key):
    from lightning_lab.experiments.grid import parse_grid

    with pytest.raises(ConfigError, match=f"{key} is set by the sweep itself"):
        parse_grid({"grid": {key: ["a", "b"]}})


def test_repeats_offset_each_seed_from_its_own_value(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = _config_copy(tmp_path, seed=7)
    [plain] = plan_mod.plan_sweep(config)
    repeated = plan_mod.plan_sweep(config, repeats=3)
    assert repeated[0].run_id == plain.run_id and "--seed_everything" not in repeated[0].args  # the config as is
    for repeat, run in enumerate(repeated):
        assert (run.seed, run.overrides.get("data.init_args.seed", 7)) == (42 + repeat, 7 + repeat)
    assert repeated[2].args[repeated[2].args.index("--data.init_args.seed") + 1] == "9"
    (tmp_path / "seeds.yaml").write_text("grid:\n  seed_everything: [1, 2]\n")
    assert [r.seed for r in plan_mod.plan_sweep(config, "seeds.yaml")] == [1, 2]
    with pytest.raises(ConfigError, match="varies seed_everything: --repeats sets the seeds"):
        plan_mod.plan_sweep(config, "seeds.yaml", repeats=2)


def test_a_setting_spelled_out_at_its_default_keeps_the_run_id():
    """What a run trains with decides its id: an argument written at its class's default (or one a library adds
    later, at its default) changes nothing; a value that differs does."""
    [plain] = plan_mod.plan_sweep("configs/digits.yaml")
    [spelled] = plan_mod.plan_sweep("configs/digits.yaml", extra=["--trainer.num_nodes", "1",
                                                                   "--checkpoint.verbose", "false"])
    [other] = plan_mod.plan_sweep("configs/digits.yaml", extra=["--checkpoint.verbose", "true"])
    assert spelled.run_id == plain.run_id != other.run_id
    # the hashed settings leave out every value at its class's default, so an argument a newer Lightning or torch
    # adds (present, at its default, in every resolved config) cannot change the ids of a study under way
    from lightning_lab.experiments.results import non_default_settings

    net = {"class_path": "lightning_lab.models.ParametricCNN", "init_args": {"channels": [64, 128], "dropout": 0.0}}
    config = {"trainer": {"max_epochs": 3, "num_nodes": 1, "gradient_clip_val": None},
              "checkpoint": {"monitor": "val/loss", "save_last": None}, "model": {"net": net}}
    assert list(non_default_settings(config)) == ["checkpoint.monitor", "model.net.class_path",
                                                  "model.net.init_args.channels", "trainer.max_epochs"]


def test_sweep_options_that_make_no_sense_are_refused_before_ray_starts(capsys):
    assert entry.run(["sweep", "--config", "configs/digits.yaml", "--max-concurrent", "0", "--dry-run"]) == 2
    assert "error: --max-concurrent must be at least 1" in capsys.readouterr().err
    assert entry.run(["sweep", "--config", "configs/digits.yaml", "--scheduler", "asha", "--dry-run", "--",
                      "--trainer.max_epochs", "-1"]) == 2
    assert "error: --scheduler asha needs trainer.max_epochs >= 1 in every run" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="--workers-per-run must be at least 1"):
        cluster.placement({"CPU": 2}, None, None, 0)


def test_a_grid_may_not_vary_what_ray_ddp_workers_set(tmp_path):
    (tmp_path / "grid.yaml").write_text("grid:\n  trainer.num_nodes: [1, 2]\n")
    runs = plan_mod.plan_sweep("configs/digits.yaml", str(tmp_path / "grid.yaml"))
    with pytest.raises(ConfigError, match=r"sets trainer\.num_nodes, which Ray's DDP workers set themselves"):
        sweep_mod.refuse_grid_over_ddp(runs)
    sweep_mod.refuse_grid_over_ddp(plan_mod.plan_sweep("configs/digits.yaml"))  # nothing varied: fine
