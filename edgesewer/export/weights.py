"""Which weights an export uses: an explicit checkpoint, the newest one under runs/, or `random`.

`random` builds an untrained model (speed measurements only); the sidecar marks it and accuracy
reports refuse it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from edgesewer.errors import DataError, ModelNotFound
from edgesewer.modelcfg import ModelCfg

RANDOM = "random"


@dataclass
class LoadedModel:
    """A torch model in eval mode plus everything export needs to know about it."""

    model: object  # torch.nn.Module; typed loosely so this module imports without torch
    cfg: ModelCfg
    weights: str  # checkpoint path or "random"

    @property
    def random_weights(self) -> bool:
        return self.weights == RANDOM


def newest_checkpoint(model: str, runs_dir: str | Path = "runs") -> Path:
    """`runs/<model>/<run>/best.pt` with the latest modification time; DataError naming the train command."""
    folder = Path(runs_dir) / model
    found = sorted(folder.glob("*/best.pt"), key=lambda p: p.stat().st_mtime) if folder.is_dir() else []
    if not found:
        raise DataError(
            f"no checkpoint for {model} under {folder}/*/best.pt; train one with "
            f"`edgesewer train {model} --data DIR`, or pass --weights random for a speed-only export"
        )
    return found[-1]


def load_for_export(
    model: str,
    weights: str | Path | None = None,
    imgsz: int | None = None,
    runs_dir: str | Path = "runs",
    frames: int | None = None,
) -> LoadedModel:
    """Build `model` with the requested weights, in eval mode, on the CPU.

    Args:
        model: registered model name (`vit-t`, `scnet`, ...).
        weights: a checkpoint path, "random", or None for the newest checkpoint under `runs_dir`.
        imgsz: input side; None keeps the checkpoint's (or the registered) size.
        frames: frame-stack video models (video-swin3d-b) only: frames per input; None keeps the
            checkpoint's (or the registered 32). Swin's weights do not depend on it.

    Raises:
        ModelNotFound: unknown model, or a checkpoint trained for another model.
        DataError: no checkpoint found, or an unreadable one.
    """
    from edgesewer.models import create_model, get_entry

    entry = get_entry(model)  # ModelNotFound with "did you mean" for a typo
    if imgsz:
        _check_grid(entry.cfg, int(imgsz))
    if frames is not None and entry.cfg.extra.get("input_layout") != "BTCHW":
        raise DataError(f"--frames: {model} takes single images; it applies to frame-stack video models "
                        "(video-swin3d-b)")
    if frames is not None and frames < 1:
        raise DataError(f"--frames must be >= 1, got {frames}")
    if weights is None:
        weights = newest_checkpoint(model, runs_dir)
    # A checkpoint carries every weight and `random` wants none: a zero-shot model (sfr-net loads
    # CLIP's published weights by default) is built without them.
    no_download = {"pretrained": False} if entry.cfg.task == "zeroshot" else {}
    forced = {**no_download, **({"frames": int(frames)} if frames is not None else {})}  # win over the checkpoint's
    if str(weights) == RANDOM:
        net = _build(create_model, model, forced, imgsz)
        cfg = getattr(net, "cfg", entry.cfg)
        label = RANDOM
    else:
        from edgesewer.train.checkpoint import load_checkpoint

        ckpt = load_checkpoint(weights, expect_model=model)
        cfg = ModelCfg.from_dict(ckpt["model_cfg"])
        net = _build(create_model, model, {**(ckpt.get("model_kwargs") or {}), **forced}, imgsz)
        try:
            net.load_state_dict(ckpt["model"])
        except RuntimeError as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            hint = f"; --imgsz {imgsz} differs from its {cfg.input_size}" if imgsz and imgsz != cfg.input_size else ""
            raise ModelNotFound(f"{weights}: weights do not fit {model} ({first}){hint}") from None
        label = str(weights)
    if imgsz:
        cfg = _resized_cfg(cfg, int(imgsz))
    if frames is not None:
        cfg = dataclasses.replace(cfg, extra={**cfg.extra, "frames": int(frames)})
    net.eval()
    return LoadedModel(model=net, cfg=cfg, weights=label)


def _check_grid(cfg: ModelCfg, imgsz: int) -> None:
    grid = int(cfg.extra.get("grid") or 1)
    if imgsz % grid:
        raise DataError(f"--imgsz {imgsz}: {cfg.name} tiles {grid} x {grid} frames; needs a multiple of {grid}")


def _resized_cfg(cfg: ModelCfg, imgsz: int) -> ModelCfg:
    """The cfg at another input side; the tile (what the runtime resizes frames to) follows it."""
    extra = dict(cfg.extra)
    if extra.get("grid"):
        extra["tile"] = imgsz // int(extra["grid"])
    elif extra.get("input_layout") == "BTCHW":  # a frame stack's frames are the input side
        extra["tile"] = imgsz
    return dataclasses.replace(cfg, input_size=imgsz, extra=extra)


def _build(create_model, model: str, kwargs: dict, imgsz: int | None):
    """Create the network, handing `img_size` to factories that take it.

    ViTs bake the patch grid into the position embedding, so the size must reach the factory;
    convolutional factories either ignore it or do not accept it (then it is left out).
    """
    if imgsz:
        kwargs = {k: v for k, v in kwargs.items() if k != "tile_size"}  # a super-image's tile follows the size
        try:
            return create_model(model, **{**kwargs, "img_size": int(imgsz)})
        except TypeError as exc:
            if "img_size" not in str(exc):
                raise
    return create_model(model, **kwargs)


def check_input_size(cfg: ModelCfg, imgsz: int) -> None:
    """Convolutional encoders halve the size five times: refuse sizes they cannot round-trip."""
    if cfg.task == "segment" and imgsz % 32:
        raise DataError(f"--imgsz {imgsz}: {cfg.name} needs a multiple of 32")
