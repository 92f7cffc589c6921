"""DINO self-distillation for ViT backbones on unlabelled sewer images (DINO-SSL paper recipe).

Pieces the pretraining loop needs: the projection head, the student/teacher pair with its EMA
update, the loss with centering and the teacher-temperature warm-up, the per-step schedules
(lr, weight decay, teacher momentum), the two-global-view augmentation and RankMe.
Two global views only (no multi-crop), so the loss has exactly the two cross-view terms.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.transforms import v2

from edgesewer.modelcfg import SEWERML_MEAN, SEWERML_STD


class DINOHead(nn.Module):
    """MLP in -> 2048 -> 2048 -> 256 (GELU), L2-normalise, weight-normalised linear to K prototypes."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int = 32768,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
        norm_last_layer: bool = True,
    ) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(in_dim, hidden_dim),
            nn.GELU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.GELU(),
            nn.Linear(hidden_dim, bottleneck_dim),
        )
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        self.last_layer = nn.utils.parametrizations.weight_norm(nn.Linear(bottleneck_dim, out_dim, bias=False))
        magnitude = self.last_layer.parametrizations.weight.original0  # "g" of weight_norm, [out_dim, 1]
        with torch.no_grad():
            magnitude.fill_(1.0)
        # A fixed unit norm per prototype stabilises training (DINO's norm_last_layer).
        magnitude.requires_grad_(not norm_last_layer)

    def forward(self, x: Tensor) -> Tensor:
        x = F.normalize(self.mlp(x), dim=-1, p=2)
        return self.last_layer(x)


class BackboneWithHead(nn.Module):
    """`head(backbone(x))`: one branch (student or teacher) of the DINO pair."""

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.backbone(x))


class DINOWrapper(nn.Module):
    """Student and EMA teacher. The teacher never receives gradients (requires_grad False).

    `forward([view1, view2])` -> (student logits `[2B, K]`, teacher logits `[2B, K]`), view-major
    (rows 0..B-1 are view 1). The teacher always runs in eval mode: DINO builds it without
    drop-path, which is what eval mode gives a copy of a drop-path student.
    """

    def __init__(self, backbone: nn.Module, embed_dim: int, out_dim: int = 32768, norm_last_layer: bool = True) -> None:
        super().__init__()
        self.student = BackboneWithHead(backbone, DINOHead(embed_dim, out_dim, norm_last_layer=norm_last_layer))
        self.teacher = copy.deepcopy(self.student)
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.teacher.eval()

    def train(self, mode: bool = True) -> "DINOWrapper":
        super().train(mode)
        self.teacher.eval()
        return self

    def forward(self, views: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        batch = torch.cat(list(views), dim=0)
        student_out = self.student(batch)
        with torch.no_grad():
            teacher_out = self.teacher(batch)
        return student_out, teacher_out

    @torch.no_grad()
    def update_teacher(self, momentum: float) -> None:
        """teacher <- m * teacher + (1 - m) * student, parameters only (as DINO); buffers copied."""
        for t, s in zip(self.teacher.parameters(), self.student.parameters()):
            t.mul_(momentum).add_(s.detach(), alpha=1.0 - momentum)
        for t, s in zip(self.teacher.buffers(), self.student.buffers()):
            t.copy_(s)

    def backbone_state_dict(self, which: str = "teacher") -> dict[str, Tensor]:
        """Backbone weights to fine-tune from (DINO evaluates the teacher)."""
        branch = self.teacher if which == "teacher" else self.student
        return {k: v.detach().clone() for k, v in branch.backbone.state_dict().items()}


def build_dino(
    name: str = "vit-t",
    img_size: int = 224,
    out_dim: int = 32768,
    norm_last_layer: bool = True,
    drop_path_rate: float = 0.1,
) -> DINOWrapper:
    """DINO pair for a registered ViT name (`vit-t`, `vit-s` or their `-dino` aliases)."""
    from edgesewer.models.vit import create_vit_backbone

    backbone = create_vit_backbone(name, img_size=img_size, drop_path_rate=drop_path_rate)
    return DINOWrapper(backbone, backbone.embed_dim, out_dim=out_dim, norm_last_layer=norm_last_layer)


def teacher_temp_schedule(
    epochs: int, warmup_epochs: int = 30, start: float = 0.04, end: float = 0.07
) -> np.ndarray:
    """Teacher temperature per epoch: linear start -> end over `warmup_epochs` (end reached at the
    last warm-up epoch, as DINO's linspace), then constant."""
    warmup_epochs = min(warmup_epochs, epochs)
    return np.concatenate((np.linspace(start, end, warmup_epochs), np.full(epochs - warmup_epochs, end)))


class DINOLoss(nn.Module):
    """Cross-entropy between sharpened, centred teacher and student distributions, cross-view only.

    `loss = 0.5 * (H(t1, s2) + H(t2, s1))` with `H(t, s) = mean_b sum_k -softmax((t-c)/tau_t) log_softmax(s/tau_s)`.
    The centre is updated *after* the loss, from the teacher outputs of both views:
    `c <- m c + (1 - m) mean(teacher)` (all-reduced under DDP).
    """

    def __init__(
        self,
        out_dim: int,
        epochs: int,
        warmup_teacher_temp: float = 0.04,
        teacher_temp: float = 0.07,
        warmup_teacher_temp_epochs: int = 30,
        student_temp: float = 0.1,
        center_momentum: float = 0.9,
    ) -> None:
        super().__init__()
        self.student_temp = student_temp
        self.center_momentum = center_momentum
        self.register_buffer("center", torch.zeros(1, out_dim))
        self.teacher_temps = teacher_temp_schedule(
            epochs, warmup_teacher_temp_epochs, warmup_teacher_temp, teacher_temp
        )

    def teacher_temp(self, epoch: int) -> float:
        return float(self.teacher_temps[min(epoch, len(self.teacher_temps) - 1)])

    def forward(self, student_out: Tensor, teacher_out: Tensor, epoch: int) -> Tensor:
        student_logp = F.log_softmax(student_out / self.student_temp, dim=-1).chunk(2)
        teacher_p = F.softmax((teacher_out - self.center) / self.teacher_temp(epoch), dim=-1).detach().chunk(2)
        loss = 0.0
        for t_idx, s_idx in ((0, 1), (1, 0)):
            loss = loss + torch.sum(-teacher_p[t_idx] * student_logp[s_idx], dim=-1).mean()
        self.update_center(teacher_out)
        return loss / 2

    @torch.no_grad()
    def update_center(self, teacher_out: Tensor) -> None:
        batch_center = teacher_out.sum(dim=0, keepdim=True)
        count = torch.tensor(float(teacher_out.shape[0]), device=teacher_out.device)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(batch_center)
            dist.all_reduce(count)
        batch_center = batch_center / count
        self.center.mul_(self.center_momentum).add_(batch_center, alpha=1 - self.center_momentum)


def cosine_schedule(
    base: float, final: float, total_steps: int, warmup_steps: int = 0, warmup_start: float = 0.0
) -> np.ndarray:
    """Per-step values: linear warm-up `warmup_start -> base` over `warmup_steps` (exclusive of
    base), then a half cosine `base -> final` that reaches `final` exactly at the last step."""
    if total_steps <= 0:
        raise ValueError("total_steps must be positive")
    warmup_steps = min(warmup_steps, total_steps)
    warmup = warmup_start + (base - warmup_start) * np.arange(warmup_steps) / max(warmup_steps, 1)
    n = total_steps - warmup_steps
    t = np.arange(n) / max(n - 1, 1)
    cosine = final + 0.5 * (base - final) * (1 + np.cos(math.pi * t))
    return np.concatenate((warmup, cosine))


def momentum_schedule(epochs: int, steps_per_epoch: int, base: float = 0.996, final: float = 0.999) -> np.ndarray:
    """Teacher EMA momentum per step: cosine 0.996 -> 0.999 (the paper's values)."""
    return cosine_schedule(base, final, epochs * steps_per_epoch)


def lr_schedule(
    batch_size: int,
    epochs: int,
    steps_per_epoch: int,
    base_lr: float = 5e-5,
    warmup_epochs: int = 10,
    warmup_start: float = 3e-5,
    final_lr: float = 1e-6,
) -> np.ndarray:
    """AdamW lr per step: warm-up from 3e-5 over 10 epochs to `5e-5 * batch / 256`, cosine to 1e-6.

    As in the paper; note that for batches below ~154 the peak is under the warm-up start.
    """
    peak = base_lr * batch_size / 256
    return cosine_schedule(peak, final_lr, epochs * steps_per_epoch, warmup_epochs * steps_per_epoch, warmup_start)


def weight_decay_schedule(epochs: int, steps_per_epoch: int, base: float = 0.04, final: float = 0.4) -> np.ndarray:
    """Weight decay per step: cosine 0.04 -> 0.4 (applied to the regularised group only)."""
    return cosine_schedule(base, final, epochs * steps_per_epoch)


def param_groups(module: nn.Module) -> list[dict[str, Any]]:
    """[regularised, not regularised]: biases and 1-D parameters (norms, tokens) get no weight decay."""
    decay, no_decay = [], []
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if name.endswith(".bias") or p.ndim == 1 else decay).append(p)
    return [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]


def cancel_last_layer_grad(model: nn.Module, epoch: int, freeze_last_layer_epochs: int = 1) -> None:
    """Drop the prototype layer's gradients during the first epoch(s): DINO's stabiliser."""
    if epoch >= freeze_last_layer_epochs:
        return
    for name, p in model.named_parameters():
        if "last_layer" in name:
            p.grad = None


class TwoGlobalViews:
    """Two independently augmented 224-px views of one image (the paper's global crops).

    RandomResizedCrop scale 0.5-1.0 bicubic, h-flip, colour jitter (0.4, 0.4, 0.2, 0.1; p 0.8),
    grayscale p 0.15, Gaussian blur p 0.3 (sigma 0.1-1), equalisation p 0.3 and, independently,
    solarisation p 0.3 (the paper: each with p 0.3, so both hit about 9 % of views), then Sewer-ML
    normalisation. Accepts an RGB uint8 HWC numpy array, a CHW uint8 tensor or a PIL image.
    `equalize` and `solarize` are exposed (RandomApply wrappers) so their rates can be checked.
    """

    def __init__(
        self,
        size: int = 224,
        scale: tuple[float, float] = (0.5, 1.0),
        mean: Sequence[float] = SEWERML_MEAN,
        std: Sequence[float] = SEWERML_STD,
        equalize_p: float = 0.3,
        solarize_p: float = 0.3,
    ) -> None:
        # Kernel covers +-3 sigma at the largest sigma (1.0).
        blur = v2.GaussianBlur(kernel_size=7, sigma=(0.1, 1.0))
        self.equalize = v2.RandomApply([v2.RandomEqualize(p=1.0)], p=equalize_p)
        self.solarize = v2.RandomApply([v2.RandomSolarize(128, p=1.0)], p=solarize_p)
        self.transform = v2.Compose([
            v2.ToImage(),
            v2.RandomResizedCrop(size, scale=scale, interpolation=v2.InterpolationMode.BICUBIC, antialias=True),
            v2.RandomHorizontalFlip(p=0.5),
            v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8),
            v2.RandomGrayscale(p=0.15),
            v2.RandomApply([blur], p=0.3),
            self.equalize,
            self.solarize,
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean=list(mean), std=list(std)),
        ])

    def __call__(self, image: Any) -> list[Tensor]:
        if isinstance(image, np.ndarray):
            if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
                raise ValueError(f"expected an RGB uint8 HxWx3 array, got {image.dtype} {image.shape}")
            image = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
        return [self.transform(image), self.transform(image)]


@torch.no_grad()
def rankme(embeddings: Tensor, eps: float = 1e-7) -> float:
    """RankMe effective rank: exp(entropy of the L1-normalised singular values) of `[N, D]` embeddings.

    Equals r for a matrix with r equal non-zero singular values; collapse shows as a value near 1.
    """
    sv = torch.linalg.svdvals(embeddings.detach().double())
    p = sv / sv.sum() + eps
    return float(torch.exp(-(p * p.log()).sum()))
