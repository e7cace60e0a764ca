"""The lab's Lightning callbacks and checkpoint IO: checkpoints beside their TensorBoard run, atomic files,
last.ckpt every epoch, best_weights.pt, and no log folder left by a run refused before its first step."""
from lightning_lab.atomic import PARTIAL_SUFFIX, partial_path
from lightning_lab.callbacks.atomic_io import AtomicCheckpointIO, atomic_save
from lightning_lab.callbacks.checkpoints import (BEST_WEIGHTS_NAME, CHECKPOINT_ROOT, ExperimentCheckpoint,
                                                 LabCheckpoint, LastCheckpoint, experiment_dir, flush_loggers,
                                                 last_checkpoint_path, net_state_dict)
from lightning_lab.callbacks.cleanup import DiscardRefusedRun
from lightning_lab.callbacks.progress import HostMetricsProgressBar

__all__ = ["AtomicCheckpointIO", "BEST_WEIGHTS_NAME", "CHECKPOINT_ROOT", "DiscardRefusedRun", "ExperimentCheckpoint",
           "HostMetricsProgressBar", "LabCheckpoint", "LastCheckpoint", "PARTIAL_SUFFIX", "atomic_save", "experiment_dir", "flush_loggers",
           "last_checkpoint_path", "net_state_dict", "partial_path"]
