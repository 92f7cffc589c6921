"""Query2Label / MA-Q2L: parameter counts, attention and CAM-mask semantics, positions, ONNX parity."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torchvision.ops.misc import FrozenBatchNorm2d

from edgesewer.modelcfg import IMAGENET_MEAN, IMAGENET_STD
from edgesewer.models import q2l  # noqa: F401 - registers q2l-r101 / ma-q2l-r101
from edgesewer.models._registry import create_model
from edgesewer.models.q2l import LogitsAndCam
from edgesewer.models.transformer import Attention, sine_position_encoding


@pytest.fixture(scope="module")
def maq2l():
    """One CPU MA-Q2L at 64 px (2x2 feature map), built once: R101 models take seconds each."""
    torch.manual_seed(0)
    return create_model("ma-q2l-r101", img_size=64).eval()


@pytest.mark.parametrize(("name", "expected"), [("q2l-r101", 193.6e6), ("ma-q2l-r101", 227.3e6)])
def test_parameter_counts_with_17_classes(name, expected):
    with torch.device("meta"):
        model = create_model(name)
    n = sum(p.numel() for p in model.parameters())
    assert abs(n - expected) / expected < 0.01
    assert n == {"q2l-r101": 193_543_377, "ma-q2l-r101": 227_157_201}[name]
    cfg = model.cfg
    assert (cfg.input_size, cfg.mean, cfg.std, len(cfg.classes)) == (448, IMAGENET_MEAN, IMAGENET_STD, 17)


def test_architecture_follows_released_configuration():
    with torch.device("meta"):
        base = create_model("q2l-r101")
        masked = create_model("ma-q2l-r101")
    assert isinstance(base.backbone.bn1, FrozenBatchNorm2d)
    frozen = {n.split(".")[0] for n, p in base.backbone.named_parameters() if not p.requires_grad}
    assert frozen == {"conv1", "layer1"}  # FrozenBN has no parameters at all
    assert all(p.requires_grad for p in base.backbone.layer2.parameters())
    t = masked.transformer
    assert len(t.encoder) == 1 and len(t.decoder) == 2
    assert t.encoder[0].self_attn.num_heads == 4 and t.encoder[0].ffn.linear1.out_features == 8192
    assert all(layer.label_attn is not None for layer in t.decoder)
    assert all(layer.label_attn is None for layer in base.transformer.decoder)
    assert base.cam is None and masked.cam.bias is None and masked.cam.weight.shape == (17, 2048)
    assert masked.query_embed.weight.shape == (17, 2048) and masked.head.weight.shape == (1, 17, 2048)
    assert masked.pos.shape == (1, 196, 2048)  # 14 x 14 at 448 px


def test_sine_position_encoding_hand_values():
    pe = sine_position_encoding(2, 2, num_pos_feats=4, temperature=10000.0)
    assert pe.shape == (1, 4, 8)
    # rows/cols normalise to 1/2 and 2/2 of 2 pi (minus eps); dim_t = (1, 1, 100, 100)
    y0, y1 = math.pi, 2 * math.pi
    row0 = [math.sin(y0), math.cos(y0), math.sin(y0 / 100), math.cos(y0 / 100)]
    row1 = [math.sin(y1), math.cos(y1), math.sin(y1 / 100), math.cos(y1 / 100)]
    # token order is row-major: (0,0) (0,1) (1,0) (1,1); first half encodes the row, second the column
    torch.testing.assert_close(pe[0, 0], torch.tensor(row0 + row0), atol=1e-5, rtol=0)
    torch.testing.assert_close(pe[0, 1], torch.tensor(row0 + row1), atol=1e-5, rtol=0)
    torch.testing.assert_close(pe[0, 2], torch.tensor(row1 + row0), atol=1e-5, rtol=0)


def test_attention_matches_torch_mha_with_per_sample_mask():
    torch.manual_seed(0)
    dim, heads, batch, lq, lk = 16, 4, 3, 5, 7
    ours = Attention(dim, heads).eval()
    ref = torch.nn.MultiheadAttention(dim, heads, batch_first=True).eval()
    ref.load_state_dict(ours.state_dict())
    q, k, v = torch.randn(batch, lq, dim), torch.randn(batch, lk, dim), torch.randn(batch, lk, dim)
    bias = 3 * torch.randn(batch, lq, lk)
    expected, _ = ref(q, k, v, attn_mask=bias.repeat_interleave(heads, dim=0))
    torch.testing.assert_close(ours(q, k, v, logit_bias=bias), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours(q, k, v), ref(q, k, v)[0], atol=1e-5, rtol=1e-5)
    # The released code's tiling (`repeat`) hands sample b's heads other samples' masks.
    released, _ = ref(q, k, v, attn_mask=bias.repeat(heads, 1, 1))
    assert not torch.allclose(released, expected, atol=1e-3)


def test_attention_bias_of_one_sample_reaches_only_that_sample():
    torch.manual_seed(1)
    attn = Attention(16, 4).eval()
    q, kv = torch.randn(3, 5, 16), torch.randn(3, 7, 16)
    bias = torch.zeros(3, 5, 7)
    base = attn(q, kv, kv, logit_bias=bias)
    bias[1] = 10 * torch.randn(5, 7)
    moved = attn(q, kv, kv, logit_bias=bias)
    torch.testing.assert_close(moved[[0, 2]], base[[0, 2]], atol=0, rtol=0)
    assert not torch.allclose(moved[1], base[1], atol=1e-3)


def test_cam_mask_of_sample_b_reaches_only_sample_b(maq2l):
    torch.manual_seed(2)
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        logits, cam = maq2l(x, return_cam=True)
        x2 = x.clone()
        x2[1] = torch.randn(3, 64, 64)
        logits2, cam2 = maq2l(x2, return_cam=True)
        features = maq2l.backbone(x[:1]).flatten(2).transpose(1, 2)  # [1, 4, 2048]
    assert logits.shape == (3, 17) and cam.shape == (3, 17, 2, 2)
    torch.testing.assert_close(logits2[[0, 2]], logits[[0, 2]], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(cam2[[0, 2]], cam[[0, 2]], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(logits2[1], logits[1], atol=1e-4)
    # the CAM is the raw bias-free linear map of the backbone tokens
    manual = (features @ maq2l.cam.weight.T).transpose(1, 2).reshape(1, 17, 2, 2)
    torch.testing.assert_close(cam[:1], manual, atol=1e-4, rtol=1e-4)


def test_q2l_has_no_cam_output():
    with torch.device("meta"):
        model = create_model("q2l-r101", img_size=64)
        with pytest.raises(ValueError, match="no CAM"):
            model(torch.randn(1, 3, 64, 64), return_cam=True)
        assert model(torch.randn(2, 3, 64, 64)).shape == (2, 17)


@pytest.mark.slow
def test_onnx_export_logits_and_cam_match_pytorch(maq2l, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    wrapper = LogitsAndCam(maq2l).eval()
    x = torch.randn(2, 3, 64, 64)
    path = tmp_path / "ma-q2l.onnx"
    torch.onnx.export(
        wrapper, (x,), str(path), dynamo=False, opset_version=17, do_constant_folding=True,
        input_names=["images"], output_names=["logits", "cam"],
        dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}, "cam": {0: "batch"}},
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    path.unlink()  # ~0.9 GB; pytest keeps the temp dirs of recent runs
    x3 = torch.randn(3, 3, 64, 64)
    onnx_logits, onnx_cam = session.run(None, {"images": x3.numpy()})
    with torch.no_grad():
        torch_logits, torch_cam = wrapper(x3)
    assert onnx_logits.shape == (3, 17) and onnx_cam.shape == (3, 17, 2, 2)
    assert float(np.abs(onnx_logits - torch_logits.numpy()).max()) < 1e-3
    # Random weights with identity FrozenBN give CAM values in the thousands: compare relative to the range.
    cam_scale = float(np.abs(torch_cam.numpy()).max())
    assert float(np.abs(onnx_cam - torch_cam.numpy()).max()) < 1e-5 * cam_scale + 1e-3
