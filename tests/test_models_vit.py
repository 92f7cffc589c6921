"""ViT-T/S zoo entries: parameter counts, cfg, DINO backbone loading, ONNX parity."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgesewer.errors import ModelNotFound
from edgesewer.modelcfg import SEWERML_MEAN, SEWERML_STD
from edgesewer.models import vit  # noqa: F401 - registers the ViT names
from edgesewer.models._registry import create_model, get_entry
from edgesewer.models.dino import build_dino
from edgesewer.taxonomy import SEWER_CODES


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    ("name", "expected", "tol"),
    [("vit-t", 5.5e6, 0.1e6), ("vit-t-dino", 5.5e6, 0.1e6), ("vit-s", 21.6e6, 0.2e6), ("vit-s-dino", 21.6e6, 0.2e6)],
)
def test_parameter_counts_with_17_classes(name, expected, tol):
    with torch.device("meta"):
        model = create_model(name)
    n = _params(model)
    assert abs(n - expected) <= tol
    assert n == {"vit-t": 5_527_697, "vit-s": 21_672_209}[name.removesuffix("-dino")]


def test_cfg_and_small_image_forward():
    model = create_model("vit-t", img_size=64).eval()
    cfg = model.cfg
    assert (cfg.task, cfg.input_size, cfg.classes) == ("classify", 64, SEWER_CODES)
    assert cfg.mean == SEWERML_MEAN and cfg.std == SEWERML_STD
    assert get_entry("vit-t").cfg.input_size == 224  # the registered cfg is untouched
    with torch.no_grad():
        assert model(torch.randn(2, 3, 64, 64)).shape == (2, 17)
    assert create_model("vit-s", img_size=32, num_classes=5).cfg.classes == ("c0", "c1", "c2", "c3", "c4")


def test_vit_t_dino_pretrained_refuses_without_download():
    with pytest.raises(ModelNotFound, match="no public DINO ViT-T"):
        create_model("vit-t-dino", pretrained=True)


@pytest.fixture(scope="module")
def dino_ckpt(tmp_path_factory):
    torch.manual_seed(0)
    pair = build_dino("vit-t", img_size=32, out_dim=16)
    with torch.no_grad():  # make teacher and student differ so the test can tell which was loaded
        for p in pair.student.parameters():
            p.add_(0.5)
    path = tmp_path_factory.mktemp("dino") / "dino.pt"
    torch.save({"model": pair.state_dict(), "epoch": 3}, path)
    return pair, path


def test_backbone_ckpt_loads_teacher_weights(dino_ckpt):
    pair, path = dino_ckpt
    model = create_model("vit-t-dino", img_size=32, backbone_ckpt=path)
    for key, value in pair.teacher.backbone.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    student = create_model("vit-t-dino", img_size=32, backbone_ckpt=path, ckpt_key="student")
    assert torch.equal(student.cls_token, pair.student.backbone.cls_token)
    assert model.cfg.extra["backbone_ckpt"] == str(path)


def test_backbone_ckpt_official_dino_layout_and_resampled_positions(dino_ckpt, tmp_path):
    pair, _ = dino_ckpt
    official = {
        "student": {f"module.backbone.{k}": v for k, v in pair.student.backbone.state_dict().items()},
        "teacher": {f"backbone.{k}": v for k, v in pair.teacher.backbone.state_dict().items()},
    }
    path = tmp_path / "checkpoint.pth"
    torch.save(official, path)
    model = create_model("vit-t-dino", img_size=48, backbone_ckpt=path)  # 2x2 grid -> 3x3 grid
    assert model.pos_embed.shape == (1, 10, 192)
    assert torch.equal(model.blocks[0].attn.qkv.weight, pair.teacher.backbone.blocks[0].attn.qkv.weight)
    assert torch.equal(model.pos_embed[:, 0], pair.teacher.backbone.pos_embed[:, 0])  # class token position kept


def test_backbone_ckpt_mismatch_is_one_clear_error(dino_ckpt, tmp_path):
    _, path = dino_ckpt
    with pytest.raises(ModelNotFound) as info:
        create_model("vit-s-dino", img_size=32, backbone_ckpt=path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message and "does not fit vit-s-dino" in message
    assert "shape mismatches" in message
    with pytest.raises(ModelNotFound, match="no such backbone checkpoint"):
        create_model("vit-t-dino", backbone_ckpt=tmp_path / "missing.pt")
    bogus = tmp_path / "bogus.pt"
    torch.save({"model": {"foo.weight": torch.zeros(2)}}, bogus)
    with pytest.raises(ModelNotFound, match="missing keys"):
        create_model("vit-t-dino", img_size=32, backbone_ckpt=bogus)


def test_onnx_export_matches_pytorch(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = create_model("vit-t", img_size=64).eval()
    x = torch.randn(2, 3, 64, 64)
    path = tmp_path / "vit-t.onnx"
    torch.onnx.export(
        model, (x,), str(path), dynamo=False, opset_version=17, do_constant_folding=True,
        input_names=["images"], output_names=["logits"], dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x3 = torch.randn(3, 3, 64, 64)  # a different batch size through the dynamic axis
    (onnx_logits,) = session.run(None, {"images": x3.numpy()})
    with torch.no_grad():
        torch_logits = model(x3).numpy()
    assert onnx_logits.shape == (3, 17)
    assert float(np.abs(onnx_logits - torch_logits).max()) < 1e-3


def test_mimetic_init_makes_attention_look_trained():
    """Trockman & Kolter's mimetic start: per head W_q W_k^T leans to +I, per layer W_v W_proj to -0.4 I."""
    plain = create_model("vit-t", img_size=64)
    mim = create_model("vit-t", img_size=64, attn_init="mimetic")
    d, hd = 192, 64
    for model, qk_diag, vo_diag in ((plain, (-0.01, 0.01), (-0.01, 0.01)), (mim, (0.3, 0.5), (-0.45, -0.35))):
        for block in (model.blocks[0], model.blocks[11]):
            w = block.attn.qkv.weight
            qk = w[:hd].T @ w[d:d + hd]  # head 0: x W_q^T (x W_k^T)^T = x (W_q^T W_k) x^T
            vo = w[2 * d:].T @ block.attn.proj.weight.T
            assert qk_diag[0] < qk.diag().mean().item() < qk_diag[1]
            assert vo_diag[0] < vo.diag().mean().item() < vo_diag[1]
            off = vo - torch.diag(vo.diag())
            assert off.abs().mean().item() < 0.05  # Z/sqrt(d) noise, not a second identity
    assert mim(torch.randn(2, 3, 64, 64)).shape == (2, 17)
    with pytest.raises(ValueError, match="attn_init"):
        create_model("vit-t", img_size=64, attn_init="xavier")


def test_backbone_asset_round_trip(tmp_path):
    """write_backbone_asset keeps a trained vit-t's backbone in fp16 without its head; vit-t-dino loads it
    through backbone_ckpt (the demo's path) with every backbone weight within fp16 rounding."""
    from edgesewer.models.assets import write_backbone_asset

    trained = create_model("vit-t", img_size=64, attn_init="mimetic")
    ckpt = tmp_path / "best.pt"
    torch.save({"model": trained.state_dict(), "model_cfg": {"name": "vit-t", "input_size": 64,
                                                              "extra": {"validation": {"mAP": 0.3}}}}, ckpt)
    asset = write_backbone_asset(ckpt, tmp_path / "backbone.pt", note={"seed": 0})
    stored = torch.load(asset, weights_only=True)
    assert stored["meta"]["validation"] == {"mAP": 0.3} and stored["meta"]["seed"] == 0
    assert all(v.dtype == torch.float16 for v in stored["model"].values())
    assert not any(k.startswith("head.") for k in stored["model"])
    tuned = create_model("vit-t-dino", img_size=64, backbone_ckpt=asset)
    own = tuned.state_dict()
    for key, value in trained.state_dict().items():
        if key.startswith("head."):
            continue
        assert torch.allclose(own[key], value, rtol=1e-3, atol=1e-4), key
    with pytest.raises(ValueError, match="overwrite"):
        write_backbone_asset(ckpt, ckpt)
