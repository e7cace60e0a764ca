"""`python -m lightning_lab baselines --config C`: the config beside the baselines it should beat.

On the config's own data module and split: scikit-learn's logistic regression and RBF SVC (on the pixels the
network sees; skipped, with the reason, where they would not fit the machine), the textbook CNN in plain
PyTorch, and the config through the lab's own CLI and Trainer; both networks with the config's epochs, batch
size and augmentation, once per seed with `--seeds`. Prints one table, and the lab's difference from each model
paired by seed with its 95% interval, and writes them to results/baselines/<dataset>.csv and .md.
"""
from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import shlex
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lightning_lab.baselines.classical import CLASSICAL, fit_classical, skip_reason
from lightning_lab.baselines.table import Row, as_text, write
from lightning_lab.baselines.textbook import (BestEpoch, NetworkResult, network_batches, textbook_cnn,
                                              train_textbook)
from lightning_lab.errors import ConfigError
from lightning_lab.experiments.stats import Difference, mean_ci
from lightning_lab.paths import RESULTS_DIR, dataset_name


def table_name(data: Any) -> str:
    """digits, or digits_28px when the network sees another size than the stored images."""
    name = dataset_name(type(data).__name__)
    stored = getattr(data, "stored_shape", None)
    shape = tuple(data.input_shape)
    if stored is not None and tuple(stored) != shape:
        name += f"_{shape[-1]}px" if shape[-2] == shape[-1] else f"_{shape[-2]}x{shape[-1]}px"
    return name


def split_arrays(data: Any, split: str) -> tuple[np.ndarray, np.ndarray]:
    """One split as flat float32 rows of what the network sees (not augmented) and its labels."""
    dataset = {"train": data.data_train, "test": data.data_test}[split]
    xs, ys = [], []
    for x, y in network_batches(data, data.loader(dataset, train=False), torch.device("cpu"), training=False):
        xs.append(x.flatten(1).numpy())
        ys.append(y.numpy())
    return np.concatenate(xs), np.concatenate(ys)


def classical_rows(data: Any) -> tuple[list[Row], dict[str, str]]:
    """The scikit-learn rows, and the models skipped with the reason."""
    n_train, n_features = len(data.data_train), math.prod(data.input_shape)
    skipped = {name: why for name in CLASSICAL if (why := skip_reason(name, n_train, n_features))}
    rows: list[Row] = []
    if len(skipped) < len(CLASSICAL):
        x_train, y_train = split_arrays(data, "train")
        x_test, y_test = split_arrays(data, "test")
        for name in CLASSICAL:
            if name not in skipped:
                result = fit_classical(name, x_train, y_train, x_test, y_test)
                rows.append(Row(name, [result.test_acc], None if result.test_loss is None else [result.test_loss],
                                result.params, [result.train_seconds]))
                print(f"{name}: test acc {result.test_acc:.4f}", flush=True)
    return rows, skipped


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lightning_lab baselines",
        usage="%(prog)s --config CONFIG [--seeds S [S ...]] [--output CSV] [config options as in fit]",
        description="Train scikit-learn's logistic regression and RBF SVC, the textbook CNN (Keras' mnist_cnn or "
                    "cifar10_cnn) and the config on the config's data and split; print and save one table. "
                    "--config (required, as in fit; configs/ is searched) names the config.",
        epilog="Every other option goes to the config as in `fit` (e.g. --trainer.max_epochs 5); "
               "python -m lightning_lab fit --help lists them.")
    parser.add_argument("--output", type=Path, default=None,
                        help=f"CSV to write (a .md is written beside it); default {RESULTS_DIR}/baselines/"
                             f"<dataset>.csv")
    parser.add_argument("--seeds", type=int, nargs="+", metavar="S",
                        help="train both networks once per seed (seed_everything: initial weights and batch order) "
                             "and report means, standard deviations and seed-by-seed comparisons; default: the "
                             "config's seed_everything, once")
    return parser


def measured_where() -> str:
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores)"
    return (f"measured {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z} on {platform.node() or 'this machine'}"
            f", {device}, torch {torch.__version__}")


def compared(lab: Row, other: Row, n_test: int) -> str:
    """The lab's test accuracy minus another model's, in test images, paired seed by seed (a model fitted once:
    its one result against each seed), with the 95% paired-t interval and verdict the study's report uses. The
    interval is over seeds on this one test split: it says how the two compare on these images."""
    def images(acc: float) -> int:
        return round(acc * n_test)

    theirs = other.test_acc if len(other.test_acc) == len(lab.test_acc) else other.test_acc[:1] * len(lab.test_acc)
    diffs = [images(a) - images(b) for a, b in zip(lab.test_acc, theirs)]
    difference = Difference(lab.model, other.model, len(diffs), *mean_ci(diffs))
    interval = "" if math.isnan(difference.half) else \
        f", 95% interval {difference.low:+.1f} to {difference.high:+.1f}"
    return (f"lab minus {other.model}: {difference.mean:+.1f} test images over {len(diffs)} seed(s){interval}: "
            f"{difference.verdict}; ahead in {sum(d > 0 for d in diffs)}, level in {diffs.count(0)}, behind in "
            f"{sum(d < 0 for d in diffs)}")


def prepared(config_args: list[str], seed: int | None) -> tuple[Any, Any]:
    """The config's CLI (model, data module, Trainer) built as `fit` builds it, with this seed_everything (None:
    the config's), and its data module prepared and set up."""
    from lightning_lab.baselines.lab import lab_cli

    cli = lab_cli(config_args if seed is None else [*config_args, "--seed_everything", str(seed)])
    data = cli.datamodule
    if len(getattr(data, "input_shape", ())) != 3:
        raise ConfigError(f"baselines compares image classifiers; {type(data).__name__} gives input_shape "
                          f"{tuple(getattr(data, 'input_shape', ()))}, not (channels, height, width)")
    data.prepare_data()
    data.setup("fit")
    data.setup("test")
    return cli, data


def train_networks(config_args: list[str], cli: Any, data: Any, seeds: list[int], monitor: str | None,
                   lab_name: str) -> tuple[Row, Row]:
    """The textbook CNN's row and the config's, each network trained once per seed (`cli` and `data` are the
    first seed's; every further seed gets a fresh model, data module and Trainer)."""
    from lightning_lab.baselines.lab import train_lab

    epochs, batch_size = cli.trainer.max_epochs, data.batch_size
    def shown(name: str, seed: int, result: NetworkResult) -> NetworkResult:
        print(f"{name}, seed {seed}: test acc {result.test_acc:.4f}", flush=True)
        return result

    def row(name: str, results: list[NetworkResult]) -> Row:
        return Row(name, [r.test_acc for r in results], [r.test_loss for r in results], results[0].params,
                   [r.train_seconds for r in results], epochs, batch_size)

    textbook_runs, lab_runs = [], []
    for i, seed in enumerate(seeds):
        if i:
            cli, data = prepared(config_args, seed)
        net = textbook_cnn(data.input_shape, data.num_classes, seed)
        textbook_runs.append(shown(net.name, seed, train_textbook(net, data, epochs, seed, monitor=monitor)))
        lab_runs.append(shown(lab_name, seed, train_lab(cli, seed)))
    return row(net.name, textbook_runs), row(lab_name, lab_runs)


def table_notes(data: Any, seeds: list[int], monitor: str | None, networks: tuple[Row, Row]) -> list[str]:
    """What the table rests on: the data and its split, the seeds, how the networks were tested."""
    sizes = f"{len(data.data_train)} train / {len(data.data_val)} val / {len(data.data_test)} test images"
    seed_note = f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {' '.join(map(str, seeds))}"
    notes = [f"data: {type(data).__name__}, network input {tuple(data.input_shape)}, {sizes}; augment "
             f"{data.augment}; {seed_note} (seed_everything: the networks' initial weights and batch order; the "
             f"split is the data module's own seed)",
             f"networks: same epochs, batch size and augmentation; each tested with the weights of the epoch "
             f"the config's checkpoint keeps ({monitor or 'the last epoch'}); train_seconds include the "
             f"per-epoch validation; test_acc, test_loss and train_seconds are means over the runs, test_acc_sd "
             f"their sample standard deviation",
             "scikit-learn: fitted once on the train split's normalised pixels; SVC has no test loss (no "
             "probabilities)"]
    if len(seeds) > 1:
        notes.append("test accuracy by seed: " + "; ".join(
            f"{row.model} {' '.join(f'{acc:.4f}' for acc in row.test_acc)}" for row in networks))
    return notes


def main(argv: list[str]) -> int:
    """Run the baselines command; returns the exit status."""
    args, config_args = build_parser().parse_known_args(argv)
    if not any(a in ("--config", "-c") or a.startswith("--config=") for a in config_args):
        raise ConfigError("baselines needs a config: python -m lightning_lab baselines --config configs/digits.yaml")
    cli, data = prepared(config_args, args.seeds[0] if args.seeds else None)
    seeds = args.seeds or [int(cli.config.get("seed_everything") or 0)]
    epochs = cli.trainer.max_epochs
    if epochs is None or epochs < 1:
        raise ConfigError(f"baselines trains both networks for trainer.max_epochs epochs; it is {epochs}")
    monitor = cli.config.checkpoint.monitor
    BestEpoch(monitor, cli.config.checkpoint.mode if monitor else None)  # a rule it cannot follow fails here
    configs = cli.config.get("config") or []
    lab_name = f"lab {Path(str(configs[-1])).name if configs else 'config'} ({type(cli.model.net).__name__})"
    name, n_test = table_name(data), len(data.data_test)

    rows, skipped = classical_rows(data)
    textbook, lab = train_networks(config_args, cli, data, seeds, monitor, lab_name)
    rows += [textbook, lab]
    comparisons = [compared(lab, row, n_test) for row in rows if row is not lab]
    notes = [*table_notes(data, seeds, monitor, (textbook, lab)), *comparisons, measured_where(),
             "command: python -m lightning_lab baselines " + shlex.join(argv)]
    print()
    print(as_text(rows, skipped))
    print("\n" + "\n".join(comparisons))
    csv_path = args.output or Path(RESULTS_DIR) / "baselines" / f"{name}.csv"
    md_path = write(rows, skipped, csv_path, f"Baselines: {name}", notes)
    print(f"\nwrote {csv_path} and {md_path}")
    return 0
