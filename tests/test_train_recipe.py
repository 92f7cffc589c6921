"""Recipes: the shipped files carry the papers' numbers; dotted overrides; one-line errors."""

import pytest
import yaml

from edgesewer.errors import DataError
from edgesewer.train.recipe import (apply_overrides, load_recipe, recipe_from_dict, recipes_dir, save_recipe)

SHIPPED = ["vit-t", "vit-s", "vit-t-dino", "vit-s-dino", "q2l-r101", "ma-q2l-r101"]


@pytest.mark.parametrize("model", SHIPPED)
def test_every_documented_model_has_a_recipe(model):
    recipe = load_recipe(model)
    assert recipe.model.name == model and recipe.stage == "train"
    assert (recipes_dir() / f"{model}.yaml").is_file()


@pytest.mark.parametrize("model", ["vit-t", "vit-s", "vit-t-dino", "vit-s-dino"])
def test_vit_finetune_recipes_hold_the_dino_ssl_numbers(model):
    r = load_recipe(model)
    assert (r.optim.name, r.optim.lr, r.optim.scale_lr) == ("adamw", 5e-4, True)
    assert (r.train.epochs, r.optim.schedule, r.optim.milestones, r.optim.gamma) == (45, "multistep", [15, 35], 0.1)
    assert r.loss.name == "ciw_bce" and r.model.img_size == 224
    a = r.augment
    assert (a.name, a.rotation, a.erasing_scale, a.erasing_ratio) == ("finetune", 5.0, [0.01, 0.05], [0.1, 1.0])


@pytest.mark.parametrize("model", ["vit-t-dino", "vit-s-dino"])
def test_dino_pretrain_recipes_hold_the_paper_numbers(model):
    r = load_recipe(model, stage="pretrain")
    d = r.dino
    assert r.stage == "pretrain" and r.train.epochs == 35
    assert (d.student_temp, d.warmup_teacher_temp, d.teacher_temp, d.center_momentum) == (0.1, 0.04, 0.07, 0.9)
    assert (d.momentum_teacher, d.momentum_teacher_final) == (0.996, 0.999)
    assert (d.lr, d.warmup_epochs, d.warmup_lr, d.min_lr) == (5e-5, 10, 3e-5, 1e-6)
    assert (d.weight_decay, d.weight_decay_end, d.freeze_last_layer) == (0.04, 0.4, 1)
    assert (d.out_dim, d.norm_last_layer, d.crop_scale) == (32768, True, [0.5, 1.0])


@pytest.mark.parametrize("model,alpha", [("q2l-r101", 1.0), ("ma-q2l-r101", 2.0)])
def test_q2l_recipes_follow_the_released_configuration(model, alpha):
    r = load_recipe(model)
    assert (r.model.img_size, r.model.pretrained) == (448, True)
    assert (r.optim.name, r.optim.lr, r.optim.weight_decay, r.optim.schedule, r.optim.pct_start) == \
        ("adam", 1e-5, 1e-2, "onecycle", 0.2)
    assert (r.train.batch_size, r.train.epochs, r.train.ema_decay, r.train.early_stop, r.train.monitor) == \
        (16, 40, 0.9997, 8, "mAP")
    assert (r.loss.name, r.loss.gamma_neg, r.loss.gamma_pos, r.loss.clip, r.loss.eps) == ("asl", 2.0, 0.0, 0.0, 1e-5)
    assert r.loss.bottleneck_alpha == alpha and r.augment.name == "randaugment"


def test_dotted_overrides_are_typed_yaml_values():
    r = load_recipe("vit-t", overrides=["train.epochs=3", "optim.lr=1e-4", "optim.milestones=[2, 4]",
                                        "train.ema_decay=null", "data.fraction=0.1", "train.amp=false"])
    assert r.train.epochs == 3 and isinstance(r.train.epochs, int)
    assert r.optim.lr == 1e-4 and r.optim.milestones == [2, 4]
    assert r.train.ema_decay is None and r.data.fraction == 0.1 and r.train.amp is False


@pytest.mark.parametrize("override,message", [
    ("train.epoch=3", r"--set train.epoch=3: unknown setting train.epoch; did you mean train.epochs\?"),
    ("trian.epochs=3", r"--set trian.epochs=3: the key must be <section>.<setting>"),
    ("epochs", r"--set epochs: expected section.key=value"),
    ("train.epochs=many", r"vit-t.yaml: train.epochs: expected a number, got 'many'"),
    ("train.epochs=2.5", r"train.epochs: expected a whole number"),
    ("train.amp=3", r"train.amp: expected true or false, got 3"),
])
def test_bad_overrides_are_one_line_errors(override, message):
    with pytest.raises(DataError, match=message):
        load_recipe("vit-t", overrides=[override])


def test_bad_recipe_files_name_the_file_and_key(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("model:\n  name: vit-t\ntrain:\n  epochz: 3\n")
    with pytest.raises(DataError, match=r"mine.yaml: train.epochz: unknown setting; did you mean train.epochs\?"):
        load_recipe(path=path)
    path.write_text("model: {name: vit-t}\ntrian: {}\n")
    with pytest.raises(DataError, match=r"mine.yaml: unknown section 'trian'; did you mean train\?"):
        load_recipe(path=path)
    path.write_text("model: {name: vit-t\n")
    with pytest.raises(DataError, match=r"mine.yaml, line \d+: not valid YAML"):
        load_recipe(path=path)
    path.write_text("model: {name: vit-t}\n")
    with pytest.raises(DataError, match="mine.yaml: recipe is for model vit-t, not vit-s"):
        load_recipe("vit-s", path=path)
    with pytest.raises(DataError, match="is a train recipe; `edgesewer pretrain` needs a pretrain recipe"):
        load_recipe("vit-t", path=path, stage="pretrain")
    with pytest.raises(DataError, match="no train recipe for scnet-large"):
        load_recipe("scnet-large")
    with pytest.raises(DataError, match="nothing.yaml: recipe file not found"):
        load_recipe(path=tmp_path / "nothing.yaml")


def test_resolved_recipe_round_trips(tmp_path):
    r = load_recipe("ma-q2l-r101", overrides=["model.img_size=128", "task.note=kept"])
    path = save_recipe(r, tmp_path / "recipe.yaml")
    again = load_recipe("ma-q2l-r101", path=path)
    assert again.to_dict() | {"source": ""} == r.to_dict() | {"source": ""}
    assert again.model.img_size == 128 and again.task == {"note": "kept"}
    assert yaml.safe_load(path.read_text())["loss"]["bottleneck_alpha"] == 2.0


def test_overrides_do_not_touch_the_input_dict():
    raw = {"train": {"epochs": 5}}
    apply_overrides(raw, ["train.epochs=1"])
    assert raw == {"train": {"epochs": 5}}
    assert recipe_from_dict(apply_overrides(raw, ["train.epochs=1"])).train.epochs == 1
