"""The images a run logged to TensorBoard (confusion matrix, prediction grid), read back from its event files."""
from __future__ import annotations

import os
from pathlib import Path


def logged_images(log_dir: str | os.PathLike) -> dict[str, bytes]:
    """{tag: encoded image (PNG)} of the newest image under each tag in a TensorBoard run folder; {} without one."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    if not Path(log_dir).is_dir():
        return {}
    accumulator = EventAccumulator(str(log_dir), size_guidance={"images": 0})
    accumulator.Reload()
    return {tag: accumulator.Images(tag)[-1].encoded_image_string for tag in accumulator.Tags().get("images", [])}
