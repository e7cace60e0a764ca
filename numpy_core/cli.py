"""Command line: python -m numpy_core train --dataset moons --model mlp --out out/moons."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from .data import DATASETS, load_dataset
from .layers import ACTIVATIONS, INITS
from .mnist import IDXFormatError, MNISTNotFoundError
from .network import MLP, Perceptron
from .optim import OPTIMIZERS
from .train import TrainingDivergedError, train

# Per-dataset defaults for options left unset; chosen so a plain run gives a good model.
DEFAULTS = {
    "moons": {"hidden": [16, 16], "epochs": 200, "lr": 0.01, "batch_size": 32},
    "digits": {"hidden": [64], "epochs": 40, "lr": 0.003, "batch_size": 32},
    "mnist": {"hidden": [128, 64], "epochs": 10, "lr": 0.001, "batch_size": 64},
}
SGD_LR = {"moons": 0.1, "digits": 0.1, "mnist": 0.1}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not the whole usage block
        self.exit(2, f"{self.prog}: error: {message}\n")


def _positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {text!r}") from None
        if not value > 0 or (kind is float and not np.isfinite(value)):
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value
    parse.__name__ = f"positive {kind.__name__}"
    return parse


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m numpy_core", description="Pure-NumPy neural networks.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    t = sub.add_parser("train", help="train a perceptron or an MLP and write metrics, weights and plots")

    def per_dataset(key: str) -> str:
        return "default: " + ", ".join(
            f"{name} {' '.join(map(str, value)) if isinstance(value, list) else value}"
            for name, value in ((name, DEFAULTS[name][key]) for name in DATASETS))

    t.add_argument("--dataset", choices=DATASETS, default="moons", help="default: moons")
    t.add_argument("--model", choices=("perceptron", "mlp"), default="mlp",
                   help="perceptron: no hidden layer, sigmoid output (binary data sets only); default: mlp")
    t.add_argument("--hidden", type=_positive(int), nargs="+", help=f"hidden layer sizes; {per_dataset('hidden')}")
    t.add_argument("--activation", choices=tuple(ACTIVATIONS), default="relu", help="default: relu")
    t.add_argument("--init", choices=INITS, default=None,
                   help="default: kaiming for relu and leaky_relu, xavier otherwise")
    t.add_argument("--epochs", type=_positive(int), help=per_dataset("epochs"))
    t.add_argument("--lr", type=_positive(float),
                   help=f"with adam, {per_dataset('lr')}; with sgd, default: "
                        + ", ".join(f"{name} {SGD_LR[name]}" for name in DATASETS))
    t.add_argument("--batch-size", type=_positive(int), help=per_dataset("batch_size"))
    t.add_argument("--optimizer", choices=OPTIMIZERS, default="adam", help="default: adam")
    t.add_argument("--momentum", type=_fraction, default=0.9, help="SGD only; default: 0.9")
    t.add_argument("--dtype", choices=("float32", "float64"), default="float32", help="default: float32")
    t.add_argument("--seed", type=int, default=0, help="default: 0")
    t.add_argument("--data-dir", default="data", help="MNIST IDX files, flat or in DIR/MNIST/raw; default: data")
    t.add_argument("--noise", type=_non_negative, default=0.2, help="moons only; default: 0.2")
    t.add_argument("--n-samples", type=_positive(int), default=1000, help="moons only; default: 1000")
    t.add_argument("--out", default=None, help="output directory; default: out/<dataset>_<model>")
    return parser


def resolve_args(args: argparse.Namespace) -> argparse.Namespace:
    """Fill options left unset with the per-dataset defaults."""
    defaults = DEFAULTS[args.dataset]
    if args.hidden is None:
        args.hidden = [] if args.model == "perceptron" else defaults["hidden"]
    if args.epochs is None:
        args.epochs = defaults["epochs"]
    if args.batch_size is None:
        args.batch_size = defaults["batch_size"]
    if args.lr is None:
        args.lr = defaults["lr"] if args.optimizer == "adam" else SGD_LR[args.dataset]
    if args.init is None:
        args.init = "kaiming" if args.activation in ("relu", "leaky_relu") else "xavier"
    if args.out is None:
        args.out = f"out/{args.dataset}_{args.model}"
    return args


def _duration(seconds: float) -> str:
    """`12 ms` below a second (a small dataset's epoch), `1.23 s` from there."""
    return f"{seconds * 1000:.0f} ms" if seconds < 0.9995 else f"{seconds:.2f} s"


def run_train(args: argparse.Namespace) -> int:
    args = resolve_args(args)
    dtype = np.dtype(args.dtype)
    data = load_dataset(args.dataset, seed=args.seed, noise=args.noise, n_samples=args.n_samples,
                        data_dir=args.data_dir, dtype=dtype)
    if args.model == "perceptron":
        if data.n_classes != 2:
            print(f"error: --model perceptron is a binary classifier (one sigmoid output) and {args.dataset} has "
                  f"{data.n_classes} classes; use --model mlp (--hidden can be omitted)", file=sys.stderr)
            return 2
        net: MLP = Perceptron(data.n_features, seed=args.seed, init=args.init, dtype=dtype)
    else:
        output = "sigmoid" if data.n_classes == 2 else "softmax"
        sizes = [data.n_features, *args.hidden, 1 if output == "sigmoid" else data.n_classes]
        net = MLP(sizes, activation=args.activation, output=output, init=args.init, seed=args.seed, dtype=dtype)
    print(f"{args.dataset}: {len(data.X_train)} train / {len(data.X_test)} test, {data.n_features} features, "
          f"{data.n_classes} classes; model {net}")
    print(f"{args.optimizer} lr={args.lr} batch={args.batch_size} epochs={args.epochs} dtype={args.dtype}")
    width = len(str(args.epochs))

    def log(epoch: int, m: dict) -> None:
        print(f"epoch {epoch:{width}d}/{args.epochs}  train_loss {m['train_loss']:.4f}  "
              f"train_acc {m['train_accuracy']:.4f}  test_acc {m['test_accuracy']:.4f}  "
              f"({_duration(m['epoch_seconds'])})", flush=True)

    start = time.perf_counter()
    history = train(net, data.X_train, data.y_train, epochs=args.epochs, batch_size=args.batch_size,
                    optimizer=args.optimizer, lr=args.lr, momentum=args.momentum, seed=args.seed,
                    X_test=data.X_test, y_test=data.y_test, on_epoch=log)
    seconds = time.perf_counter() - start
    test_loss, test_acc = history["test_loss"][-1], history["test_accuracy"][-1]
    print(f"test_loss {test_loss:.4f}  test_accuracy {test_acc:.4f}  ({_duration(seconds)})")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    metrics = {
        "train_loss": history["train_loss"], "train_accuracy": history["train_accuracy"],
        "test_loss_per_epoch": history["test_loss"], "test_accuracy_per_epoch": history["test_accuracy"],
        "test_loss": test_loss, "test_accuracy": test_acc, "train_seconds": seconds,
        "model": net.config, "args": {k: v for k, v in vars(args).items() if k != "command"},
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    net.save(out / "weights.npz")
    written = ["metrics.json", "weights.npz"]
    from .plots import plot_decision_boundary, plot_history

    plot_history(history, out / "training_curves.png")
    written.append("training_curves.png")
    if data.n_features == 2:
        X_all = np.concatenate([data.X_train, data.X_test])
        y_all = np.concatenate([data.y_train, data.y_test])
        plot_decision_boundary(net, X_all, y_all, out / "decision_boundary.png",
                               title=f"{args.model} on {args.dataset} (test accuracy {test_acc:.3f})")
        written.append("decision_boundary.png")
    print(f"wrote {', '.join(str(out / w) for w in written)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run_train(args)
    except (MNISTNotFoundError, IDXFormatError, ValueError) as exc:  # input it can check: exit 2, as argparse
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except TrainingDivergedError as exc:  # the input was fine; the run failed
        print(f"error: {exc}", file=sys.stderr)
        return 1
