"""Every Lightning callback of the lab (and the atomic checkpoint IO plugin): checkpoints beside their TensorBoard
run, last.ckpt every epoch, best_weights.pt, atomic files, no log folder left by a run refused before its first
step, the run record (run.json), the prediction writer and staged fine-tuning."""
from lightning_lab.callbacks.atomic_io import AtomicCheckpointIO, atomic_save
from lightning_lab.callbacks.checkpoints import (ExperimentCheckpoint, LabCheckpoint, LastCheckpoint, experiment_dir,
                                                 flush_loggers, last_checkpoint_path, net_state_dict)
from lightning_lab.callbacks.cleanup import DiscardRefusedRun
from lightning_lab.callbacks.finetuning import StagedFinetuning, refuse_finetuning_that_breaks
from lightning_lab.callbacks.prediction_writer import PredictionWriter
from lightning_lab.callbacks.run_record import RunRecord

__all__ = ["AtomicCheckpointIO", "DiscardRefusedRun", "ExperimentCheckpoint", "LabCheckpoint", "LastCheckpoint",
           "PredictionWriter", "RunRecord", "StagedFinetuning", "atomic_save", "experiment_dir",
           "flush_loggers", "last_checkpoint_path", "net_state_dict", "refuse_finetuning_that_breaks"]
