"""One training run, from a config to ``best.pt``: the run directory (locked), the data, the
checks of ``--resume``, and the signal handlers that let :class:`~seq2seq.train.loop.Trainer`
stop cleanly.

SIGINT and SIGTERM end the run with :class:`~seq2seq.train.interrupt.Interrupted` once ``last.pt``
holds a whole update; the command line exits with 130 or 143 and says how to resume. Under
``torchrun`` every rank handles the signals: the ranks agree at each update to stop (a launcher
forwards SIGTERM to all of them; Ctrl-C reaches them all), rank 0 saves and every rank exits.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from seq2seq.checkpoint import read_checkpoint
from seq2seq.config import RunConfig
from seq2seq.data.prepare import RunData, prepare_data
from seq2seq.runtime import check_precision, resolve_precision, set_threads
from seq2seq.train.distributed import World, close_world, init_world
from seq2seq.train.interrupt import Interrupts
from seq2seq.train.loop import Trainer
from seq2seq.train.run_dir import check_resumable, check_same_data, data_fingerprint, open_run_dir, write_config

log = logging.getLogger(__name__)


def train(
    config: RunConfig,
    run_dir: str | Path,
    resume: bool = False,
    overwrite: bool = False,
    allow_data_change: bool = False,
) -> Path:
    """Train a model as ``config`` says, in ``run_dir``; returns the path of ``best.pt``.
    Under torchrun, every rank calls this; rank 0 alone locks and writes ``run_dir``.
    SIGINT and SIGTERM raise :class:`Interrupted` once ``last.pt`` is saved (its
    ``saved_step``); ``allow_data_change``: resume on training data other than the run's."""
    run_dir = Path(run_dir)
    tc = config.training
    with Interrupts() as interrupts:
        world, device = init_world(tc.device)
        lock, finished = None, False
        try:
            if not world.is_main:  # one voice in the log
                logging.getLogger("seq2seq").setLevel(logging.WARNING)
            if world.is_main:
                lock = open_run_dir(run_dir, resume, overwrite)
            world.barrier()
            resumed = read_checkpoint(run_dir / "last.pt") if resume else None
            if resumed is not None:
                check_resumable(resumed.config, config, run_dir)
            precision = resolve_precision(tc.precision, device)
            check_precision(precision, device, "training.precision")
            # Ranks on one machine share its cores.
            threads = set_threads(tc.threads or max(1, len(os.sched_getaffinity(0)) // world.local_size))
            torch.manual_seed(tc.seed + world.rank)  # the same weights come from rank 0 (DDP); own dropout masks
            log.info("device %s, precision %s, %d threads, %d process(es)", device, precision, threads, world.size)
            data = _prepare(config, run_dir, world)
            fingerprint = data_fingerprint(data.train)
            if resumed is not None:
                check_same_data((resumed.train_state or {}).get("data"), fingerprint, run_dir, allow_data_change)
            trainer = Trainer(config, run_dir, data, device, world, interrupts)
            trainer.data_fingerprint = fingerprint
            try:
                if resumed is not None:
                    trainer.restore(resumed, run_dir / "last.pt")
                    if world.rank:  # last.pt holds rank 0's RNG; the other ranks need dropout masks of their own
                        torch.manual_seed(tc.seed + world.rank + 1_000_003 * trainer.progress.step)
                n_params = sum(p.numel() for p in trainer.model.parameters())
                log.info("model: %s parameters; %d training pairs", f"{n_params:,}", len(data.train))
                trainer.run()
            finally:  # whatever ends the run (an error, a signal), the files are closed
                trainer.close()
            finished = True
        finally:
            close_world(world, finished)
            if lock is not None:
                lock.release()
    return run_dir / "best.pt"


def _prepare(config: RunConfig, run_dir: Path, world: World) -> RunData:
    """Write the config and read the data; SentencePiece is trained once, by rank 0, and the
    other ranks load its models."""
    if world.is_main:
        write_config(config, run_dir / "config.yaml")
        data = prepare_data(config.data, run_dir, seed=config.training.seed)
    world.barrier()
    if not world.is_main:
        data = prepare_data(config.data, run_dir, seed=config.training.seed)
    return data
