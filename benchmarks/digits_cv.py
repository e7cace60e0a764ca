"""k-fold cross-validation of lab configs against the RBF SVC on scikit-learn's digits, test split untouched.

The config's own split (its seed, val_split, test_split) sets aside its test images; the rest (train + val) is cut
into k stratified folds. For each fold the held-out fold plays the test split and the other folds are split into
train and val exactly as the data module splits its non-test images (same val share, same seed), so each
candidate runs its whole procedure, checkpoint choice and early stopping included, through the lab's own CLI and
Trainer (``lightning_lab.baselines.lab``). The SVC (scikit-learn defaults) is fitted on the same train part's
normalised pixels, as the baselines command fits it, and the textbook CNN (Keras' mnist_cnn) is trained on
the same fold with the config's epochs, batch size and checkpoint rule, as the baselines command trains it.
Prints the accuracy per fold and mean +- sd per candidate, and each one's paired difference from the SVC and
the textbook CNN.

Run from the repository root (each candidate is a name and the overrides it adds to the config):

    python benchmarks/digits_cv.py --config configs/digits.yaml \\
        --candidate shipped "" \\
        --candidate augment "--data.init_args.augment true"

``--repeats R`` repeats the k folds on R shuffles (R x k runs per candidate).
Options after ``--`` go to every candidate (e.g. ``-- --trainer.max_epochs 5``). Set OMP_NUM_THREADS to keep it
off a shared machine's other cores. Checkpoints and logs go to a temporary folder.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import shlex
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Subset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lightning_lab.baselines import split_arrays  # noqa: E402
from lightning_lab.baselines.classical import fit_classical  # noqa: E402
from lightning_lab.baselines.lab import lab_cli, train_lab  # noqa: E402
from lightning_lab.baselines.textbook import textbook_cnn, train_textbook  # noqa: E402
from lightning_lab.data.base import split_indices  # noqa: E402

QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def folds(labels: np.ndarray, non_test: np.ndarray, k: int, repeats: int, seed: int
          ) -> list[tuple[np.ndarray, np.ndarray]]:
    """(rest, held-out) index arrays into the whole dataset: k stratified folds of `non_test`, `repeats` times
    with a new shuffle each time."""
    from sklearn.model_selection import RepeatedStratifiedKFold

    cut = RepeatedStratifiedKFold(n_splits=k, n_repeats=repeats, random_state=seed)
    return [(non_test[rest], non_test[held]) for rest, held in cut.split(non_test, labels[non_test])]


def use_fold(data, rest: np.ndarray, held: np.ndarray) -> None:
    """Point a set-up data module's splits at one fold: train/val from `rest` as the module splits them, test =
    `held`. Its setup() then keeps them (it builds the splits only once)."""
    full = data.data_train.dataset
    labels = full.tensors[1].numpy()
    train, val, _ = split_indices(len(rest), data.seed, data.val_split, None, stratify=labels[rest])
    data.data_train = Subset(full, rest[train].tolist())
    data.data_val = Subset(full, rest[val].tolist())
    data.data_test = Subset(full, held.tolist())


def run_fold(config_args: list[str], fold: tuple[np.ndarray, np.ndarray] | None,
             references: bool) -> dict[str, float]:
    """Train one candidate on one fold (None: build only, to read the split); its test acc and, with
    `references`, the SVC's and the textbook CNN's."""
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cli = lab_cli(config_args)
        data = cli.datamodule
        data.setup("fit")
        if fold is None:
            return {"labels": data.data_train.dataset.tensors[1].numpy(),
                    "non_test": np.sort(np.concatenate([data.train_indices, data.val_indices])),
                    "seed": int(cli.config.get("seed_everything") or 0)}
        use_fold(data, *fold)
        result: dict[str, float] = {}
        seed = int(cli.config.get("seed_everything") or 0)
        if references:
            train, test = split_arrays(data, "train"), split_arrays(data, "test")
            result["svc"] = fit_classical("SVC(rbf)", *train, *test).test_acc
            textbook = textbook_cnn(data.input_shape, data.num_classes, seed)
            result["textbook"] = train_textbook(textbook, data, cli.trainer.max_epochs, seed,
                                                monitor=cli.config.checkpoint.monitor).test_acc
        start = time.perf_counter()
        result["lab"] = train_lab(cli, seed).test_acc
        result["seconds"] = time.perf_counter() - start
        result["best_epoch"] = int(cli.trainer.checkpoint_callback.best_model_path.split("epoch")[-1][:3]) \
            if cli.trainer.checkpoint_callback.best_model_path else -1
        result["epochs_run"] = cli.trainer.current_epoch
    return result


def main(argv: list[str]) -> None:
    own, _, common = (argv[:argv.index("--")], None, argv[argv.index("--") + 1:]) if "--" in argv else (argv, None, [])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--candidate", nargs=2, action="append", metavar=("NAME", "OVERRIDES"), required=True)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=1, help="repeat the k folds on new shuffles")
    args = parser.parse_args(own)
    config = str(Path(args.config).resolve())
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))
    print(f"config {args.config}, {args.repeats} x {args.folds}-fold CV of the non-test images; extra options: "
          f"{shlex.join(common)}; torch threads {torch.get_num_threads()}; load average {os.getloadavg()[0]:.1f}",
          flush=True)
    scores: dict[str, list[float]] = {"SVC(rbf)": [], "textbook": []}
    with tempfile.TemporaryDirectory() as folder:
        os.chdir(folder)  # checkpoints, logs and results of the runs land here and are removed with it
        base = ["--config", config, *QUIET, *common]
        split = run_fold(base, None, references=False)
        cuts = folds(split["labels"], split["non_test"], args.folds, args.repeats, split["seed"])
        print(f"{len(split['non_test'])} non-test images in {args.folds} folds of ~{len(cuts[0][1])}", flush=True)
        for c, (name, overrides) in enumerate(args.candidate):
            scores[name] = []
            for f, fold in enumerate(cuts):
                result = run_fold([*base, *shlex.split(overrides)], fold, references=c == 0)
                if c == 0:
                    scores["SVC(rbf)"].append(result["svc"])
                    scores["textbook"].append(result["textbook"])
                scores[name].append(result["lab"])
                print(f"{name:>16} fold {f}: acc {result['lab']:.4f} (best epoch {result['best_epoch']}, "
                      f"{result['epochs_run']} run, {result['seconds']:.0f} s)"
                      + (f"  SVC {result['svc']:.4f}  textbook {result['textbook']:.4f}" if "svc" in result
                         else ""), flush=True)

    def minus(values: list[float], reference: str) -> str:
        diff = [v - r for v, r in zip(values, scores[reference])]
        return f"{statistics.mean(diff):+.4f} +- {statistics.stdev(diff):.4f}"

    print(f"\n{'candidate':>16}  mean acc  sd      minus SVC (paired)  minus textbook (paired)  runs")
    for name, values in scores.items():
        against_svc = "" if name == "SVC(rbf)" else minus(values, "SVC(rbf)")
        against_textbook = "" if name in ("SVC(rbf)", "textbook") else minus(values, "textbook")
        print(f"{name:>16}  {statistics.mean(values):.4f}  {statistics.stdev(values):.4f}  {against_svc:>18}  "
              f"{against_textbook:>23}  {len(values)}")


if __name__ == "__main__":
    main(sys.argv[1:])
