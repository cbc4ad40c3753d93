"""Meta-training: the outer loop θ ← opt(θ, meta-gradient) over batches of tasks (seed 000 eq. 2.3).

The trainer builds everything from a :class:`TrainConfig`, writes a run directory
(:mod:`innerloop.engine.rundir`), shows a progress bar with the live meta-loss, validates on a
fixed held-out batch every ``eval_every`` iterations, and checkpoints atomically every
``checkpoint_every``. A non-finite loss, gradient or parameter stops the run with
:class:`NonFiniteError` and leaves the last good checkpoint in place. ``Trainer.resume`` restores
parameters, optimizer state, the task stream and the random state of the algorithm and the
backend (shot noise), so the resumed run ends exactly where an uninterrupted one would.
Validation and the final plots draw their random numbers (ES directions, annealing moves, shots)
from a fixed held-out seed and leave the training draws untouched: training does not depend on
``eval_every``, and the validation that ends a run which is later extended does not shift the
extension's draws.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from innerloop.engine import build
from innerloop.engine.config import TrainConfig
from innerloop.engine.errors import ConfigError, NonFiniteError
from innerloop.engine.params import Params, all_finite
from innerloop.engine.progress import Progress
from innerloop.engine.rundir import RunDirectory
from innerloop.engine.stats import summarize
from innerloop.engine.tasks import derive_seed, generator_for


@dataclass
class TrainResult:
    """Final meta-parameters, the run directory, the last training and validation losses."""

    params: Params
    run_dir: Path
    iterations: int
    final_loss: float
    val_loss: float | None


class Trainer:
    """Meta-trains ``config.algo`` on ``config.task`` with ``config.backend`` into ``run_dir``."""

    def __init__(self, config: TrainConfig, run_dir: str | Path, *, progress: bool = True, _resume: bool = False):
        self.config = config.validate()
        self.run_dir = RunDirectory(run_dir)
        self.progress = progress
        self._resume = _resume
        self.family = build.family(config)
        self.model = build.model(config, self.family)
        self.backend = build.backend(config)
        self.algorithm = build.algorithm(config, self.model, self.backend)

    @classmethod
    def resume(cls, run_dir: str | Path, iters: int | None = None, *, progress: bool = True) -> Trainer:
        """Continue the run in ``run_dir`` (optionally to a new total of ``iters`` iterations)."""
        config = RunDirectory(run_dir).read_config()
        if iters is not None:
            config.iters = iters
        return cls(config, run_dir, progress=progress, _resume=True)

    # -- the loop -----------------------------------------------------------------------------
    def run(self, after_iteration: Callable[[int], None] | None = None) -> TrainResult:
        """Train to ``config.iters``; ``after_iteration(i)`` is called after each step (hooks, tests)."""
        cfg, run = self.config, self.run_dir
        params, optimizer, stream, start = self._initial_state()
        val_batch = self.family.stream("meta-val", cfg.seed).next(cfg.eval_tasks)
        pending: list[dict] = []
        warned: set[str] = set()
        last_checkpoint, loss, val_loss = start, math.nan, None
        bar = Progress(cfg.iters, f"{cfg.algo} · {cfg.task} · {cfg.backend}", self.progress, initial=start)
        t0 = time.perf_counter()
        try:
            for it in range(start + 1, cfg.iters + 1):
                result = self.algorithm.compute(params, stream.next(cfg.meta_batch))
                loss = float(result.task_losses.mean())
                if not math.isfinite(loss) or not all_finite(result.grad):
                    self._non_finite(it, "meta-loss or meta-gradient", last_checkpoint)
                for name, p in params.items():
                    p.grad = result.grad[name]
                optimizer.step()
                if not all_finite(params):
                    self._non_finite(it, "meta-parameters after the outer step", last_checkpoint)
                for message in result.warnings:
                    _warn_once(warned, message, it, message)
                row = {"iter": it, "loss": loss, "time": time.perf_counter() - t0, **result.diagnostics}
                if it % cfg.eval_every == 0 or it == cfg.iters:
                    with self._held_out_draws():
                        stats = summarize(self.algorithm.evaluate(params, val_batch))
                    val_loss = row["val_loss"] = stats["mean"]
                    row["val_ci95"] = stats["ci95"]
                    if stats.get("non_finite"):
                        _warn_once(warned, "validation diverged", it, (
                            f"adaptation diverged on {stats['non_finite']} of {stats['n']} validation tasks "
                            "(non-finite query loss), so val_loss is NaN; training goes on, and a smaller inner "
                            "step size or fewer inner steps keep adaptation finite"))
                pending.append(row)
                if it % cfg.checkpoint_every == 0 or it == cfg.iters:
                    run.append_metrics(pending)
                    pending = []
                    run.save_checkpoint(self._state(it, params, optimizer, stream))
                    last_checkpoint = it
                bar.update(loss=f"{loss:.4f}", val=f"{val_loss:.4f}" if val_loss is not None else "-")
                if after_iteration is not None:
                    after_iteration(it)
        finally:
            bar.close()
            run.append_metrics(pending)  # rows past the checkpoint help diagnose a stop; resume drops them
        with self._held_out_draws():
            self._plots(params)
        return TrainResult(params, run.path, cfg.iters, loss, val_loss)

    # -- helpers ------------------------------------------------------------------------------
    def _initial_state(self):
        cfg, run, backend = self.config, self.run_dir, self.backend
        stream = self.family.stream("meta-train", cfg.seed)
        if self._resume:
            state = run.load_checkpoint()
            start = int(state["iteration"])
            if cfg.iters < start:
                raise ConfigError(
                    f"the run is already at iteration {start}, beyond --iters {cfg.iters}",
                    f"pass --iters greater than {start} to train further",
                )
            params = {k: v.to(backend.device, backend.dtype) for k, v in state["params"].items()}
            self.algorithm.check_params(params)
            optimizer = self._optimizer(params)
            optimizer.load_state_dict(state["optimizer"])
            stream.load_state(state["stream_state"])
            self.algorithm.generator.set_state(state["algorithm_rng"])
            if state.get("backend_rng"):  # absent from checkpoints written before shot noise was kept
                self.backend.set_random_state(state["backend_rng"])
            run.truncate_metrics(start)
        else:
            run.create(cfg)
            params = self.algorithm.init_params(generator_for(cfg.seed, "init"), backend.dtype, backend.device)
            self.algorithm.seed(derive_seed(cfg.seed, "algorithm"))
            optimizer = self._optimizer(params)
            start = 0
        return params, optimizer, stream, start

    @contextmanager
    def _held_out_draws(self) -> Iterator[None]:
        """The algorithm's generator and the backend's draws reseeded from the run's held-out seeds
        (the same draws at every validation), and their training states restored afterwards."""
        generator, backend = self.algorithm.generator, self.backend
        training_state = generator.get_state(), backend.random_state()
        generator.manual_seed(derive_seed(self.config.seed, "algorithm/held-out"))
        backend.reseed(derive_seed(self.config.seed, "backend/held-out"))
        try:
            yield
        finally:
            generator.set_state(training_state[0])
            backend.set_random_state(training_state[1])

    def _optimizer(self, params: Params) -> torch.optim.Optimizer:
        cls = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}[self.config.optimizer]
        return cls(list(params.values()), lr=self.config.outer_lr)

    def _state(self, iteration: int, params: Params, optimizer, stream) -> dict:
        return {
            "iteration": iteration,
            "params": {k: v.detach().cpu() for k, v in params.items()},
            "optimizer": optimizer.state_dict(),
            "stream_state": stream.state(),
            "algorithm_rng": self.algorithm.generator.get_state(),
            "backend_rng": self.backend.random_state(),
            "config": self.config.to_dict(),
        }

    def _non_finite(self, iteration: int, what: str, last_checkpoint: int) -> None:
        cfg = self.config
        kept = (f"the last good checkpoint (iteration {last_checkpoint}) is kept in {self.run_dir.path}"
                if last_checkpoint > 0 else "no checkpoint had been written yet")
        inner = f"--inner-lr (now {self.algorithm.inner_lr}) or " if self.algorithm.lens == "gradient" else ""
        raise NonFiniteError(
            f"non-finite {what} at iteration {iteration}; training stopped and {kept}",
            f"lower {inner}--outer-lr (now {cfg.outer_lr}) and start again",
        )

    def _plots(self, params: Params) -> None:
        from innerloop.engine import amortized_plots, plots

        run = self.run_dir
        plots.training_curve(run.read_metrics(), run.file("training_curve.png"), title=self._title())
        draw = plots.adaptation if self.algorithm.lens == "gradient" else amortized_plots.adaptation
        draw(self.algorithm, self.family, params, run.file("adaptation.png"), seed=self.config.seed,
             title=self._title())

    def _title(self) -> str:
        c = self.config
        inner = f"α={self.algorithm.inner_lr}, " if self.algorithm.lens == "gradient" else ""
        return f"{c.algo} on {c.task} ({c.backend}, {inner}β={c.outer_lr}, B={c.meta_batch})"


def _warn_once(warned: set[str], key: str, iteration: int, message: str) -> None:
    """Print ``message`` to stderr the first time ``key`` comes up in a run."""
    if key not in warned:
        warned.add(key)
        print(f"innerloop: warning (iteration {iteration}): {message}", file=sys.stderr)


def train(config: TrainConfig, out: str | Path, *, progress: bool = True) -> TrainResult:
    """Meta-train a fresh run into ``out`` (see :class:`Trainer`)."""
    return Trainer(config, out, progress=progress).run()
