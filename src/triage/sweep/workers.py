"""A sweep's workers: ``sweep.n_jobs`` of them share the study through its storage, each running
one trial at a time until the study has ``sweep.n_trials`` finished ones. One runs in this
process; more are started by submitit, as local processes (``sweep.launcher=local``) or SLURM
jobs (``sweep.launcher=slurm``, with a storage URL every node reaches)."""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna

from triage.config import SweepConfig, SweepPrunerConfig, load_config, to_container
from triage.errors import ConfigError
from triage.sweep.space import parse_search_space
from triage.sweep.study import FINISHED, PARENT_ATTR, count, storage
from triage.sweep.trial import run_trial, trial_base

log = logging.getLogger(__name__)

LAUNCHERS = ("local", "slurm")
PRUNERS = ("median", "hyperband", "none")


def check(scfg: SweepConfig) -> None:
    """Fail before the first trial on a launcher, worker count or storage that cannot work."""
    if scfg.launcher not in LAUNCHERS:
        raise ConfigError(f"sweep.launcher={scfg.launcher!r}: use one of {LAUNCHERS}")
    if scfg.n_jobs < 1:
        raise ConfigError(f"sweep.n_jobs={scfg.n_jobs}: use 1 or more workers")
    if scfg.launcher == "slurm" and scfg.storage.startswith("sqlite"):
        raise ConfigError(
            "sweep.launcher=slurm needs a database every node reaches, e.g. "
            "sweep.storage=postgresql://user:password@host/optuna (an SQLite file on a shared "
            "file system breaks under concurrent writers)"
        )


def pruner(pcfg: SweepPrunerConfig) -> optuna.pruners.BasePruner:
    if pcfg.name == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=pcfg.n_startup_trials, n_warmup_steps=pcfg.n_warmup_steps
        )
    if pcfg.name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=max(1, pcfg.n_warmup_steps))
    if pcfg.name == "none":
        return optuna.pruners.NopPruner()
    raise ConfigError(f"sweep.pruner.name={pcfg.name!r}: use one of {PRUNERS}")


@contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """SIGTERM (a cancelled or pre-empted job) stops the current trial like Ctrl-C does, so it
    is recorded as failed and queued again on resume."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def work(overrides: list[str], root: str, worker: int = 0, threads: int | None = None) -> int:
    """One worker: runs trials of the study until it has ``sweep.n_trials`` finished ones.

    Args:
        overrides: the sweep command's overrides.
        root: the project folder.
        worker: this worker's number (seeds its sampler apart from the others').
        threads: CPU threads for torch (local workers share the machine's cores).

    Returns:
        How many trials this worker ran.
    """
    if not logging.getLogger().handlers:  # a submitit worker process: log as the command does
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S"
        )
    cfg = load_config(overrides, Path(root))
    scfg = cfg.sweep
    if threads:
        import torch

        torch.set_num_threads(threads)
    base = trial_base(overrides, scfg, parse_search_space(list(scfg.params)))
    study = optuna.load_study(study_name=scfg.study_name, storage=storage(scfg))
    seed = scfg.sampler.seed + len(study.get_trials(deepcopy=False)) + 1000 * worker
    study.sampler = optuna.samplers.TPESampler(
        seed=seed, n_startup_trials=scfg.sampler.n_startup_trials
    )
    study.pruner = pruner(scfg.pruner)
    parent = study.user_attrs.get(PARENT_ATTR)
    ran = 0
    with sigterm_interrupts():
        while count(study, FINISHED) < scfg.n_trials:
            study.optimize(lambda trial: run_trial(trial, base, cfg, parent), n_trials=1)
            ran += 1
    return ran


def launch(scfg: SweepConfig, overrides: list[str], root: Path, study: optuna.Study) -> None:
    """Run the workers: in this process (one local worker) or through submitit, waiting for
    them; Ctrl-C cancels them."""
    if scfg.launcher == "local" and scfg.n_jobs == 1:
        work(overrides, str(root))
        return
    import submitit

    folder = Path(scfg.out_dir) / "workers"
    threads = None
    if scfg.launcher == "local":
        executor = submitit.LocalExecutor(folder=folder)
        executor.update_parameters(timeout_min=7 * 24 * 60)  # its default is 2 minutes
        threads = max(1, (os.cpu_count() or 1) // scfg.n_jobs)
    else:
        executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
        executor.update_parameters(name=f"sweep-{scfg.study_name}", **to_container(scfg.slurm))
    jobs = [executor.submit(work, overrides, str(root), i, threads) for i in range(scfg.n_jobs)]
    log.info(
        "%d %s workers: %s (logs in %s)",
        len(jobs),
        scfg.launcher,
        ", ".join(j.job_id for j in jobs),
        folder,
    )
    try:
        seen = -1
        while not all(job.done() for job in jobs):
            done = count(study, FINISHED)
            if done != seen:
                log.info("%d of %d trials finished", done, scfg.n_trials)
                seen = done
            time.sleep(5)
    except KeyboardInterrupt:
        for job in jobs:
            job.cancel(check=False)
        raise
    for job in jobs:
        if job.exception() is not None:
            raise RuntimeError(
                f"sweep worker {job.job_id} failed: {job.exception()}\nits log: "
                f"{job.paths.stderr}; fix the cause and run the same command to resume"
            )
