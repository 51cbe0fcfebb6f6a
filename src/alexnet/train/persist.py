"""What a run writes to keep its work: the checkpoint (every rank's RNG included) and weights.

`save(state)` is called by every rank at the same steps: the ranks' RNG states are gathered to
rank 0, which writes RUN/checkpoint.pt atomically (`alexnet.checkpoint`). `write_weights`
writes a weights file with the metadata that `predict` and `eval` need (rank 0).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alexnet import runtime
from alexnet.checkpoint import Checkpoint, save_checkpoint
from alexnet.train.randomness import capture_rng_state
from alexnet.train.state import TrainState
from alexnet.weights.files import save as save_weights


def checkpoint_of(state: TrainState, rank_rng: list[dict[str, Any]] | None = None) -> Checkpoint:
    """The checkpoint of `state` as it is now (`rank_rng`: every rank's RNG, by rank)."""
    inputs, pos = state.inputs, state.pos
    rng = capture_rng_state()
    return Checkpoint(
        model_config=state.network.net.config,
        data_fingerprint=inputs.train_ds.fingerprint,
        config=state.cfg.to_json(),
        classes=list(inputs.train_ds.classes),
        preprocess=inputs.preprocess.to_json(),
        mean_image=inputs.mean_image,
        model=state.network.state_dict(),
        optimizer=state.optim.optimizer.state_dict(),
        schedule=state.optim.schedule.state_dict(),
        epoch=pos.epoch,
        batch=pos.batch,
        global_step=pos.global_step,
        best_error=pos.best_error,
        elapsed=pos.elapsed,
        epoch_sums=state.epoch_sums.to_plain(),
        step_window=state.window.to_plain(),
        history=state.history,
        rng=rng,
        rank_rng=rank_rng if rank_rng is not None else [rng],
        world_size=state.info.world_size,
        global_batch=state.cfg.batch_size * state.info.world_size,
    )


def save(state: TrainState) -> None:
    """Write RUN/checkpoint.pt: every rank calls it at the same step (their RNG states are
    gathered), rank 0 writes."""
    rank_rng = runtime.gather_objects(capture_rng_state()) if state.info.enabled else None
    if state.info.is_main:
        save_checkpoint(state.run.checkpoint, checkpoint_of(state, rank_rng))


def write_weights(state: TrainState, path: Path, extra: dict[str, Any]) -> None:
    """Write a weights file with the metadata that `predict`/`eval` need (rank 0)."""
    if state.info.is_main:
        inputs = state.inputs
        save_weights(
            path,
            state.network.state_dict(),
            model_config=state.network.net.config,
            classes=inputs.train_ds.classes,
            preprocess=inputs.preprocess,
            mean_image=inputs.mean_image,
            extra={"recipe": state.cfg.recipe, **extra},
        )
