#!/usr/bin/env bash
# Make the demo's ViT-T backbone where compute is (issue 15): a GPU session, about 10 minutes on one H200.
#
#   bash benchmarks/synth_backbone.sh OUT_DIR [MINUTES]
#
# Supervised ViT-T/16 at 64 px with mimetic attention init on 100,000 synthetic sewer stills (seed 31: no image of
# the demo's test video), then the backbone (no head, fp16, ~11 MB) as OUT_DIR/vit-t-synth64.backbone.pt with the
# run's log and results beside it. Commit it as edgesewer/assets/vit-t-synth64.backbone.pt with a .md naming this
# command, and let `edgesewer demo` fine-tune vit-t-dino from it (SYNTH_BACKBONE in edgesewer/models/assets.py).
# Why not on a CPU: on 2 cores the same run reached stills val mAP 0.11 after 20 minutes and did not separate the
# test video's defect frames from the others (train/README.md, "ViT-T from scratch on a CPU").
set -euo pipefail
OUT=${1:?usage: synth_backbone.sh OUT_DIR [MINUTES]}
MINUTES=${2:-7}
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
WORKERS=$(nproc)
python -m edgesewer data synth --out /tmp/synth-stills --images 100000 --videos 0 --crack-images 0 --seed 31 \
  --workers "$WORKERS"
python -m edgesewer train vit-t --data /tmp/synth-stills/sewerml --imgsz 64 --batch 256 --workers "$WORKERS" \
  --device cuda --max-minutes "$MINUTES" --out "$OUT/run" \
  --set "model.kwargs={attn_init: mimetic}" --set optim.lr=1e-3 --set optim.scale_lr=false \
  --set optim.schedule=cosine --set optim.warmup_epochs=1 --set train.budget_schedule=true \
  --set train.epochs=200 --set train.early_stop=null --set train.monitor=mAP --set augment.erasing=0 \
  --set augment.rotation=0 --set augment.equalize=0 --set train.seed=0 2>&1 | tee "$OUT/train.log"
python - "$OUT" "$MINUTES" <<'PY'
import sys
from pathlib import Path
from edgesewer.models.assets import write_backbone_asset
out, minutes = Path(sys.argv[1]), sys.argv[2]
asset = write_backbone_asset(out / "run" / "best.pt", out / "vit-t-synth64.backbone.pt",
                             note={"command": f"bash benchmarks/synth_backbone.sh OUT {minutes}", "seed": 0,
                                   "data": "edgesewer data synth --images 100000 --seed 31 (stills)"})
print(f"backbone: {asset} ({asset.stat().st_size / 1e6:.1f} MB)")
PY
