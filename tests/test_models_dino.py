"""DINO pretraining parts: head, teacher EMA, loss + centring, schedules, augmentation, RankMe."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edgesewer.models.dino import (
    DINOHead,
    DINOLoss,
    TwoGlobalViews,
    build_dino,
    cancel_last_layer_grad,
    cosine_schedule,
    lr_schedule,
    momentum_schedule,
    param_groups,
    rankme,
    teacher_temp_schedule,
    weight_decay_schedule,
)


@pytest.fixture(scope="module")
def dino():
    torch.manual_seed(0)
    return build_dino("vit-t", img_size=32, out_dim=64, drop_path_rate=0.1)


def test_head_shape_and_normalised_prototypes():
    head = DINOHead(192, out_dim=100)
    assert [m.out_features for m in head.mlp if isinstance(m, torch.nn.Linear)] == [2048, 2048, 256]
    assert head(torch.randn(4, 192)).shape == (4, 100)
    g = head.last_layer.parametrizations.weight.original0
    assert torch.all(g == 1) and not g.requires_grad  # norm_last_layer
    assert head.last_layer.bias is None
    # weight-normalised: every prototype has unit norm, so |logit| <= 1 for the L2-normalised input
    assert torch.allclose(head.last_layer.weight.norm(dim=1), torch.ones(100), atol=1e-5)
    assert DINOHead(16, out_dim=8, norm_last_layer=False).last_layer.parametrizations.weight.original0.requires_grad
    assert DINOHead(192).last_layer.weight.shape == (32768, 256)  # paper default K


def test_teacher_gets_no_gradient(dino):
    views = [torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32)]
    dino.train()
    assert not dino.teacher.training  # drop-path off in the teacher
    student_out, teacher_out = dino(views)
    assert student_out.shape == teacher_out.shape == (4, 64)
    loss = DINOLoss(64, epochs=2)(student_out, teacher_out, epoch=0)
    loss.backward()
    assert all(not p.requires_grad and p.grad is None for p in dino.teacher.parameters())
    assert dino.student.backbone.patch_embed.proj.weight.grad is not None
    assert dino.student.head.last_layer.parametrizations.weight.original1.grad is not None
    cancel_last_layer_grad(dino, epoch=0)
    assert dino.student.head.last_layer.parametrizations.weight.original1.grad is None
    assert dino.student.head.mlp[0].weight.grad is not None
    dino.zero_grad(set_to_none=True)


def test_cancel_last_layer_grad_only_in_epoch_zero():
    head = DINOHead(8, out_dim=4)
    head(torch.randn(2, 8)).sum().backward()
    cancel_last_layer_grad(head, epoch=1)
    assert head.last_layer.parametrizations.weight.original1.grad is not None


def test_update_teacher_is_ema(dino):
    with torch.no_grad():
        for p in dino.student.parameters():
            p.add_(1.0)
    teacher_before = [p.clone() for p in dino.teacher.parameters()]
    student = [p.clone() for p in dino.student.parameters()]
    dino.update_teacher(0.9)
    with torch.no_grad():
        worst = max(float((t_new - (0.9 * t_old + 0.1 * s)).abs().max())
                    for t_new, t_old, s in zip(dino.teacher.parameters(), teacher_before, student))
    assert worst < 1e-6
    state = dino.backbone_state_dict("teacher")
    assert torch.equal(state["cls_token"], dino.teacher.backbone.cls_token)


def test_loss_value_and_centre_update_by_hand():
    loss_fn = DINOLoss(out_dim=2, epochs=35, center_momentum=0.9)
    student = torch.tensor([[0.1, 0.0], [0.0, 0.2]])  # view 1 row 0, view 2 row 1 (B = 1)
    teacher = torch.tensor([[0.08, 0.0], [0.0, 0.04]])
    loss = loss_fn(student, teacher, epoch=0).item()
    # epoch 0: teacher temp 0.04, centre 0; student temp 0.1
    t1 = F.softmax(torch.tensor([2.0, 0.0]), 0)  # [0.08, 0] / 0.04
    t2 = F.softmax(torch.tensor([0.0, 1.0]), 0)
    s1 = F.log_softmax(torch.tensor([1.0, 0.0]), 0)
    s2 = F.log_softmax(torch.tensor([0.0, 2.0]), 0)
    expected = 0.5 * (-(t1 * s2).sum() - (t2 * s1).sum())
    assert loss == pytest.approx(expected.item(), rel=1e-6)
    # centre <- 0.9 * 0 + 0.1 * mean(teacher rows) = 0.1 * [0.04, 0.02]
    assert torch.allclose(loss_fn.center, torch.tensor([[0.004, 0.002]]))
    loss_fn(student, teacher, epoch=1)
    assert torch.allclose(loss_fn.center, torch.tensor([[0.9 * 0.004 + 0.004, 0.9 * 0.002 + 0.002]]))


def test_teacher_temperature_schedule():
    temps = teacher_temp_schedule(35, warmup_epochs=30, start=0.04, end=0.07)
    assert len(temps) == 35
    assert temps[0] == pytest.approx(0.04)
    assert temps[15] == pytest.approx(0.04 + 0.03 * 15 / 29)  # 0.055517
    assert temps[29] == pytest.approx(0.07) and temps[34] == pytest.approx(0.07)
    loss_fn = DINOLoss(8, epochs=35)
    assert loss_fn.teacher_temp(0) == pytest.approx(0.04) and loss_fn.teacher_temp(99) == pytest.approx(0.07)


def test_momentum_lr_and_weight_decay_schedules():
    m = momentum_schedule(epochs=35, steps_per_epoch=3)  # 105 steps
    assert len(m) == 105
    assert m[0] == pytest.approx(0.996) and m[-1] == pytest.approx(0.999)
    assert m[52] == pytest.approx(0.9975)  # half-way on the cosine
    assert np.all(np.diff(m) >= 0)

    lr = lr_schedule(batch_size=512, epochs=35, steps_per_epoch=2)
    assert lr[0] == pytest.approx(3e-5)
    assert lr[10] == pytest.approx(3e-5 + (1e-4 - 3e-5) * 10 / 20)  # linear warm-up over 20 steps
    assert lr[20] == pytest.approx(5e-5 * 512 / 256)  # peak 1e-4 right after warm-up
    assert lr[-1] == pytest.approx(1e-6)

    wd = weight_decay_schedule(epochs=35, steps_per_epoch=2)
    assert wd[0] == pytest.approx(0.04) and wd[-1] == pytest.approx(0.4)
    assert cosine_schedule(1.0, 0.0, 5)[2] == pytest.approx(0.5)


def test_param_groups_exclude_biases_and_norms():
    head = DINOHead(8, out_dim=4)
    decay, no_decay = param_groups(head)
    assert no_decay["weight_decay"] == 0.0
    assert all(p.ndim > 1 for p in decay["params"])
    assert all(p.ndim == 1 for p in no_decay["params"])
    assert len(decay["params"]) == 4  # 3 MLP weights + the weight-norm direction (g is frozen)


def test_two_global_views():
    torch.manual_seed(0)
    image = (np.random.default_rng(0).random((80, 96, 3)) * 255).astype(np.uint8)
    views = TwoGlobalViews(size=48)(image)
    assert len(views) == 2
    assert all(v.shape == (3, 48, 48) and v.dtype == torch.float32 for v in views)
    assert not torch.allclose(views[0], views[1])
    # normalised with the Sewer-ML statistics: a mid-grey image lands near (0.5 - mean) / std
    grey = np.full((64, 64, 3), 128, np.uint8)
    torch.manual_seed(1)
    view = TwoGlobalViews(size=32)(grey)[0]
    assert view.abs().max() < 5
    with pytest.raises(ValueError):
        TwoGlobalViews()(np.zeros((8, 8), np.uint8))


def test_equalisation_and_solarisation_fire_independently_with_p_0_3():
    """The paper applies each with p 0.3 (not one or the other): ~30 % each, ~9 % both."""

    class Spy(torch.nn.Module):
        def __init__(self, op):
            super().__init__()
            self.op, self.hits = op, []

        def forward(self, x):
            self.hits.append(self.view)
            return self.op(x)

    torch.manual_seed(0)
    views = TwoGlobalViews(size=16)
    steps = list(views.transform.transforms)
    assert views.equalize in steps and views.solarize in steps  # two separate steps of the pipeline
    equalize, solarize = Spy(views.equalize.transforms[0]), Spy(views.solarize.transforms[0])
    views.equalize.transforms[0], views.solarize.transforms[0] = equalize, solarize
    image = torch.from_numpy((np.random.default_rng(0).random((3, 8, 8)) * 255).astype(np.uint8))
    n = 2000
    for i in range(n):  # the two steps as the pipeline runs them, one view at a time
        equalize.view = solarize.view = i
        views.solarize(views.equalize(image))
    eq, so = set(equalize.hits), set(solarize.hits)
    assert abs(len(eq) / n - 0.3) < 0.03 and abs(len(so) / n - 0.3) < 0.03
    assert abs(len(eq & so) / n - 0.09) < 0.025  # independent: 0.3 x 0.3


def test_rankme_known_rank():
    rng = np.random.default_rng(0)
    u, _ = np.linalg.qr(rng.standard_normal((200, 5)))
    v, _ = np.linalg.qr(rng.standard_normal((32, 5)))
    equal = torch.from_numpy(u @ np.diag([3.0] * 5) @ v.T)
    assert rankme(equal) == pytest.approx(5.0, rel=1e-4)
    # singular values 2, 1, 1: p = (0.5, 0.25, 0.25) -> exp(H) = exp(1.5 log 2) = 2 sqrt(2)
    uneven = torch.from_numpy(u[:, :3] @ np.diag([2.0, 1.0, 1.0]) @ v[:, :3].T)
    assert rankme(uneven) == pytest.approx(2 * math.sqrt(2), rel=1e-4)
    assert rankme(torch.ones(50, 16)) == pytest.approx(1.0, rel=1e-3)  # collapse
