"""SFR-Net options from issue 16: the authors' class-text format, CLIP weights by default (and the
one-line error when they are not cached offline), and the MEF local path as an ablation switch."""

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("open_clip")

from edgesewer.errors import DataError, ModelNotFound  # noqa: E402
from edgesewer.models import create_model  # noqa: E402
from edgesewer.models.sfrnet.class_texts import load_authors_texts, load_class_texts  # noqa: E402
from edgesewer.models.sfrnet.clip_backbone import CLIP_ARCHS, cached_clip_weights, clip_cache_dir  # noqa: E402
from edgesewer.models.sfrnet.model import resolve_class_texts  # noqa: E402
from edgesewer.taxonomy import ZS_SEEN, ZS_UNSEEN  # noqa: E402

SEEN, UNSEEN = ["RB", "FS", "RO"], ["PB", "OS"]
DESCRIPTIONS = ["A pipe wall with a dark fracture line.", "A joint where one pipe section is offset.",
                "Tree roots growing through a joint.", "A clean machine-drilled hole for a lateral.",
                "A liner cut open at a lateral connection.  "]  # trailing blanks, as in the released file
PHRASES = ["Cracks, breaks, and collapses", "Displaced joint", "Roots", "Drilled connection",
           "Lateral reinstatement cuts"]


def _authors_layout(root: Path, set_name: str = "toy") -> Path:
    """The SFR-Net repository's layout: datasets/text/<set>_{de,ep}.txt and datasets/classes/<set>/{seen,unseen}.txt."""
    text, classes = root / "datasets" / "text", root / "datasets" / "classes" / set_name
    text.mkdir(parents=True)
    classes.mkdir(parents=True)
    (text / f"{set_name}_de.txt").write_text("\n".join(DESCRIPTIONS) + "\n")
    (text / f"{set_name}_ep.txt").write_text("\n".join(PHRASES))
    (classes / "seen.txt").write_text("\n".join(SEEN))
    (classes / "unseen.txt").write_text("\n".join(UNSEEN) + "\n\n")
    return text / f"{set_name}_de.txt"


# ---------------------------------------------------------------------------------------------- class texts

def test_authors_format_follows_the_seen_then_unseen_class_lists(tmp_path):
    de = _authors_layout(tmp_path)
    texts = load_class_texts(de)  # a `_de.txt` path switches to the authors' format
    assert texts.codes == tuple(SEEN + UNSEEN)
    assert texts.texts[0] == DESCRIPTIONS[0] and texts.texts[-1] == DESCRIPTIONS[-1].strip()
    assert texts.names == tuple(PHRASES)
    assert texts.where("name")[1] == f"{de.with_name('toy_ep.txt')}, line 2 (FS.name)"
    assert texts.where("text")[4] == f"{de}, line 5 (OS.text)"
    # Either twin names the pair; the subset keeps each class's own lines.
    assert load_class_texts(de.with_name("toy_ep.txt")) == texts
    assert texts.subset(["OS", "RB"]).names == (PHRASES[4], PHRASES[0])


def test_authors_format_with_explicit_files_and_codes(tmp_path):
    de = _authors_layout(tmp_path)
    lists = tmp_path / "datasets" / "classes" / "toy"
    moved = tmp_path / "elsewhere_de.txt"
    moved.write_text(de.read_text())
    ep = de.with_name("toy_ep.txt")
    by_files = load_authors_texts(moved, ep, [lists / "seen.txt", lists / "unseen.txt"])
    by_folder = load_authors_texts(moved, ep, lists)
    by_codes = load_authors_texts(moved, ep, SEEN + UNSEEN)
    assert by_files.codes == by_folder.codes == by_codes.codes == tuple(SEEN + UNSEEN)
    # The recipe form: model.kwargs.class_texts = {texts, phrases, classes}.
    mapped = resolve_class_texts({"texts": str(moved), "phrases": str(ep), "classes": [str(lists)]})
    assert mapped.codes == by_files.codes and mapped.texts == by_files.texts


def test_authors_format_errors_name_the_file(tmp_path):
    de = _authors_layout(tmp_path)
    (de.with_name("toy_ep.txt")).write_text("\n".join(PHRASES[:4]))
    with pytest.raises(DataError, match=r"toy_ep.txt: 4 short phrases for 5 classes \(.*seen.txt \+ .*unseen.txt\)"):
        load_class_texts(de)
    lonely = tmp_path / "other_de.txt"
    lonely.write_text("a description\n")
    (tmp_path / "other_ep.txt").write_text("a phrase\n")
    with pytest.raises(DataError, match=r"other_de.txt: no class lists \(seen.txt and unseen.txt\)"):
        load_class_texts(lonely)
    with pytest.raises(DataError, match=r"class_texts: expected \{texts:"):
        resolve_class_texts({"descriptions": str(de)})


def test_sewerml_set_without_class_lists_uses_sfrnets_split_order(tmp_path):
    codes = [*ZS_SEEN, *ZS_UNSEEN]
    (tmp_path / "sewerml_de.txt").write_text("\n".join(f"A sewer image showing {c}." for c in codes))
    (tmp_path / "sewerml_ep.txt").write_text("\n".join(f"defect {c}" for c in codes))
    texts = load_class_texts(tmp_path / "sewerml_de.txt")
    assert texts.codes == tuple(codes) and texts.texts[12] == "A sewer image showing PB."


def test_model_runs_on_the_authors_texts(tmp_path):
    de = _authors_layout(tmp_path)
    torch.manual_seed(0)
    model = create_model("sfr-net-tiny", class_texts=str(de)).eval()
    assert model.class_texts.codes == tuple(SEEN + UNSEEN) and model.adjacency.shape == (5, 5)
    assert model.cfg.classes == tuple(SEEN + UNSEEN)
    assert model(torch.zeros(2, 3, 64, 64)).shape == (2, 5)


# ---------------------------------------------------------------------------------------------- CLIP weights

def test_sfrnet_loads_clip_weights_by_default_and_says_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("EDGESEWER_CLIP_WEIGHTS", raising=False)
    with pytest.raises(ModelNotFound) as info:
        create_model("sfr-net")  # pretrained=True is the default
    message = str(info.value)
    assert "\n" not in message
    assert str(tmp_path / "hub" / "models--timm--vit_base_patch16_clip_224.openai") in message
    assert (f"`hf download timm/vit_base_patch16_clip_224.openai open_clip_model.safetensors "
            f"--cache-dir {tmp_path / 'hub'}`") in message
    # The tiny test CLIP has no published weights and stays random by default.
    assert create_model("sfr-net-tiny").cfg.extra["pretrained"] is None


def test_cached_weights_are_found_in_the_hub_layout(tmp_path, monkeypatch):
    monkeypatch.delenv("EDGESEWER_CLIP_WEIGHTS", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    cache = clip_cache_dir()
    assert cache == tmp_path / "hf" / "hub"
    spec = CLIP_ARCHS["ViT-B-16"]
    assert cached_clip_weights(spec) is None
    repo = cache / "models--timm--vit_base_patch16_clip_224.openai"
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    (snapshot / "open_clip_pytorch_model.bin").write_bytes(b"x")
    assert cached_clip_weights(spec) == snapshot / "open_clip_pytorch_model.bin"
    monkeypatch.setenv("EDGESEWER_CLIP_WEIGHTS", str(tmp_path / "missing.safetensors"))
    with pytest.raises(ModelNotFound, match="EDGESEWER_CLIP_WEIGHTS=.*missing.safetensors: no such file"):
        cached_clip_weights(spec)


def test_parameter_count_of_sfrnet_needs_no_weights(monkeypatch, tmp_path):
    from edgesewer.cli.models import count_parameters

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # Built on the meta device: nothing to load weights into, so nothing is looked for.
    assert count_parameters("sfr-net") > 150_000_000


# ---------------------------------------------------------------------------------------------- MEF ablation

def test_mef_local_path_can_be_switched_off():
    torch.manual_seed(0)
    full = create_model("sfr-net-tiny").eval()
    torch.manual_seed(0)
    ablated = create_model("sfr-net-tiny", mef_local=False).eval()
    assert not any(n.startswith("mef.") for n, _ in ablated.named_parameters())
    assert ablated.cfg.extra["mef_local"] is False and full.cfg.extra["mef_local"] is True
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        tokens = torch.nn.functional.normalize(ablated.backbone.image_tokens(images), dim=-1)
        text = torch.nn.functional.normalize(ablated.class_embeddings(), dim=-1)
        expected = ablated.gcn(tokens[:, 0] @ text.t(), ablated.adjacency)  # global cosine + GCN only
        torch.testing.assert_close(ablated(images), expected)
        assert not torch.allclose(full(images), ablated(images))


def test_mef_switch_flows_from_the_recipe_into_the_checkpoint_kwargs():
    from edgesewer.train.recipe import recipe_from_dict
    from edgesewer.train.zeroshot import build_zeroshot_model

    recipe = recipe_from_dict({"model": {"name": "sfr-net-tiny", "kwargs": {"mef_local": False,
                                                                            "graph_threshold": 0.9}}}, "r")
    model, cfg, arch_kw = build_zeroshot_model(recipe)
    assert model.mef.local is False and model.graph_threshold == 0.9
    assert arch_kw["mef_local"] is False and cfg.extra["mef_local"] is False
    rebuilt = create_model("sfr-net-tiny", **arch_kw)  # what export does with a checkpoint's model_kwargs
    rebuilt.load_state_dict(model.state_dict())


def test_recipe_sets_one_factory_argument_from_the_command_line():
    from edgesewer.train.recipe import load_recipe

    recipe = load_recipe("sfr-net", overrides=["model.kwargs.mef_local=false",
                                               "model.kwargs.class_texts=SFR-Net/datasets/text/sewerml_de.txt"])
    assert recipe.model.pretrained is True  # the shipped recipe trains on CLIP's weights
    assert recipe.model.kwargs == {"mef_local": False, "graph_threshold": 0.85,
                                   "class_texts": "SFR-Net/datasets/text/sewerml_de.txt"}
