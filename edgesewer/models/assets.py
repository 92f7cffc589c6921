"""Weights shipped inside the package: small, made once by a documented command, for the demo and for
synthetic data only (they have never seen a real sewer). Each file has a .md beside it with the exact
command, seed, data and log that made it."""

from __future__ import annotations

from pathlib import Path

ASSETS_DIR = Path(__file__).resolve().parents[1] / "assets"

# ViT-T/16 at 64 px (fp16 state dict, timm key names, no head), pretrained on synthetic sewer stills, for
# `vit-t-dino` to fine-tune from in the demo (`model.backbone_ckpt`). Not shipped yet: a CPU cannot make a useful
# one (train/README.md); `benchmarks/synth_backbone.sh` makes it in minutes on a GPU.
SYNTH_BACKBONE = ASSETS_DIR / "vit-t-synth64.backbone.pt"


def write_backbone_asset(checkpoint: str | Path, out: str | Path, note: dict | None = None) -> Path:
    """Keep a trained ViT checkpoint's backbone as fp16 (head dropped): what the demo fine-tunes from.

    `out` then loads through `model.backbone_ckpt` like a DINO backbone (plain timm key names under
    `model`); `note` (plain values: command, seed, validation) travels with it under `meta`.
    """
    import torch

    from edgesewer.models.vit import extract_backbone_state
    from edgesewer.train.checkpoint import load_checkpoint

    ckpt = load_checkpoint(checkpoint)
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in extract_backbone_state(ckpt).items()}
    meta = {"from": Path(checkpoint).name, "model": ckpt["model_cfg"].get("name"),
            "input_size": ckpt["model_cfg"].get("input_size"),
            "validation": ckpt["model_cfg"].get("extra", {}).get("validation", {}), **(note or {})}
    out = Path(out)
    if out.resolve() == Path(checkpoint).resolve():
        raise ValueError(f"{out}: would overwrite its own source checkpoint")
    torch.save({"model": state, "meta": meta}, out)
    return out
