"""numpy_core vs PyTorch eager (CPU): the same 784-256-128-10 MLP trained with SGD, float32, batch 128.

Both train for the same number of steps on the same random MNIST-shaped data, with the same number of
BLAS/intra-op threads. Run: python benchmarks/numpy_vs_torch.py [--steps 300] [--threads N]
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

SIZES = [784, 256, 128, 10]


def blas_info() -> tuple[str, int]:
    """(description, threads) of the BLAS numpy uses."""
    try:
        from threadpoolctl import threadpool_info

        for info in threadpool_info():
            if info.get("user_api") == "blas":
                desc = f"{info.get('internal_api')} {info.get('version')} ({info.get('architecture')})"
                return desc, int(info["num_threads"])
    except ImportError:
        pass
    return "unknown (threadpoolctl not installed; see numpy.show_config())", os.cpu_count() or 1


def make_batches(steps: int, batch: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = 16 * batch  # cycle through 16 distinct batches
    X = rng.random((n, SIZES[0]), dtype=np.float32)
    y = rng.integers(0, SIZES[-1], n)
    return X, y


def numpy_stepper(X, y, batch: int, lr: float):
    """A function doing one training step of numpy_core (the training loop's own step) on batch i."""
    from numpy_core import MLP
    from numpy_core.optim import SGD

    net = MLP(SIZES, activation="relu", output="softmax", init="kaiming", seed=0, dtype=np.float32)
    opt = SGD(net.params, lr=lr)
    n_batches = len(X) // batch
    X, y = net.check_inputs(X), net.check_labels(y, len(X))  # checked once, as numpy_core.train does
    xs = [np.ascontiguousarray(X[i * batch:(i + 1) * batch]) for i in range(n_batches)]
    ys = [y[i * batch:(i + 1) * batch] for i in range(n_batches)]

    def step(i: int) -> float:
        loss = net.train_step_grads(xs[i % n_batches], ys[i % n_batches])
        opt.step(net.grads)
        return loss

    return step


def torch_stepper(X, y, batch: int, lr: float):
    """The same step in PyTorch eager: nn.Sequential, CrossEntropyLoss, optim.SGD."""
    import torch

    torch.manual_seed(0)
    layers = []
    for i, (a, b) in enumerate(zip(SIZES[:-1], SIZES[1:])):
        layers.append(torch.nn.Linear(a, b))
        if i < len(SIZES) - 2:
            layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    loss_fn = torch.nn.CrossEntropyLoss()
    n_batches = len(X) // batch
    xs = [torch.from_numpy(np.ascontiguousarray(X[i * batch:(i + 1) * batch])) for i in range(n_batches)]
    ys = [torch.from_numpy(y[i * batch:(i + 1) * batch]) for i in range(n_batches)]

    def step(i: int) -> float:
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(xs[i % n_batches]), ys[i % n_batches])
        loss.backward()
        opt.step()
        return loss.item()

    return step


def first_layer_product_ms(batch_size: int, repeats: int = 50) -> float:
    """Time of the MLP's largest product alone. On the 2-core EPYC VM this project is developed on, NumPy's
    OpenBLAS (Haswell kernel) ran it at ~4.3 ms until a larger float32 product had run in the process, and at
    ~1.4 ms afterwards (MKL in torch: ~1.5 ms); printing it shows which state the timed run is in."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((batch_size, SIZES[0]), dtype=np.float32)
    b = rng.standard_normal((SIZES[0], SIZES[1]), dtype=np.float32)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 1e3 * (time.perf_counter() - start) / repeats


def warm_blas(batch_size: int) -> None:
    """One larger float32 product, after which OpenBLAS runs the first-layer product fast on that VM."""
    a = np.ones((batch_size, SIZES[0]), np.float32)
    b = np.ones((SIZES[0], 2 * SIZES[1]), np.float32)
    for _ in range(3):
        a @ b


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--chunk", type=int, default=20, help="steps per alternating timed chunk")
    parser.add_argument("--threads", type=int, default=None, help="threads for both (default: numpy's BLAS)")
    parser.add_argument("--warm-blas", action="store_true",
                        help="run one larger float32 product before timing (see first_layer_product_ms)")
    args = parser.parse_args()

    import torch

    blas, np_threads = blas_info()
    if args.threads is not None:
        try:
            from threadpoolctl import threadpool_limits

            threadpool_limits(args.threads, user_api="blas")
            np_threads = args.threads
        except ImportError:
            raise SystemExit("--threads needs threadpoolctl (pip install threadpoolctl)")
    torch.set_num_threads(np_threads)
    print(f"CPU: {platform.processor() or platform.machine()}, os.cpu_count()={os.cpu_count()}, "
          f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}")
    print(f"numpy {np.__version__}, BLAS: {blas}, BLAS threads: {np_threads}")
    print(f"torch {torch.__version__}, torch.get_num_threads(): {torch.get_num_threads()}")
    print(f"model {'-'.join(map(str, SIZES))} relu, softmax cross-entropy, SGD lr={args.lr}, float32, "
          f"batch {args.batch_size}, {args.steps} timed steps each after {args.warmup} warm-up, in alternating chunks "
          f"of {args.chunk}")

    print(f"first-layer product ({args.batch_size}x{SIZES[0]})@({SIZES[0]}x{SIZES[1]}) in numpy: "
          f"{first_layer_product_ms(args.batch_size):.2f} ms")
    if args.warm_blas:
        warm_blas(args.batch_size)
        print(f"  after --warm-blas: {first_layer_product_ms(args.batch_size):.2f} ms")
    X, y = make_batches(args.steps, args.batch_size)
    steppers = {"numpy_core": numpy_stepper(X, y, args.batch_size, args.lr),
                "torch": torch_stepper(X, y, args.batch_size, args.lr)}
    for step in steppers.values():
        for i in range(args.warmup):
            step(i)
    # Alternate short chunks of steps so that both see the same machine load (CPUs may be shared).
    chunk = max(1, min(args.chunk, args.steps))
    total = {k: 0.0 for k in steppers}
    cpu = {k: 0.0 for k in steppers}
    best_chunk = {k: float("inf") for k in steppers}
    losses = {}
    done = 0
    while done < args.steps:
        n = min(chunk, args.steps - done)
        for name, step in steppers.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            for i in range(done, done + n):
                losses[name] = step(i)
            elapsed = time.perf_counter() - start
            cpu[name] += time.process_time() - start_cpu
            total[name] += elapsed
            best_chunk[name] = min(best_chunk[name], elapsed / n)
        done += n
    for name in steppers:
        print(f"{name:>10}: {args.steps / total[name]:7.1f} steps/s overall ({1e3 * total[name] / args.steps:.3f} ms/step), "
              f"{1 / best_chunk[name]:7.1f} steps/s best chunk, {1e3 * cpu[name] / args.steps:.3f} ms CPU/step; "
              f"final loss {losses[name]:.4f}")
    ratio = total["numpy_core"] / total["torch"]
    best_ratio = best_chunk["numpy_core"] / best_chunk["torch"]
    print(f"time ratio numpy_core / torch = {ratio:.2f} overall, {best_ratio:.2f} best chunk "
          f"(< 1: numpy_core faster; goal <= 1.20)")
    print(f"CPU time ratio numpy_core / torch = {cpu['numpy_core'] / cpu['torch']:.2f} (all threads; robust to "
          f"other processes sharing the cores)")
    print(f"numpy_core runs at {1 / ratio:.2f}x torch's steps/s overall ({1 / best_ratio:.2f}x best chunk)")

if __name__ == "__main__":
    main()
