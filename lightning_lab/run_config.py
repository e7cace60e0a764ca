"""What a run's resolved config says beyond the model: the settings TensorBoard logs beside the hyperparameters,
the settings a resume changes, and the schedule length a resume must keep."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from lightning_lab.checkpoint import is_checkpoint_file, read_checkpoint
from lightning_lab.errors import CheckpointError
from lightning_lab.experiments.results import flatten, non_default_settings
from lightning_lab.models.classifier import schedule_length_from_max_epochs, scheduled_t_max, scheduler_class

# The settings beside the model's and the data module's hyperparameters that change what a run trains: the
# Trainer's, the seed, early stopping and the checkpoint's choice of epoch.
RUN_SETTING_KEYS = ("trainer.", "seed_everything", "early_stopping.", "checkpoint.monitor", "checkpoint.mode")


def run_settings(config: Any) -> dict[str, Any]:
    """Those of `RUN_SETTING_KEYS` that differ from their class's default, flattened (`trainer.max_epochs`,
    `trainer.precision`, ...): TensorBoard's HPARAMS tab shows them beside the model's and the data module's
    hyperparameters (the Classifier logs all three), so runs that differ in them can be compared there."""
    plain = _as_dict(config)
    values = flatten(plain)
    return {key: values[key] for key in non_default_settings(plain) if key.startswith(RUN_SETTING_KEYS)}


def changed_settings(saved_config: Path, config: Any) -> list[str]:
    """`key (before -> now)` for each setting of `config` that differs from the run config saved at
    `saved_config` (its class defaults counting as unset; max_epochs left out: a longer resumed run is what
    resuming is for); [] when there is no saved config."""
    try:
        before = non_default_settings(yaml.safe_load(saved_config.read_text()) or {})
    except (OSError, yaml.YAMLError):
        return []
    now = non_default_settings(_as_dict(config))

    def shown(value: str | None) -> str:
        return "default" if value is None else str(json.loads(value))

    return [f"{key} ({shown(before.get(key))} -> {shown(now.get(key))})" for key in sorted(before.keys() | now.keys())
            if before.get(key) != now.get(key) and key != "trainer.max_epochs"]


def refuse_resume_with_another_schedule_length(ckpt_path: Any, model: Any, max_epochs: int | None) -> None:
    """Resuming restores the LR scheduler as it was saved, T_max included, whatever this run would build. A run
    whose scheduler would span another number of epochs (its T_max: trainer.max_epochs unless the config sets
    it) is refused: with a longer one, the extra epochs would train past the schedule's end (a cosine's learning
    rate is 0 there)."""
    factory = getattr(model, "scheduler_factory", None)
    wanted = scheduled_t_max(factory, max_epochs)
    if wanted is None or not is_checkpoint_file(ckpt_path):
        return
    states = read_checkpoint(ckpt_path).get("lr_schedulers") or []
    saved = states[0].get("T_max") if states and isinstance(states[0], dict) else None
    if saved is None or saved == wanted:
        return
    if schedule_length_from_max_epochs(factory):
        extra = f"epoch {wanted}" if wanted == saved + 1 else f"epochs {saved + 1}-{wanted}"
        happens = (f"train {extra} past the schedule's end" if wanted > saved
                   else f"stop at epoch {wanted}, before the schedule ends")
        asked, fix = f"trainer.max_epochs {wanted}", f"--trainer.max_epochs {saved}"
    else:
        happens, asked, fix = f"keep T_max {saved}", f"T_max {wanted}", f"the T_max it started with ({saved})"
    name = scheduler_class(factory).__name__
    raise CheckpointError(f"--ckpt_path {ckpt_path}: that run's {name} spans {saved} epochs (its T_max) and resumes "
                          f"as it was saved, so with {asked} it would {happens}; resume with {fix}, or train a new "
                          f"run of the length you want")


def _as_dict(config: Any) -> dict[str, Any]:
    """A parsed config (jsonargparse Namespace) or a mapping as a plain dict."""
    return config.as_dict() if hasattr(config, "as_dict") else dict(config)
