"""Lightning's console lines the lab hides: advertising tips always, device notes while classifying, the
warning about passing `args` to LightningCLI where the lab does so on purpose, two weight-averaging notes
that do not apply to the lab's models, a deprecation notice meant for Lightning, and Ray Tune's advice to
resume an interrupted study with its own API."""
from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

# LightningCLI warns when given `args` while the process has a command line of its own (`sweep ...`,
# `baselines ...`, a Ray worker's): where the lab passes args, it does so on purpose.
ARGS_WARNING = "LightningCLI's args parameter is intended to run from within Python"


# Lightning's weight averaging (EMA, SWA callbacks) warns about models that override configure_model, in case it
# shards them (the Classifier's only sets the memory format and compiles), and, outside fit, that a checkpoint's
# averaging state is not restored (testing and predicting use the averaged weights it holds, as meant).
WEIGHT_AVERAGING_NOTES = (
    "You're using the WeightAveraging callback with a model that overrides the configure_model",
    "You're using the WeightAveraging callback, but loading a checkpoint outside the 'fit' stage",
)


# torch 2.14 deprecates its pytree LeafSpec class, which Lightning 2.6 still builds while it handles each training
# step's output: a notice for Lightning to act on, shown in every run (a FutureWarning, so not hidden by default).
LIBRARY_DEPRECATIONS = ("`isinstance(treespec, LeafSpec)` is deprecated",)


class HideTips(logging.Filter):
    """Drop Lightning's advertising ("💡 Tip: ... try installing litlogger/litmodels"): rank_zero_info lines that
    have no switch of their own."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip:")


class HideRayRestoreAdvice(logging.Filter):
    """Drop Ray Tune's "Experiment has been interrupted ... Resume experiment with: Tuner.restore(...)": a study
    continues by running the same sweep command again (it says so itself), not through Ray's Tuner.restore."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Experiment has been interrupted, but the most recent state was saved")


def hide_ray_restore_advice() -> None:
    """Install `HideRayRestoreAdvice` on the logger of `ray.tune.tune` (once)."""
    log = logging.getLogger("ray.tune.tune")
    if not any(isinstance(f, HideRayRestoreAdvice) for f in log.filters):
        log.addFilter(HideRayRestoreAdvice())


def hide_lightning_tips() -> None:
    """Install `HideTips` on Lightning's rank-zero logger (once)."""
    log = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, HideTips) for f in log.filters):
        log.addFilter(HideTips())


def hide_weight_averaging_notes() -> None:
    """Ignore `WEIGHT_AVERAGING_NOTES` (a process-wide warnings filter)."""
    _ignore(WEIGHT_AVERAGING_NOTES, Warning)


def hide_library_deprecations() -> None:
    """Ignore `LIBRARY_DEPRECATIONS` (a process-wide warnings filter)."""
    _ignore(LIBRARY_DEPRECATIONS, FutureWarning)


def _ignore(beginnings: tuple[str, ...], category: type[Warning]) -> None:
    for text in beginnings:
        warnings.filterwarnings("ignore", message=re.escape(text), category=category)


@contextmanager
def quiet_lightning() -> Iterator[None]:
    """Hide Lightning's "GPU available"/"Trainer will use" notes meanwhile (only warnings and errors show)."""
    logger = logging.getLogger("lightning.pytorch")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)
