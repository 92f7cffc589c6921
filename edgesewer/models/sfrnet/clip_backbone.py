"""The frozen CLIP towers of SFR-Net (open_clip), with RS adapters in every block of both encoders.

`ClipBackbone.image_tokens` returns all 1 + N tokens of the image tower after `ln_post` and the
projection (SFR-Net uses the class token for the global score and the patch tokens for the local
one); `encode_text` is CLIP's usual end-of-text pooling plus projection.

Architectures: `ViT-B-16-quickgelu` is OpenAI's CLIP ViT-B/16 (QuickGELU, as it was trained);
`tiny` is a small configuration of the same code that trains on a CPU in tests.

Weights (`pretrained=True`): OpenAI's ViT-B/16 as open_clip publishes it on the Hugging Face hub
(`timm/vit_base_patch16_clip_224.openai`), read from the hub cache (`HF_HUB_CACHE`, else
`$HF_HOME/hub`, else `~/.cache/huggingface/hub`) or from the file `EDGESEWER_CLIP_WEIGHTS` names.
When they are not there, one download is tried unless `HF_HUB_OFFLINE` is set; failing that,
`ModelNotFound` says in one line where the weights were looked for and the command that fetches
them. `pretrained=False` builds randomly initialised towers and touches no file or network.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from edgesewer.errors import DataError, ModelNotFound
from edgesewer.models.sfrnet.adapters import ADAPTER_KEY, inject_adapters

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
CONTEXT_LENGTH = 77


@dataclass(frozen=True)
class ClipArch:
    """Enough of an open_clip model config to build the towers without downloading anything."""

    embed_dim: int
    image_size: int
    patch_size: int
    vision_width: int
    vision_layers: int
    vision_heads: int
    text_width: int
    text_layers: int
    text_heads: int
    open_clip_name: str | None = None  # built-in open_clip name, when weights exist for it
    pretrained_tag: str | None = None
    hf_repo: str | None = None  # where open_clip's hub copy of those weights lives

    def open_clip_cfg(self) -> dict:
        return {
            "embed_dim": self.embed_dim,
            "quick_gelu": True,
            "vision_cfg": {"image_size": self.image_size, "layers": self.vision_layers, "width": self.vision_width,
                           "patch_size": self.patch_size, "head_width": self.vision_width // self.vision_heads},
            # The full BPE vocabulary keeps the real tokenizer usable with the small towers too.
            "text_cfg": {"context_length": CONTEXT_LENGTH, "vocab_size": 49408, "width": self.text_width,
                         "heads": self.text_heads, "layers": self.text_layers},
        }


CLIP_ARCHS: dict[str, ClipArch] = {
    "ViT-B-16": ClipArch(512, 224, 16, 768, 12, 12, 512, 12, 8, "ViT-B-16-quickgelu", "openai",
                         "timm/vit_base_patch16_clip_224.openai"),
    # Same code, CPU-sized: 64 px images (4 x 4 patches), two blocks per tower.
    "tiny": ClipArch(64, 64, 16, 64, 2, 2, 64, 2, 2),
}


CLIP_WEIGHTS_ENV = "EDGESEWER_CLIP_WEIGHTS"  # a weights file to use instead of the hub cache
HUB_WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")  # open_clip's names, preferred first


def clip_cache_dir() -> Path:
    """The Hugging Face hub cache, resolved now from the environment (as huggingface_hub does)."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def download_command(spec: ClipArch, cache: Path | None = None) -> str:
    """The shell command that puts `spec`'s weights into the hub cache."""
    cache = cache if cache is not None else clip_cache_dir()
    return f"hf download {spec.hf_repo} {HUB_WEIGHT_FILES[0]} --cache-dir {cache}"


def cached_clip_weights(spec: ClipArch, cache: Path | None = None) -> Path | None:
    """The weights file of `spec` in the hub cache (or `EDGESEWER_CLIP_WEIGHTS`), None when absent."""
    override = os.environ.get(CLIP_WEIGHTS_ENV)
    if override:
        path = Path(override).expanduser()
        if not path.is_file():
            raise ModelNotFound(f"{CLIP_WEIGHTS_ENV}={override}: no such file")
        return path
    if spec.hf_repo is None:
        return None
    from huggingface_hub import try_to_load_from_cache

    cache = cache if cache is not None else clip_cache_dir()
    for filename in HUB_WEIGHT_FILES:
        found = try_to_load_from_cache(spec.hf_repo, filename, cache_dir=str(cache))
        if isinstance(found, str) and Path(found).is_file():
            return Path(found)
    return None


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _pretrained_clip(arch: str, spec: ClipArch):
    """open_clip model with OpenAI's weights: from the cache, else one download unless offline."""
    import open_clip

    if spec.open_clip_name is None:
        raise ModelNotFound(f"CLIP architecture {arch!r} has no pretrained weights; use ViT-B-16")
    cache = clip_cache_dir()
    local = cached_clip_weights(spec, cache)
    missing = (f"CLIP {arch} weights ({spec.pretrained_tag}) are not in {cache / ('models--' + spec.hf_repo.replace('/', '--'))}"
               if spec.hf_repo else f"CLIP {arch} weights are not available")
    hint = f"download them once with `{download_command(spec, cache)}` (or set model.pretrained=false for a plumbing-only run)"
    if local is not None:
        try:
            return open_clip.create_model(spec.open_clip_name, pretrained=str(local))
        except Exception as exc:  # noqa: BLE001 - a truncated or foreign file: say which one, on one line
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ModelNotFound(f"{local}: cannot load CLIP {arch} weights ({first}); {hint}") from None
    if _offline():
        raise ModelNotFound(f"{missing} and HF_HUB_OFFLINE is set; {hint}")
    try:
        return open_clip.create_model(spec.open_clip_name, pretrained=spec.pretrained_tag, cache_dir=str(cache))
    except Exception as exc:  # noqa: BLE001 - no network, proxy, hub error: all end in the same advice
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelNotFound(f"{missing} and the download failed ({first[:120]}); {hint}") from None


def build_clip(arch: str = "ViT-B-16", pretrained: bool = False) -> nn.Module:
    """An open_clip CLIP model (eval mode, float32) for `arch`; OpenAI weights only if `pretrained`."""
    import open_clip

    if arch not in CLIP_ARCHS:
        raise ModelNotFound(f"unknown CLIP architecture {arch!r}; choose from {', '.join(CLIP_ARCHS)}")
    spec = CLIP_ARCHS[arch]
    if pretrained:
        model = _pretrained_clip(arch, spec)
    else:
        cfg = spec.open_clip_cfg()
        model = open_clip.CLIP(cfg["embed_dim"], cfg["vision_cfg"], cfg["text_cfg"], quick_gelu=True)
    return model.float().eval()


class ClipTokenizer:
    """open_clip's BPE tokenizer (bundled vocabulary) that refuses texts longer than the context."""

    def __init__(self, context_length: int = CONTEXT_LENGTH) -> None:
        from open_clip.tokenizer import SimpleTokenizer

        self.context_length = context_length
        self._tok = SimpleTokenizer()

    def count(self, text: str) -> int:
        """Tokens of `text` including the start and end markers."""
        return len(self._tok.encode(text)) + 2

    def __call__(self, texts: Sequence[str], where: Sequence[str] | None = None) -> torch.Tensor:
        for i, text in enumerate(texts):
            n = self.count(text)
            if n > self.context_length:
                name = where[i] if where is not None else f"text {i}"
                raise DataError(f"{name}: {n} CLIP tokens, more than the {self.context_length} allowed; shorten it")
        return self._tok(list(texts), context_length=self.context_length)


class ClipBackbone(nn.Module):
    """Both CLIP towers, frozen, with an RS adapter beside every block's MLP."""

    def __init__(self, clip: nn.Module, bottleneck: int = 128, dropout: float = 0.1) -> None:
        super().__init__()
        self.clip = clip
        for p in clip.parameters():
            p.requires_grad_(False)
        visual_width = clip.visual.transformer.width
        text_width = clip.transformer.width
        self.visual_adapters = inject_adapters(clip.visual.transformer.resblocks, visual_width, bottleneck, dropout)
        self.text_adapters = inject_adapters(clip.transformer.resblocks, text_width, bottleneck, dropout)
        # Only adapters train inside CLIP (SFR-Net's rule: parameter name contains "adapter").
        for name, p in clip.named_parameters():
            p.requires_grad_(ADAPTER_KEY in name)

    @property
    def embed_dim(self) -> int:
        return int(self.clip.visual.output_dim)

    @property
    def image_size(self) -> int:
        return int(self.clip.visual.image_size[0])

    @property
    def num_patches(self) -> int:
        grid = self.clip.visual.grid_size
        return int(grid[0] * grid[1])

    def image_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> [B, 1 + N, D]: class token then patch tokens, after ln_post and the projection."""
        visual = self.clip.visual
        # open_clip's VisionTransformer.forward keeps only the pooled token, so the embedding steps are
        # spelled out here (public attributes only; its private helpers changed between releases).
        x = visual.conv1(images)
        x = x.flatten(2).transpose(1, 2)  # [B, N, width]
        cls = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + visual.positional_embedding.to(x.dtype)
        x = visual.ln_pre(visual.patch_dropout(x))
        x = visual.transformer(x)
        x = visual.ln_post(x)
        return x @ visual.proj

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """[C, 77] token ids -> [C, D] text embeddings (not normalised)."""
        return self.clip.encode_text(tokens)
