"""CIW-weighted BCE and MA-Q2L's asymmetric loss against hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from edgesewer.models.losses import AsymmetricLoss, bottleneck_weights, ciw_bce_loss, ciw_pos_weight
from edgesewer.taxonomy import SEWER_CODES


def test_ciw_pos_weight_matches_hand_values():
    w = ciw_pos_weight()
    # sum(CIW) = 6.7024 over 17 classes: pos_weight_c = 2 + 2 * 17 * CIW_c / 6.7024
    assert w.shape == (17,) and w.dtype == torch.float32
    assert w[SEWER_CODES.index("RB")].item() == pytest.approx(2 + 34 / 6.7024, rel=1e-6)  # 7.07281
    assert w[SEWER_CODES.index("AF")].item() == pytest.approx(2 + 34 * 0.0811 / 6.7024, rel=1e-6)  # 2.41140
    assert w[SEWER_CODES.index("OS")].item() == pytest.approx(6.57009, abs=1e-5)
    assert w.mean().item() == pytest.approx(4.0, abs=1e-6)  # 2 * (1 + mean/mean)


def test_ciw_bce_at_zero_logits():
    loss = ciw_bce_loss()
    targets = torch.zeros(2, 17)
    targets[0, 0] = 1  # one RB positive
    value = loss(torch.zeros(2, 17), targets).item()
    # every element costs log 2; the positive one is scaled by pos_weight_RB; mean over 34 elements
    expected = math.log(2) * (33 + (2 + 34 / 6.7024)) / 34
    assert value == pytest.approx(expected, rel=1e-6)


def test_asl_two_class_hand_value():
    asl = AsymmetricLoss()
    logits = torch.tensor([[0.0, math.log(3.0)]])  # p = 0.5, 0.75
    targets = torch.tensor([[1.0, 0.0]])
    # positive: gamma+ = 0 -> log 0.5; negative: p- = 0.25, w = 0.75^2 = 0.5625 -> 0.5625 log 0.25
    expected = -(math.log(0.5) + 0.5625 * math.log(0.25)) / 2 * 1000  # 736.4689
    assert asl(logits, targets).item() == pytest.approx(expected, rel=1e-6)
    assert expected == pytest.approx(736.4689, abs=1e-3)


def test_asl_bottleneck_weighting_doubles_rb_is_fo_os():
    weights = bottleneck_weights()
    assert [SEWER_CODES[i] for i in torch.nonzero(weights == 2).flatten()] == ["RB", "IS", "FO", "OS"]
    asl = AsymmetricLoss.ma_q2l()
    value = asl(torch.zeros(1, 17), torch.zeros(1, 17)).item()
    # every negative: p- = 0.5, focal weight 0.25, alpha 2 on 4 classes -> 21 weighted terms
    assert value == pytest.approx(21 * 0.25 * math.log(2) / 17 * 1000, rel=1e-6)  # 214.0602
    plain = AsymmetricLoss()(torch.zeros(1, 17), torch.zeros(1, 17)).item()
    assert plain == pytest.approx(17 * 0.25 * math.log(2) / 17 * 1000, rel=1e-6)


def test_asl_gradient_is_weighted_bce_with_constant_focal_weight():
    torch.manual_seed(0)
    logits = torch.randn(3, 17, dtype=torch.float64, requires_grad=True)
    targets = (torch.rand(3, 17) < 0.3).double()
    asl = AsymmetricLoss.ma_q2l()
    asl(logits, targets).backward()
    p = torch.sigmoid(logits.detach())
    gamma = 2.0 * (1 - targets)  # gamma+ = 0, gamma- = 2
    p_t = p * targets + (1 - p) * (1 - targets)
    w = (1 - p_t) ** gamma * bottleneck_weights().double()
    # d/dx of -w (y log p + (1-y) log(1-p)) with w constant is w (p - y); scaled by 1000 / (B*K)
    expected = 1000 / 51 * w * (p - targets)
    assert torch.allclose(logits.grad, expected, atol=1e-10)

    # With the focal weight in the graph the gradient is different.
    logits2 = logits.detach().clone().requires_grad_(True)
    AsymmetricLoss(detach_focal_weight=False, class_weights=bottleneck_weights())(logits2, targets).backward()
    assert not torch.allclose(logits2.grad, expected, atol=1e-6)


def test_asl_clip_shifts_negative_probability():
    asl = AsymmetricLoss(clip=0.05)
    # p = 0.75 -> p- = 0.25 + 0.05 = 0.30, focal weight 0.7^2
    value = asl(torch.tensor([[math.log(3.0)]]), torch.tensor([[0.0]])).item()
    assert value == pytest.approx(-(0.49 * math.log(0.30)) * 1000, rel=1e-6)


def test_dynamic_weights_from_ap():
    asl = AsymmetricLoss.ma_q2l()
    ap = np.array([0.9] * 13 + [0.1, 0.2, 0.3, 0.5])
    weights = asl.set_dynamic_weights(ap).numpy()
    mean_pct = 100 * 12.8 / 17  # 75.294
    expected = np.ones(17)
    expected[13:] = [(mean_pct - 10) / 10, (mean_pct - 20) / 10, (mean_pct - 30) / 10, (mean_pct - 50) / 10]
    np.testing.assert_allclose(weights, expected, rtol=1e-6)  # 6.529, 5.529, 4.529, 2.529
    np.testing.assert_allclose(asl.class_weights.numpy(), expected, rtol=1e-6)

    top2 = asl.set_dynamic_weights(ap, top_m=2).numpy()
    np.testing.assert_allclose(top2[13:], [expected[13], expected[14], 1.0, 1.0], rtol=1e-6)
    # no class below the mean: all ones
    np.testing.assert_allclose(asl.set_dynamic_weights(np.full(17, 0.4)).numpy(), np.ones(17))
