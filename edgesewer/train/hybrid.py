"""Hybrid training: the supervised multi-label loss and the DINO loss on the same ViT at once.

Each labelled image gives two independently augmented views (the fine-tune augmentations: full
frame, so no crop can cut a defect out). The student ViT embeds both; its classifier head gets
the supervised loss on both views, and a DINO head gets the cross-view self-distillation loss
against an EMA teacher: `loss = supervised + hybrid_weight * dino`. Validation and the saved
best.pt use the classifier alone, so the result exports and evaluates like any fine-tuned ViT.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from edgesewer.data.preprocess import preprocess
from edgesewer.data.sewerml import SewerMLSplit
from edgesewer.data.torch_dataset import SewerMLDataset
from edgesewer.errors import ModelNotFound
from edgesewer.train.recipe import Recipe


class _PreLogits(nn.Module):
    """The classifier's trunk as a DINO backbone: image -> pre-logits CLS embedding (shares weights)."""

    def __init__(self, classifier: nn.Module):
        super().__init__()
        self.classifier = classifier

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier.forward_head(self.classifier.forward_features(x), pre_logits=True)


class HybridModel(nn.Module):
    """ViT classifier + DINO student/teacher heads; `forward(tensor)` is the plain classifier."""

    def __init__(self, classifier: nn.Module, recipe: Recipe):
        super().__init__()
        from edgesewer.models.dino import DINOLoss, DINOWrapper

        d = recipe.dino
        self.classifier = classifier
        self.dino = DINOWrapper(_PreLogits(classifier), classifier.num_features, d.out_dim, d.norm_last_layer)
        self.dino_loss = DINOLoss(d.out_dim, recipe.train.epochs, d.warmup_teacher_temp, d.teacher_temp,
                                  d.warmup_teacher_temp_epochs, d.student_temp, d.center_momentum)
        self.cfg = classifier.cfg

    def forward(self, x: Tensor | list[Tensor]) -> Tensor | dict[str, Tensor]:
        if isinstance(x, Tensor):
            return self.classifier(x)
        batch = torch.cat(list(x))
        embedding = self.dino.student.backbone(batch)
        with torch.no_grad():
            teacher = self.dino.teacher(batch)
        return {"logits": self.classifier.get_classifier()(embedding),
                "student": self.dino.student.head(embedding), "teacher": teacher}

    def classifier_state_dict(self) -> dict[str, Tensor]:
        return self.classifier.state_dict()


class TwoViewLabelled(SewerMLDataset):
    """([view1, view2], labels): two augmentations of one read of the image."""

    def __getitem__(self, i: int) -> tuple[list[torch.Tensor], torch.Tensor]:
        j, image = self._read(int(i))
        views = []
        for _ in range(2):
            augmented = self.augment(image) if self.augment is not None else image
            x = preprocess(augmented, self.size, self.mean, self.std, self.interpolation)[0]
            views.append(torch.from_numpy(x))
        return views, self._label(j)


def build_hybrid(recipe: Recipe, train_split: SewerMLSplit, val_split: SewerMLSplit) -> tuple[Any, ...]:
    """(model, model_cfg, arch_kwargs, loss_fn module, callbacks, train_set, val_set) for train_classifier."""
    from edgesewer.models.dino import cancel_last_layer_grad, momentum_schedule
    from edgesewer.train.classify import build_datasets, build_loss, build_model
    from edgesewer.train.transforms import build_augment

    classifier, model_cfg, arch_kw = build_model(recipe)
    if not hasattr(classifier, "forward_head"):
        raise ModelNotFound(f"hybrid training needs a ViT (vit-t, vit-s and their -dino variants), "
                            f"not {recipe.model.name}")
    model = HybridModel(classifier, recipe)
    _, val_set = build_datasets(recipe, train_split, val_split, model_cfg)
    train_set = TwoViewLabelled(train_split, model_cfg.input_size, model_cfg.mean, model_cfg.std,
                                augment=build_augment(recipe.augment, model_cfg.input_size, model_cfg.interpolation),
                                on_bad_image=recipe.data.on_bad_image, interpolation=model_cfg.interpolation)
    loss = HybridLoss(model, build_loss(recipe.loss, model_cfg.classes), recipe.train.hybrid_weight)
    state: dict[str, Any] = {}
    d = recipe.dino

    def before_step(trainer) -> None:
        if d.clip_grad > 0:
            for p in model.dino.student.head.parameters():
                if p.grad is not None:
                    nn.utils.clip_grad_norm_([p], d.clip_grad)
        cancel_last_layer_grad(model.dino.student, trainer.epoch, d.freeze_last_layer)

    def after_step(trainer) -> None:
        if "momentum" not in state:
            state["momentum"] = momentum_schedule(recipe.train.epochs, trainer.steps_per_epoch,
                                                  d.momentum_teacher, d.momentum_teacher_final)
        momentum = state["momentum"]
        model.dino.update_teacher(float(momentum[min(trainer.global_step - 1, len(momentum) - 1)]))

    def epoch_start(trainer) -> None:
        loss.epoch = trainer.epoch

    callbacks = {"on_before_optimizer_step": [before_step], "on_optimizer_step": [after_step],
                 "on_epoch_start": [epoch_start]}
    return model, model_cfg, arch_kw, loss, callbacks, train_set, val_set


class HybridLoss(nn.Module):
    """supervised(logits of both views) + weight * DINO(student, teacher); the centre lives in the model."""

    def __init__(self, model: HybridModel, supervised: nn.Module, weight: float):
        super().__init__()
        self.supervised = supervised
        self.weight = weight
        self.epoch = 0
        self._model = [model]  # a list, so the model is not registered as a submodule of the loss

    def forward(self, outputs: dict[str, Tensor], targets: Tensor) -> Tensor:
        sup = self.supervised(outputs["logits"], targets.repeat(2, 1))
        ssl = self._model[0].dino_loss(outputs["student"], outputs["teacher"], self.epoch)
        return sup + self.weight * ssl


def classifier_only(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """best.pt weights of a HybridModel reduced to the classifier's (what eval and export load)."""
    prefix = "classifier."
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}

