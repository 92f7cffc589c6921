"""The task-agnostic training engine: EMA arithmetic, exact resume, gradient accumulation, best-model
selection, early stopping, the time budget, schedules and checkpoint errors (tiny models, CPU, seconds)."""

import json
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402
from torch.utils.data import TensorDataset  # noqa: E402

from edgesewer.errors import DataError, EdgesewerError, ModelNotFound  # noqa: E402
from edgesewer.modelcfg import ModelCfg  # noqa: E402
from edgesewer.train import schedules  # noqa: E402
from edgesewer.train.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from edgesewer.train.distributed import DistInfo, ShardSampler, gather_rows  # noqa: E402
from edgesewer.train.ema import ModelEma  # noqa: E402
from edgesewer.train.engine import Trainer, TrainConfig  # noqa: E402

TINY_CFG = ModelCfg(name="tiny", task="classify", input_size=8)


def _data(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    return TensorDataset(x, (x[:, :3] > 0).float())


def _mean_bce(model, loader, device):
    total, count = 0.0, 0
    for x, y in loader:
        total += nn.functional.binary_cross_entropy_with_logits(model(x), y, reduction="sum").item()
        count += y.numel()
    return {"loss": total / count}


def _trainer(out, *, model=None, epochs=3, batch=8, accum=1, ema=None, evaluate=_mean_bce, resume=None,
             callbacks=None, opt=None, **cfg_kw):
    torch.manual_seed(0)
    if model is None:
        model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3))
    cfg = TrainConfig(epochs=epochs, batch_size=batch, accum_steps=accum, ema_decay=ema, monitor="loss",
                      monitor_mode="min", num_workers=0, out_dir=out, progress=False, **cfg_kw)
    opt = opt or (lambda m: torch.optim.AdamW(m.parameters(), lr=1e-2))
    return Trainer(model, _data(), _data(seed=1), loss_fn=nn.BCEWithLogitsLoss(), optimizer_factory=opt,
                   scheduler_factory=schedules.onecycle(1e-2), evaluate_fn=evaluate, cfg=cfg, model_cfg=TINY_CFG,
                   resume=resume, callbacks=callbacks)


def test_ema_follows_the_hand_computed_average():
    model = nn.Sequential(nn.Linear(1, 1), nn.BatchNorm1d(1))
    with torch.no_grad():
        model[0].weight.fill_(1.0)
        model[0].bias.fill_(0.0)
    ema = ModelEma(model, decay=0.9)
    for value in (3.0, 5.0):
        with torch.no_grad():
            model[0].weight.fill_(value)
            model[1].running_mean.fill_(value)
            model[1].num_batches_tracked.fill_(7)
        ema.update(model)
    # 0.9 * 1 + 0.1 * 3 = 1.2, then 0.9 * 1.2 + 0.1 * 5 = 1.58; buffers averaged too (0 -> 0.3 -> 0.77)
    assert ema.module[0].weight.item() == pytest.approx(1.58, abs=1e-6)
    assert ema.module[0].bias.item() == 0.0
    assert ema.module[1].running_mean.item() == pytest.approx(0.77, abs=1e-6)
    assert ema.module[1].num_batches_tracked.item() == 7  # integer buffers are copied
    assert ema.num_updates == 2
    restored = ModelEma(model, decay=0.9)
    restored.load_state_dict(ema.state_dict())
    assert restored.module[0].weight.item() == pytest.approx(1.58, abs=1e-6) and restored.num_updates == 2


def test_resume_replays_the_uninterrupted_run_exactly(tmp_path):
    # Dropout, gradient accumulation, EMA and a OneCycle schedule all carry state across the break.
    losses_a, losses_b = [], []
    snapshot = tmp_path / "after_epoch0.pt"

    def keep_epoch0(trainer):
        if trainer.epoch == 1:
            shutil.copy(tmp_path / "a" / "last.pt", snapshot)

    a = _trainer(tmp_path / "a", accum=2, ema=0.9, callbacks={
        "on_batch_end": [lambda t, loss: losses_a.append(loss)], "on_epoch_start": [keep_epoch0]})
    a.fit()
    b = _trainer(tmp_path / "b", accum=2, ema=0.9, resume=snapshot,
                 callbacks={"on_batch_end": [lambda t, loss: losses_b.append(loss)]})
    assert b.start_epoch == 1 and b.global_step == a.steps_per_epoch
    b.fit()
    batches_per_epoch = len(a.train_loader)
    assert len(losses_b) == 2 * batches_per_epoch
    assert losses_b[0] == losses_a[batches_per_epoch]  # the next step's loss, bit for bit
    np.testing.assert_array_equal(losses_b, losses_a[batches_per_epoch:])
    for pa, pb in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(pa, pb)
    for pa, pb in zip(a.ema.module.parameters(), b.ema.module.parameters()):
        assert torch.equal(pa, pb)


def test_gradient_accumulation_equals_the_large_batch(tmp_path):
    def sgd(m):
        return torch.optim.SGD(m.parameters(), lr=0.1)

    def linear():
        torch.manual_seed(3)
        return nn.Linear(8, 3)

    small = _trainer(tmp_path / "s", model=linear(), batch=4, accum=2, epochs=1, opt=sgd)
    large = _trainer(tmp_path / "l", model=linear(), batch=8, accum=1, epochs=1, opt=sgd)
    small.fit()
    large.fit()
    assert small.global_step == large.global_step == 5  # 40 samples / 8 per optimiser step
    for ps, pl in zip(small.model.parameters(), large.model.parameters()):
        torch.testing.assert_close(ps, pl, rtol=1e-5, atol=1e-6)


def test_best_checkpoint_and_early_stopping(tmp_path):
    scripted = iter([0.50, 0.30, 0.40, 0.35, 0.10, 0.05])  # lower is better; best at epoch 1

    def evaluate(model, loader, device):
        return {"loss": next(scripted)}

    trainer = _trainer(tmp_path, epochs=6, evaluate=evaluate, early_stop=2)
    best = trainer.fit()
    assert best["epoch"] == 1 and best["loss"] == 0.30
    assert "early stop" in trainer.stop_reason
    lines = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [0, 1, 2, 3]  # stopped after two epochs without improvement
    assert [r["improved"] for r in lines] == [True, True, False, False]
    best_ckpt = load_checkpoint(tmp_path / "best.pt")
    assert best_ckpt["epoch"] == 1 and "optimizer" not in best_ckpt  # best.pt is lean: weights + metadata
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 3
    with pytest.raises(DataError, match="best.pt: holds no optimiser state .* resume from the run's last.pt"):
        _trainer(tmp_path / "again", resume=tmp_path / "best.pt")


def test_ema_weights_win_when_they_validate_better(tmp_path):
    holder = {}

    def evaluate(model, loader, device):
        return {"loss": 0.1 if model is holder["t"].ema.module else 0.2}

    trainer = _trainer(tmp_path, epochs=1, ema=0.5, evaluate=evaluate)
    holder["t"] = trainer
    best = trainer.fit()
    assert best["weights"] == "ema" and best["loss_raw"] == 0.2
    ckpt = load_checkpoint(tmp_path / "best.pt")
    for key, value in trainer.ema.module.state_dict().items():
        assert torch.equal(ckpt["model"][key], value)


def test_time_budget_stops_after_one_step_and_saves(tmp_path):
    trainer = _trainer(tmp_path, epochs=5, max_minutes=0.0)
    trainer.fit()
    assert trainer.global_step == 1 and "time budget" in trainer.stop_reason
    assert (tmp_path / "last.pt").is_file() and len((tmp_path / "results.jsonl").read_text().splitlines()) == 1


def test_min_epochs_holds_against_a_spent_budget(tmp_path):
    """A budget already spent still buys `min_epochs` whole epochs (the quick demo on a loaded machine), and
    with budget_schedule the lr schedule is planned over exactly those epochs."""
    trainer = _trainer(tmp_path, epochs=5, max_minutes=0.0, min_epochs=3)
    trainer.fit()
    assert trainer.global_step == 3 * trainer.steps_per_epoch + 1 and "time budget" in trainer.stop_reason
    replanned = _trainer(tmp_path / "replanned", epochs=50, max_minutes=1e-6, min_epochs=3, budget_schedule=True)
    replanned.fit()
    assert replanned.cfg.epochs == 3 and replanned.stop_reason == ""
    assert replanned.global_step == 3 * replanned.steps_per_epoch
    planned = _trainer(tmp_path / "planned", epochs=3)
    planned.fit()
    assert replanned.optimizer.param_groups[0]["lr"] == pytest.approx(planned.optimizer.param_groups[0]["lr"],
                                                                       rel=1e-9)  # annealed within the 3 epochs


def test_budget_schedule_fits_epochs_and_the_lr_schedule_to_the_time_budget(tmp_path, monkeypatch):
    from edgesewer.train import engine

    clock = [1000.0]  # a fake clock: only validation takes time (0.4 s per epoch), so the plan is exact
    monkeypatch.setattr(engine.time, "monotonic", lambda: clock[0])

    def slow_eval(model, loader, device):
        clock[0] += 0.4
        return _mean_bce(model, loader, device)

    # a 2 s budget, planned at 90 %: 1.8 s // 0.4 s = 4 epochs of the 100 asked for
    trainer = _trainer(tmp_path, epochs=100, evaluate=slow_eval, max_minutes=2.0 / 60, budget_schedule=True)
    trainer.fit()
    assert trainer.cfg.epochs == 4
    assert trainer.epoch + 1 == trainer.cfg.epochs and trainer.stop_reason == ""  # ran out its plan, not cut off
    assert trainer.global_step == trainer.cfg.epochs * trainer.steps_per_epoch
    # the re-planned OneCycle ends where a run planned for that many epochs from the start ends
    planned = _trainer(tmp_path / "planned", epochs=trainer.cfg.epochs)
    planned.fit()
    final_lr = trainer.optimizer.param_groups[0]["lr"]
    assert final_lr == pytest.approx(planned.optimizer.param_groups[0]["lr"], rel=1e-9) and final_lr < 1e-2 / 100  # annealed from the 1e-2 peak


def test_budget_schedule_replans_after_a_slow_first_epoch(tmp_path, monkeypatch):
    from edgesewer.train import engine

    clock = [1000.0]  # the first epoch pays 0.4 s of start-up on top of the 0.4 s every epoch takes
    monkeypatch.setattr(engine.time, "monotonic", lambda: clock[0])
    calls = [0]

    def slow_eval(model, loader, device):
        calls[0] += 1
        clock[0] += 0.8 if calls[0] == 1 else 0.4
        return _mean_bce(model, loader, device)

    # 2.4 s: the first plan (90 % // 0.8 s) is 2 epochs; after the second, 0.4 s epochs against 98 % of the
    # budget fit 4 in all, which end at 2.0 s instead of 1.2 s
    trainer = _trainer(tmp_path, epochs=100, evaluate=slow_eval, max_minutes=2.4 / 60, budget_schedule=True)
    trainer.fit()
    assert trainer.cfg.epochs == 4 and trainer.epoch == 3 and trainer.stop_reason == ""
    assert clock[0] - 1000.0 == pytest.approx(2.0)
    planned = _trainer(tmp_path / "planned", epochs=4)
    planned.fit()  # after the re-plans the schedule still ends where a 4-epoch plan ends
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(planned.optimizer.param_groups[0]["lr"], rel=1e-9)


def test_diverging_loss_is_a_one_line_error(tmp_path):
    broken = nn.Linear(8, 3)
    with torch.no_grad():
        broken.weight.fill_(float("nan"))
    trainer = _trainer(tmp_path, model=broken, epochs=1)
    with pytest.raises(EdgesewerError, match="training diverged: loss is nan at epoch 0 batch 0"):
        trainer.fit()


def test_schedules_step_per_optimiser_step():
    def lrs(factory, steps_per_epoch=4, epochs=2):
        opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
        sched = factory(opt, steps_per_epoch, epochs)
        out = []
        for _ in range(steps_per_epoch * epochs):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        return out

    # milestones are epochs: x0.1 from step 4 (epoch 1) on
    assert lrs(schedules.multistep([1], 0.1)) == pytest.approx([1.0] * 4 + [0.1] * 4)
    # linear warm-up over one epoch, then half a cosine from 1 to 0 over the remaining 4 steps
    cos = lrs(schedules.cosine(warmup_epochs=1, warmup_lr=0.0, min_lr=0.0))
    assert cos == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0, (1 + np.cos(np.pi / 4)) / 2, 0.5,
                                 (1 + np.cos(3 * np.pi / 4)) / 2])
    one = lrs(schedules.onecycle(max_lr=1.0, pct_start=0.3), steps_per_epoch=5, epochs=2)  # peak at step 3 - 1
    assert one[0] == pytest.approx(1.0 / 25) and max(one) == pytest.approx(1.0) and np.argmax(one) == 2


def test_cosine_rebuilt_mid_run_replays_the_fresh_schedule():
    """A budget re-plan rebuilds the scheduler after the lr has moved, even after a finished cosine left it at
    min_lr 0 (this divided by zero in `edgesewer demo --quick` when a later epoch was faster than the first)."""
    factory = schedules.cosine(warmup_epochs=1, warmup_lr=0.0, min_lr=0.0)

    def run(plans):
        opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.5)
        step, out = 0, []
        for epochs in plans:
            sched = factory(opt, 4, epochs)  # the engine's re-plan: a new scheduler, replayed to the current step
            for _ in range(step):
                sched.step()
            for _ in range(4):
                out.append(opt.param_groups[0]["lr"])
                opt.step()
                sched.step()
                step += 1
        return out

    # planned for 2 epochs (the cosine ends at 0 after epoch 2), then re-planned to 3 after each epoch
    replanned = run([2, 2, 3])
    fresh = run([3, 3, 3])
    assert replanned[8:] == pytest.approx(fresh[8:]) and max(replanned[8:]) > 0
    assert replanned[:4] == pytest.approx([0.0, 0.125, 0.25, 0.375])  # the warm-up towards the 0.5 peak


def test_param_group_schedule_sets_values_per_step_and_resumes():
    opt = torch.optim.AdamW([{"params": [nn.Parameter(torch.zeros(2, 2))]}, {"params": [nn.Parameter(torch.zeros(2))],
                                                                          "weight_decay": 0.0}])
    values = {"lr": np.array([1.0, 2.0, 3.0]), "weight_decay": np.array([0.1, 0.2, 0.3])}
    sched = schedules.ParamGroupSchedule(opt, values, groups={"weight_decay": [0]})
    assert [g["lr"] for g in opt.param_groups] == [1.0, 1.0]
    sched.step()
    assert [g["lr"] for g in opt.param_groups] == [2.0, 2.0]
    assert [g["weight_decay"] for g in opt.param_groups] == [0.2, 0.0]  # group 1 keeps no decay
    other = schedules.ParamGroupSchedule(opt, values, groups={"weight_decay": [0]})
    other.load_state_dict(sched.state_dict())
    other.step()
    other.step()  # past the end: the last value holds
    assert opt.param_groups[0]["lr"] == 3.0 and opt.param_groups[0]["weight_decay"] == 0.3


def test_shard_sampler_and_gather_in_one_process():
    data = list(range(7))
    assert list(ShardSampler(data, DistInfo(rank=1, world_size=3))) == [1, 4]
    assert list(ShardSampler(data, DistInfo(rank=0, world_size=3))) == [0, 3, 6]
    rows = torch.arange(6).reshape(3, 2)
    assert torch.equal(gather_rows(rows), rows)


def test_checkpoint_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "none.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="garbage.pt: not a readable PyTorch checkpoint"):
        load_checkpoint(garbage)
    path = save_checkpoint(tmp_path / "tiny.pt", {"model": {}, "model_cfg": TINY_CFG.to_dict(), "epoch": 0})
    assert load_checkpoint(path, expect_model="tiny")["epoch"] == 0
    with pytest.raises(ModelNotFound, match=r"tiny.pt: checkpoint is for model tiny, not vit-t"):
        load_checkpoint(path, expect_model="vit-t")


def test_resume_refuses_a_checkpoint_of_another_task(tmp_path):
    trainer = _trainer(tmp_path / "a", epochs=1)
    trainer.fit()
    trainer.model_cfg = ModelCfg(name="tiny", task="dino-pretrain", input_size=8)
    trainer.save("pre.pt", {"loss": 0.0})
    with pytest.raises(ModelNotFound, match="pre.pt: is a dino-pretrain checkpoint of tiny, not a classify one"):
        _trainer(tmp_path / "b", resume=tmp_path / "a" / "pre.pt")


def test_cpu_bf16_runs_linear_layers_in_bf16_and_keeps_fp32_weights(tmp_path):
    from edgesewer.train.engine import cpu_has_native_bf16

    seen = []
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    model[2].register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    trainer = _trainer(tmp_path, model=model, epochs=2, cpu_bf16=True)
    before = _mean_bce(trainer.model, trainer.val_loader, "cpu")["loss"]
    seen.clear()
    best = trainer.fit()
    expected = torch.bfloat16 if cpu_has_native_bf16() else torch.float32  # emulated bf16 would be slower
    assert set(seen) == {expected}
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())
    assert best["loss"] < before  # it still learns
    seen.clear()
    _trainer(tmp_path / "fp32", model=model, epochs=1).fit()  # off by default: fp32 on a CPU
    assert set(seen) == {torch.float32}
