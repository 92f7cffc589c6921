"""SCNet: parameter count, outputs per mode, switch-mask unpooling == max_unpool2d, ONNX parity."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edgesewer.errors import ModelNotFound
from edgesewer.models import scnet as scnet_module
from edgesewer.models._registry import get_entry
from edgesewer.models.unpool import pool_with_switches, unpool_with_switches


@pytest.fixture(scope="module")
def model() -> scnet_module.SCNet:
    torch.manual_seed(0)
    return scnet_module.scnet()


def test_parameter_count_matches_paper(model):
    n_params = sum(p.numel() for p in model.parameters())
    assert abs(n_params / 29.46e6 - 1) < 0.001, n_params  # 29.48M; with C' = 16 it would be 29.53M
    assert {ssa.reduce.out_channels for ssa in [*model.encoder_ssa, *model.decoder_ssa]} == {1}  # the paper's C' = 1
    assert model.encoder[0][0][0].in_channels == 4  # RGB + edge map


def test_registered_config():
    cfg = get_entry("scnet").cfg
    assert (cfg.task, cfg.input_size, cfg.in_chans, cfg.classes) == ("segment", 256, 4, ("crack",))
    assert cfg.mean == (0.5, 0.5, 0.5) and cfg.std == (0.5, 0.5, 0.5)


def test_factory_refuses_pretrained_and_multiclass():
    with pytest.raises(ModelNotFound, match="no pretrained weights"):
        scnet_module.scnet(pretrained=True)
    with pytest.raises(ModelNotFound, match="one class"):
        scnet_module.scnet(num_classes=3)


def test_outputs_per_mode(model):
    x = torch.randn(2, 4, 64, 96)
    model.train()
    out = model(x)
    assert out["fused"].shape == (2, 1, 64, 96)
    assert len(out["sides"]) == 5 and all(s.shape == (2, 1, 64, 96) for s in out["sides"])
    model.eval()
    with torch.no_grad():
        prob = model(x)
        logits = model.forward_logits(x)["fused"]
    assert prob.shape == (2, 1, 64, 96)
    torch.testing.assert_close(prob, torch.sigmoid(logits))
    with pytest.raises(ValueError, match="divisible by 32"):
        model(torch.randn(1, 4, 48, 64))


def test_xavier_init():
    conv = scnet_module.SCNet().encoder[2][1][0]  # 256 -> 256, 3x3
    bound = (6 / (256 * 9 + 256 * 9)) ** 0.5
    assert conv.weight.abs().max() <= bound
    assert conv.weight.std().item() == pytest.approx(bound / 3**0.5, rel=0.02)


@pytest.mark.parametrize("kind", ["randn", "relu", "integers"])
def test_switch_unpool_equals_max_unpool(kind):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(3, 5, 8, 12, generator=gen)
    if kind == "relu":  # many all-zero windows: ties everywhere
        x = torch.relu(x - 0.8)
    elif kind == "integers":  # ties among non-zero values too
        x = torch.randint(0, 3, x.shape, generator=gen).float()
    pooled_ref, indices = F.max_pool2d(x, 2, 2, return_indices=True)
    pooled, switches = pool_with_switches(x)
    torch.testing.assert_close(pooled, pooled_ref, rtol=0, atol=0)
    assert torch.all(switches.sum(dim=2) == 1)  # exactly one position per window

    decoder_input = torch.randn(pooled.shape, generator=gen)
    expected = F.max_unpool2d(decoder_input, indices, 2, 2, output_size=x.shape[-2:])
    torch.testing.assert_close(unpool_with_switches(decoder_input, switches), expected, rtol=0, atol=0)


def test_switch_unpool_hand_case():
    x = torch.tensor([[[[1.0, 5.0, 2.0, 2.0], [3.0, 4.0, 0.0, 1.0]]]])  # windows: max at (0,1); tie at (0,0)/(0,1)
    _, switches = pool_with_switches(x)
    out = unpool_with_switches(torch.tensor([[[[10.0, 20.0]]]]), switches)
    assert out.tolist() == [[[[0.0, 10.0, 20.0, 0.0], [0.0, 0.0, 0.0, 0.0]]]]


def test_onnx_export_has_no_maxunpool_and_matches(tmp_path):
    """Seeded model and input: the only source of larger differences is a pooling window whose two largest
    values are within float rounding of each other, where ORT's and PyTorch's convolutions can pick different
    maxima (about 1 image in 12 at 64x64 with random weights; a local blob, as with any max-unpooling)."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = scnet_module.scnet().eval()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 64, 64, generator=gen)
    path = tmp_path / "scnet.onnx"
    torch.onnx.export(
        model, x, str(path), dynamo=False, opset_version=17, input_names=["input"], output_names=["prob"],
        dynamic_axes={"input": {0: "batch"}, "prob": {0: "batch"}},
    )
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert "MaxUnpool" not in ops and "MaxPool" in ops
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    batch = torch.randn(2, 4, 64, 64, generator=gen)  # a different batch size than traced: the batch axis is dynamic
    (prob_ort,) = session.run(["prob"], {"input": batch.numpy()})
    with torch.no_grad():
        prob_torch = model(batch).numpy()
    assert prob_ort.shape == (2, 1, 64, 64)
    assert np.abs(prob_ort - prob_torch).max() < 1e-4
