"""SFR-Net building blocks: adapters start as the identity, what trains, MEF, the class graph, the GCN."""

import copy
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("open_clip")

from edgesewer.errors import DataError  # noqa: E402
from edgesewer.models import create_model  # noqa: E402
from edgesewer.models.sfrnet.adapters import MlpWithAdapter, RSAdapter, adapters_disabled, adapters_of  # noqa: E402
from edgesewer.models.sfrnet.clip_backbone import ClipBackbone, build_clip  # noqa: E402
from edgesewer.models.sfrnet.graph import GCNRefiner, build_adjacency  # noqa: E402
from edgesewer.models.sfrnet.mef import MEFHead  # noqa: E402
from edgesewer.taxonomy import SEWER_CODES  # noqa: E402
from edgesewer.train.zeroshot import count_trainable  # noqa: E402


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return create_model("sfr-net-tiny").eval()


def _text_tokens(n: int = 3) -> torch.Tensor:
    from edgesewer.models.sfrnet.clip_backbone import ClipTokenizer

    return ClipTokenizer()(["a cracked pipe", "roots in a sewer", "a drilled connection"][:n])


# ---------------------------------------------------------------------------------------------- adapters

def test_adapted_clip_equals_plain_clip_at_init():
    torch.manual_seed(0)
    plain = build_clip("tiny")
    backbone = ClipBackbone(copy.deepcopy(plain)).eval()
    images, tokens = torch.randn(2, 3, 64, 64), _text_tokens()
    with torch.no_grad():
        plain_image = plain.visual(images)  # pooled, projected class token
        plain_text = plain.encode_text(tokens)
        adapted = backbone.image_tokens(images)
        adapted_text = backbone.encode_text(tokens)
        with adapters_disabled(backbone):
            bypassed, bypassed_text = backbone.image_tokens(images), backbone.encode_text(tokens)
    assert len(adapters_of(backbone)) == 4  # every block of both towers: 2 visual + 2 text
    # bit-identical to the bypassed blocks: the zero up-projection adds exactly 0
    assert torch.equal(adapted, bypassed) and torch.equal(adapted_text, bypassed_text)
    # and the same function as plain open_clip. Not bit for bit: the token path projects all tokens where
    # open_clip projects the pooled one, and the CPU BLAS may round by shape and by the weights' memory
    # alignment (a deep copy moves them): up to 2e-6 seen with open_clip 3.3 and torch 2.14.
    torch.testing.assert_close(adapted[:, 0], plain_image, rtol=0, atol=1e-5)
    torch.testing.assert_close(adapted_text, plain_text, rtol=0, atol=1e-5)
    # A trained (non-zero) adapter changes the output, and switching adapters off restores plain CLIP.
    # (Random weights: a constant-filled up-projection adds the same value to every feature of a token,
    # which the next LayerNorm removes, so the output would barely move.)
    with torch.no_grad():
        backbone.text_adapters[0].up.weight.copy_(0.05 * torch.randn_like(backbone.text_adapters[0].up.weight))
        changed = backbone.encode_text(tokens)
        with adapters_disabled(backbone):
            restored = backbone.encode_text(tokens)
    assert (changed - plain_text).abs().max() > 1e-2
    assert torch.equal(restored, bypassed_text)


def test_adapter_runs_parallel_to_the_mlp_from_ln2():
    torch.manual_seed(1)
    clip = build_clip("tiny")
    block = clip.transformer.resblocks[0]
    reference = copy.deepcopy(block)
    ClipBackbone(clip)
    assert isinstance(block.mlp, MlpWithAdapter)
    adapter: RSAdapter = block.mlp.adapter
    adapter.eval()
    with torch.no_grad():
        adapter.up.weight.normal_()
        x = torch.randn(2, 5, 64)
        h = x + reference.attention(reference.ln_1(x))
        expected = h + reference.mlp(reference.ln_2(h)) + adapter(reference.ln_2(h))
        assert torch.allclose(block(x), expected, atol=1e-6)
    # The MLP keeps its parameter names, so CLIP checkpoints load into the adapted model.
    names = {n for n, _ in block.named_parameters()}
    assert {"mlp.c_fc.weight", "mlp.c_proj.weight", "mlp.adapter.down.weight", "mlp.adapter.up.bias"} <= names


# ---------------------------------------------------------------------------------------------- what trains

def test_only_adapter_mef_and_gcn_parameters_train(tiny_model):
    counts = count_trainable(tiny_model)
    print(f"sfr-net-tiny trainable parameters: {counts}")
    # Hand count, tiny CLIP (width 64 both towers, embed 64, 2 + 2 blocks, bottleneck 128):
    adapter = 64 * 128 + 128 + 128 * 64 + 64  # down + up = 16,576
    mef_block = 2 * 64 + (64 * 128 + 128) + (128 * 64 + 64)  # LayerNorm + fc1 + fc2 = 16,704
    assert counts["adapters"] == 4 * adapter == 66_304
    assert counts["mef"] == 2 * mef_block + 65 == 33_473
    assert counts["gcn"] == 64 + 64
    assert counts["trainable"] == 66_304 + 33_473 + 128
    for name, p in tiny_model.named_parameters():
        trainable = "adapter" in name or name.startswith(("mef.", "gcn."))
        assert p.requires_grad == trainable, name


def test_a_training_step_changes_only_trainable_parameters():
    from edgesewer.train.zeroshot import SynergisticContrastiveLoss, optimizer_factory

    torch.manual_seed(2)
    model = create_model("sfr-net-tiny")
    with torch.no_grad():  # make the adapters' gradient non-trivial (up is zero at init)
        for a in adapters_of(model):
            a.up.weight.normal_(std=0.01)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = optimizer_factory(head_lr=1e-2, adapter_lr=1e-2)(model)
    assert [g["name"] for g in opt.param_groups] == ["heads", "adapters"]
    model.train()
    targets = torch.zeros(4, 17)
    targets[0, 0] = targets[1, 3] = targets[2, 0] = 1
    loss = SynergisticContrastiveLoss()(model(torch.randn(4, 3, 64, 64)), targets)
    loss.backward()
    opt.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert changed and not (changed & frozen)
    assert any("visual" in n and "adapter" in n for n in changed)
    assert any("transformer.resblocks" in n and "visual" not in n and "adapter" in n for n in changed)


@pytest.mark.slow  # builds the full ViT-B/16 CLIP (156M parameters) on the CPU
def test_full_sfrnet_trainable_parameter_count():
    model = create_model("sfr-net", pretrained=False)  # random towers: the count needs no download
    counts = count_trainable(model)
    print(f"sfr-net (CLIP ViT-B/16) parameters: {counts}")
    # 12 visual adapters (768 -> 128 -> 768) + 12 text adapters (512 -> 128 -> 512).
    assert counts["adapters"] == 12 * (768 * 128 + 128 + 128 * 768 + 768) + 12 * (512 * 128 + 128 + 128 * 512 + 512)
    assert counts["adapters"] == 3_950_592
    # MEF: 2 x (LN 512 + 512 -> 1024 -> 512) + Linear(512, 1).
    assert counts["mef"] == 2 * (1024 + 512 * 1024 + 1024 + 1024 * 512 + 512) + 513 == 2_102_785
    assert counts["gcn"] == 128
    assert counts["trainable"] == 6_053_505
    assert len(adapters_of(model)) == 24
    assert model.cfg.input_size == 224 and model.cfg.task == "zeroshot"
    assert model.backbone.num_patches == 196


# ---------------------------------------------------------------------------------------------- MEF

def test_mef_global_and_local_scores_by_hand():
    head = MEFHead(dim=2, hidden=4, blocks=2, dropout=0.0).eval()
    with torch.no_grad():  # make the local MLP read the pooled feature's first coordinate
        for block in head.local_mlp:
            block.fc2.weight.zero_()
            block.fc2.bias.zero_()
        head.local_out.weight.copy_(torch.tensor([[1.0, 0.0]]))
        head.local_out.bias.zero_()
    # class token along x; patches along x and y; texts along x and y (all unit length already).
    tokens = torch.tensor([[[2.0, 0.0], [1.0, 0.0], [0.0, 3.0]]])
    text = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    with torch.no_grad():
        scores = head(tokens, text)
    # global: cos(cls, text) = [1, 0]. local for class 0: softmax over patches of [1, 0] ->
    # weights (e/(e+1), 1/(e+1)); pooled x-coordinate = e/(e+1). Class 1: cosines [0, 1] -> 1/(1+e).
    e = math.e
    expected = torch.tensor([[1 + e / (e + 1), 0 + 1 / (1 + e)]])
    assert torch.allclose(scores, expected, atol=1e-6)


# ---------------------------------------------------------------------------------------------- graph

def _unit(deg: float) -> list[float]:
    return [math.cos(math.radians(deg)), math.sin(math.radians(deg))]


def test_adjacency_matches_a_hand_computed_chain():
    # 0 deg ~ 25 deg (cos 0.906 > 0.85), 25 ~ 50, but 0 and 50 are apart (cos 0.643).
    emb = torch.tensor([_unit(0), _unit(25), _unit(50)]) * torch.tensor([[1.0], [3.0], [0.5]])  # norms do not matter
    adj = build_adjacency(emb, threshold=0.85)
    # A + I = [[1,1,0],[1,1,1],[0,1,1]], degrees (2, 3, 2) -> D^-1/2 (A + I) D^-1/2
    s6 = 1 / math.sqrt(6)
    expected = torch.tensor([[0.5, s6, 0.0], [s6, 1 / 3, s6], [0.0, s6, 0.5]])
    assert torch.allclose(adj, expected, atol=1e-6)
    assert torch.allclose(adj, adj.t())


def test_adjacency_threshold_is_strict_and_isolated_classes_keep_a_self_loop():
    emb = torch.tensor([_unit(0), _unit(math.degrees(math.acos(0.84))), _unit(90)])
    adj = build_adjacency(emb, threshold=0.85)
    assert torch.allclose(adj, torch.eye(3))
    adj = build_adjacency(emb, threshold=0.83)  # now 0 and 1 link: a 2-clique plus an isolated node
    assert torch.allclose(adj, torch.tensor([[0.5, 0.5, 0.0], [0.5, 0.5, 0.0], [0.0, 0.0, 1.0]]))


def test_gcn_refiner_by_hand():
    gcn = GCNRefiner(hidden=2, dropout=0.5).eval()
    with torch.no_grad():
        gcn.gc1.weight.copy_(torch.tensor([[1.0, -1.0]]))
        gcn.gc2.weight.copy_(torch.tensor([[1.0], [2.0]]))
    adj = torch.tensor([[0.5, 0.5], [0.5, 0.5]])
    scores = torch.tensor([[1.0, -3.0]])
    # A s = [-1, -1]; hidden = relu([-1, 1]) per node = [0, 1]; A h = [0, 1]; @ [1, 2] = 2 per node.
    with torch.no_grad():
        out = gcn(scores, adj)
    assert torch.allclose(out, torch.tensor([[3.0, -1.0]]))


def test_model_scores_a_class_subset_with_the_matching_graph_block(tiny_model):
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        sub = tiny_model(images, classes=[13, 5])
        tokens = tiny_model.backbone.image_tokens(images)
        text = tiny_model.class_embeddings([13, 5])
        adj = tiny_model.adjacency[[13, 5]][:, [13, 5]]
        manual = tiny_model.gcn(tiny_model.mef(tokens, text), adj)
    assert sub.shape == (2, 2)
    assert torch.allclose(sub, manual)
    assert tiny_model.cfg.classes == SEWER_CODES
    assert tiny_model.adjacency.shape == (17, 17)


def test_model_refuses_another_input_size():
    with pytest.raises(DataError, match="fixed at 64"):
        create_model("sfr-net-tiny", img_size=96)


def test_adjacency_in_model_is_built_without_adapters(tiny_model):
    model = copy.deepcopy(tiny_model).eval()
    with torch.no_grad():
        before = model.encode_texts(model.class_texts)
        for a in adapters_of(model):  # random: LayerNorm would cancel a constant-filled up-projection
            a.up.weight.copy_(0.1 * torch.randn_like(a.up.weight))
        assert (model.encode_texts(model.class_texts) - before).abs().max() > 1e-2  # the adapters now matter
        assert np.allclose(model.class_graph(model.class_texts).numpy(), tiny_model.adjacency.numpy())
