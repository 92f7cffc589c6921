"""The training loop shared by every task (classifiers, DINO pretraining, the crack segmenter).

A task supplies a model, datasets yielding (inputs, targets), `loss_fn(outputs, targets)`,
optimiser/scheduler factories and `evaluate_fn(model, loader, device) -> metrics`; the Trainer
does the rest: AMP, gradient accumulation, EMA, DDP under torchrun, checkpoint/resume, best-model
selection on `cfg.monitor`, early stopping, a time budget, progress bars and results.jsonl.

Callbacks (ultralytics-style event lists) let tasks hook in without subclassing:
`on_epoch_start(trainer)`, `on_batch_end(trainer, loss)`, `on_before_optimizer_step(trainer)`
(gradients are unscaled here), `on_optimizer_step(trainer)`, `on_epoch_end(trainer, record)`.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset

from edgesewer.errors import DataError, EdgesewerError, ModelNotFound
from edgesewer.modelcfg import ModelCfg
from edgesewer.train.checkpoint import capture_rng, load_checkpoint, restore_rng, save_checkpoint, seed_everything
from edgesewer.train.distributed import (ShardSampler, all_reduce_mean, barrier, broadcast_object, gather_objects,
                                         init_distributed, train_sampler)
from edgesewer.train.ema import ModelEma
from edgesewer.train.progress import TrainProgress

EVENTS = ("on_epoch_start", "on_batch_end", "on_before_optimizer_step", "on_optimizer_step", "on_epoch_end")


@dataclass
class TrainConfig:
    """Loop settings, filled from a recipe's `train` section plus CLI overrides."""

    epochs: int = 10
    batch_size: int = 32  # per process
    accum_steps: int = 1
    amp: bool = True  # bf16 (or fp16 + GradScaler) on CUDA only; ignored on CPU
    # bf16 autocast on a CPU whose oneDNN has native bf16 (AVX512-BF16, AMX); ignored elsewhere. Weights and
    # losses stay fp32. SCNet steps are 1.75x faster with it on the 2-core CI machine (AVX512-BF16).
    cpu_bf16: bool = False
    ema_decay: float | None = None
    ema_select: bool = True  # with EMA: validate raw and EMA weights, keep the better (MA-Q2L)
    monitor: str = "F2_CIW"
    monitor_mode: str = "max"  # "max" | "min"
    early_stop: int | None = None  # epochs without improvement before stopping
    num_workers: int = 2
    seed: int = 0
    out_dir: Path = Path("runs/model")
    max_minutes: float | None = None  # stop at the first optimiser step past this, then evaluate and save
    # With max_minutes: after the first epoch, cut `epochs` to what fits the budget and re-plan the
    # lr schedule over them, so a time-boxed run still warms up and decays (demo, CI) instead of
    # being cut off early in a schedule planned for `epochs`.
    budget_schedule: bool = False
    # With max_minutes: this many whole epochs are never cut, whatever the clock says, so a budget on a
    # loaded machine still buys a known minimum of learning (the quick demo's seconds-long scnet run).
    min_epochs: int = 0
    log_every: int = 10  # progress refresh period in batches
    device: str = "auto"
    clip_grad: float | None = None  # global gradient-norm clip
    eval_batch_size: int | None = None
    drop_last: bool = False
    progress: bool = True


def cpu_has_native_bf16() -> bool:
    """Does oneDNN run bf16 natively here? Elsewhere bf16 autocast on a CPU is emulated and slower than fp32."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def move_to(obj: Any, device: torch.device) -> Any:
    """Move tensors nested in tuples/lists/dicts to `device`."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, (list, tuple)):
        return type(obj)(move_to(o, device) for o in obj)
    if isinstance(obj, dict):
        return {k: move_to(v, device) for k, v in obj.items()}
    return obj


class Trainer:
    """One training run; `fit()` returns the best validation metrics."""

    def __init__(self, model: nn.Module, train_set: Dataset, val_set: Dataset, *, loss_fn: Callable,
                 optimizer_factory: Callable, scheduler_factory: Callable | None, evaluate_fn: Callable,
                 cfg: TrainConfig, model_cfg: ModelCfg, collate_fn: Callable | None = None,
                 resume: Path | None = None, callbacks: dict[str, list[Callable]] | None = None,
                 checkpoint_extra: dict[str, Any] | None = None):
        if cfg.monitor_mode not in ("max", "min"):
            raise ValueError(f"monitor_mode must be 'max' or 'min', got {cfg.monitor_mode!r}")
        self.cfg, self.model_cfg, self.loss_fn, self.evaluate_fn = cfg, model_cfg, loss_fn, evaluate_fn
        self.dist = init_distributed(cfg.device)
        self.device = self.dist.device
        self.out_dir = Path(cfg.out_dir)
        self.checkpoint_extra = dict(checkpoint_extra or {})
        self.callbacks: dict[str, list[Callable]] = {e: [] for e in EVENTS}
        for event, fns in (callbacks or {}).items():
            for fn in fns:
                self.add_callback(event, fn)

        self.model = model.to(self.device)
        self.optimizer = optimizer_factory(self.model)
        self._build_loaders(train_set, val_set, collate_fn)
        self.steps_per_epoch = math.ceil(len(self.train_loader) / cfg.accum_steps)
        self.scheduler_factory = scheduler_factory
        self.scheduler = (scheduler_factory(self.optimizer, self.steps_per_epoch, cfg.epochs)
                          if scheduler_factory else None)
        self.ema = ModelEma(self.model, cfg.ema_decay) if cfg.ema_decay else None

        cuda = self.device.type == "cuda"
        self.amp_dtype: torch.dtype | None = None
        if cuda and cfg.amp:
            self.amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        elif self.device.type == "cpu" and cfg.cpu_bf16 and cpu_has_native_bf16():
            self.amp_dtype = torch.bfloat16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype is torch.float16)
        self.train_model: nn.Module = self.model
        if self.dist.distributed:
            self.train_model = DistributedDataParallel(self.model, device_ids=[self.device] if cuda else None)

        self.epoch = 0
        self.start_epoch = 0
        self.global_step = 0
        self.best_value: float | None = None
        self.best_metrics: dict[str, Any] = {}
        self.bad_epochs = 0
        self.stop_reason = ""
        seed_everything(cfg.seed + self.dist.rank)
        if resume is not None:
            self._resume(Path(resume))

    # ----------------------------------------------------------------- setup
    def add_callback(self, event: str, fn: Callable) -> None:
        if event not in self.callbacks:
            raise ValueError(f"unknown callback event {event!r}; valid: {', '.join(EVENTS)}")
        self.callbacks[event].append(fn)

    def _run(self, event: str, *args: Any) -> None:
        for fn in self.callbacks[event]:
            fn(self, *args)

    def _build_loaders(self, train_set: Dataset, val_set: Dataset, collate_fn: Callable | None) -> None:
        if len(train_set) == 0:  # type: ignore[arg-type]
            raise DataError("the training set is empty")
        cfg, pin = self.cfg, self.device.type == "cuda"
        self.train_sampler = train_sampler(train_set, self.dist, seed=cfg.seed)
        common = dict(num_workers=cfg.num_workers, collate_fn=collate_fn, pin_memory=pin,
                      persistent_workers=False)
        drop_last = cfg.drop_last and len(self.train_sampler) > cfg.batch_size
        self.train_loader = DataLoader(train_set, batch_size=cfg.batch_size, sampler=self.train_sampler,
                                       drop_last=drop_last, **common)
        self.val_loader = DataLoader(val_set, batch_size=cfg.eval_batch_size or cfg.batch_size,
                                     sampler=ShardSampler(val_set, self.dist), **common)

    def _autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    # ----------------------------------------------------------------- loop
    def fit(self) -> dict[str, Any]:
        cfg, t0 = self.cfg, time.monotonic()
        if self.dist.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        with TrainProgress(enabled=cfg.progress and self.dist.is_main) as progress:
            self.progress = progress
            epoch = self.start_epoch
            while epoch < cfg.epochs:  # not range(): a budget schedule may shorten the run after epoch 1
                self.epoch = epoch
                self._run("on_epoch_start")
                train_loss, time_up = self._train_epoch(epoch, t0)
                metrics, weights = self._evaluate()
                improved = self._update_best(metrics, weights, epoch)
                if cfg.budget_schedule and cfg.max_minutes and not time_up:
                    # rank 0's clock for every rank, so all of them plan the same number of epochs
                    elapsed = broadcast_object(time.monotonic() - t0)
                    self._fit_schedule_to_budget(elapsed, epoch - self.start_epoch + 1)
                record = {"epoch": epoch, "train_loss": train_loss, "lr": self.optimizer.param_groups[0]["lr"],
                          "step": self.global_step, "minutes": (time.monotonic() - t0) / 60,
                          "improved": improved, **{f"val/{k}": v for k, v in metrics.items()}}
                self._run("on_epoch_end", record)
                progress.epoch_done(epoch, cfg.epochs, train_loss, cfg.monitor, metrics.get(cfg.monitor))
                self._write_record(record)
                self.save("last.pt", metrics)
                if improved:
                    self.save("best.pt", metrics, weights=weights, full=False)
                if cfg.early_stop is not None and self.bad_epochs >= cfg.early_stop:
                    self.stop_reason = f"early stop: {self.bad_epochs} epochs without a better {cfg.monitor}"
                    break
                if time_up:
                    self.stop_reason = f"time budget of {cfg.max_minutes} min reached"
                    break
                epoch += 1
        barrier()
        return dict(self.best_metrics)

    def _fit_schedule_to_budget(self, elapsed_s: float, epochs_done: int) -> None:
        """Fit `cfg.epochs` to the epochs that fit `max_minutes` and rebuild the scheduler for that length,
        replayed to the current step. Planned after every epoch: the first plan times the first epoch (start-up
        included) against 90 % of the budget; later ones time the epochs after it against 98 %, so a slow
        start no longer leaves minutes unused (a 15-minute CrackForest run whose first epoch took 71 s planned
        11 epochs of the ~67 s the rest took and stopped at 12.3 minutes)."""
        cfg = self.cfg
        budget_s = cfg.max_minutes * 60
        if epochs_done == 1:
            self._epoch_cap, self._first_epoch_s = cfg.epochs, elapsed_s
            fits = int(0.9 * budget_s // max(elapsed_s, 1e-6))
            if fits < 2 and cfg.min_epochs < 2:  # one epoch at most: re-planning would just end the run; keep the cut
                return
        else:
            per_epoch = (elapsed_s - self._first_epoch_s) / (epochs_done - 1)
            fits = epochs_done + int(max(0.0, 0.98 * budget_s - elapsed_s) // max(per_epoch, 1e-6))
        epochs = min(self._epoch_cap, max(self.start_epoch + fits, cfg.min_epochs))
        if epochs == cfg.epochs:
            return
        if self.dist.is_main:
            timing = (f"epochs of {elapsed_s:.0f} s" if epochs_done == 1
                      else f"epochs at {per_epoch:.0f} s after the first")
            self.progress.note(f"time budget {cfg.max_minutes} min: {epochs} {timing}; lr schedule re-planned over them")
        cfg.epochs = epochs
        if self.scheduler_factory is not None:
            with warnings.catch_warnings():  # replaying steps trips torch's "step before optimizer" warning
                warnings.simplefilter("ignore")
                self.scheduler = self.scheduler_factory(self.optimizer, self.steps_per_epoch, epochs)
                for _ in range(self.global_step):
                    if self.scheduler is not None:
                        self.scheduler.step()

    def _train_epoch(self, epoch: int, t0: float) -> tuple[float, bool]:
        cfg, accum = self.cfg, self.cfg.accum_steps
        self.train_model.train()
        self.train_sampler.set_epoch(epoch)
        n_batches = len(self.train_loader)
        total, count, time_up = 0.0, 0, False
        self.optimizer.zero_grad(set_to_none=True)
        task = self.progress.start_epoch(epoch, cfg.epochs, n_batches)
        for i, (inputs, targets) in enumerate(self.train_loader):
            inputs, targets = move_to(inputs, self.device), move_to(targets, self.device)
            group_end = (i + 1) % accum == 0 or i + 1 == n_batches
            group_size = min(accum, n_batches - (i // accum) * accum)
            no_sync = self.dist.distributed and not group_end
            with (self.train_model.no_sync() if no_sync else nullcontext()):  # type: ignore[operator]
                with self._autocast():
                    loss = self.loss_fn(self.train_model(inputs), targets)
                if not torch.isfinite(loss):
                    raise EdgesewerError(f"training diverged: loss is {loss.item()} at epoch {epoch} batch {i}; "
                                         "lower the learning rate or disable AMP")
                self.scaler.scale(loss / group_size).backward()
            if group_end:
                self._optimizer_step()
            value = float(loss.detach())
            total, count = total + value, count + 1
            self._run("on_batch_end", value)
            if i % cfg.log_every == 0 or i + 1 == n_batches:
                self.progress.advance(task, i + 1, value, total / count)
            if (group_end and cfg.max_minutes is not None and epoch >= cfg.min_epochs
                    and time.monotonic() - t0 > cfg.max_minutes * 60):
                time_up = True
                break
        return all_reduce_mean(total / max(count, 1), self.device), time_up

    def _optimizer_step(self) -> None:
        self.scaler.unscale_(self.optimizer)
        self._run("on_before_optimizer_step")
        if self.cfg.clip_grad:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip_grad)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        if self.scheduler is not None:
            self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.model)
        self.global_step += 1
        self._run("on_optimizer_step")

    @torch.no_grad()
    def _evaluate(self) -> tuple[dict[str, Any], str]:
        """Validate the raw model (and the EMA one); return the better one's metrics and its name."""
        candidates = [("raw", self.model)]
        if self.ema is not None:
            candidates = [("ema", self.ema.module)] + (candidates if self.cfg.ema_select else [])
        results = []
        for name, model in candidates:
            model.eval()
            with self._autocast():
                metrics = dict(self.evaluate_fn(model, self.val_loader, self.device))
            if self.cfg.monitor not in metrics:
                raise KeyError(f"evaluate_fn returned no {self.cfg.monitor!r} (got {sorted(metrics)})")
            results.append((name, metrics))
        sign = 1.0 if self.cfg.monitor_mode == "max" else -1.0
        name, metrics = max(results, key=lambda r: sign * float(r[1][self.cfg.monitor]))
        if len(results) > 1:
            other = [m for n, m in results if n != name][0]
            metrics[f"{self.cfg.monitor}_{'raw' if name == 'ema' else 'ema'}"] = other[self.cfg.monitor]
        return metrics, name

    def _update_best(self, metrics: dict[str, Any], weights: str, epoch: int) -> bool:
        value = float(metrics[self.cfg.monitor])
        better = self.best_value is None or (
            value > self.best_value if self.cfg.monitor_mode == "max" else value < self.best_value)
        if better:
            self.best_value, self.bad_epochs = value, 0
            self.best_metrics = {**metrics, "epoch": epoch, "weights": weights}
        else:
            self.bad_epochs += 1
        return better

    def _write_record(self, record: dict[str, Any]) -> None:
        if not self.dist.is_main:
            return
        clean = {k: v for k, v in record.items() if isinstance(v, (int, float, str, bool)) or v is None}
        with open(self.out_dir / "results.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(clean) + "\n")

    # ----------------------------------------------------------------- checkpoints
    def model_weights(self, weights: str = "raw") -> dict[str, torch.Tensor]:
        model = self.ema.module if weights == "ema" and self.ema is not None else self.model
        return model.state_dict()

    def save(self, name: str, metrics: dict[str, Any], weights: str = "raw", full: bool = True) -> Path | None:
        """Write out_dir/name; collective (gathers every rank's RNG), only rank 0 writes.

        `full=False` (best.pt) keeps only what evaluation and export need: the weights and their
        metadata, not the optimiser/EMA/RNG state (for MA-Q2L that is gigabytes per write).
        """
        rng = gather_objects(capture_rng()) if full else None
        if not self.dist.is_main:
            return None
        state: dict[str, Any] = {
            "model": self.model_weights(weights),
            "model_cfg": self.model_cfg.to_dict(),
            "epoch": self.epoch,
            "metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float, str))},
            "weights": weights,
            **self.checkpoint_extra,
        }
        if full:
            state.update({
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
                "scaler": self.scaler.state_dict(),
                "ema": self.ema.state_dict() if self.ema is not None else None,
                "rng": rng,
                "trainer": {"global_step": self.global_step, "best_value": self.best_value,
                            "best_metrics": self.best_metrics, "bad_epochs": self.bad_epochs,
                            "world_size": self.dist.world_size},
            })
        return save_checkpoint(self.out_dir / name, state)

    def _resume(self, path: Path) -> None:
        ckpt = load_checkpoint(path, expect_model=self.model_cfg.name)
        task = ckpt["model_cfg"].get("task")
        if task != self.model_cfg.task:  # e.g. a DINO-pretraining last.pt offered to fine-tuning
            raise ModelNotFound(f"{path}: is a {task} checkpoint of {self.model_cfg.name}, "
                                f"not a {self.model_cfg.task} one (fine-tune from its backbone.pt with --backbone)")
        if ckpt.get("optimizer") is None or "trainer" not in ckpt:
            raise DataError(f"{path}: holds no optimiser state (a best.pt?); resume from the run's last.pt")
        try:
            self.model.load_state_dict(ckpt["model"])
        except RuntimeError as exc:
            raise ModelNotFound(f"{path}: weights do not fit {self.model_cfg.name}: "
                                f"{str(exc).splitlines()[0]}") from None
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if self.scheduler is not None and ckpt.get("scheduler") is not None:
            self.scheduler.load_state_dict(ckpt["scheduler"])
        if ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        if self.ema is not None and ckpt.get("ema") is not None:
            self.ema.load_state_dict(ckpt["ema"])
        state = ckpt["trainer"]
        self.start_epoch = int(ckpt["epoch"]) + 1
        self.epoch = int(ckpt["epoch"])
        self.global_step = int(state["global_step"])
        self.best_value, self.best_metrics = state["best_value"], dict(state["best_metrics"])
        self.bad_epochs = int(state["bad_epochs"])
        rng = ckpt.get("rng") or []
        if rng:  # each rank continues its own random stream when the world size is unchanged
            restore_rng(rng[self.dist.rank] if len(rng) == self.dist.world_size else rng[0])
