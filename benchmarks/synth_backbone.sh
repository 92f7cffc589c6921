#!/usr/bin/env bash
# Make the demo's ViT-T backbone where compute is (issue 15): a GPU session, about 10 minutes on one H200.
#
#   bash benchmarks/synth_backbone.sh OUT_DIR [MINUTES] [VIDEOS]
#   DEVICE=cpu bash benchmarks/synth_backbone.sh /tmp/sb 1 6     # a dry run of every step on a CPU
#
# Supervised ViT-T/16 at 64 px with mimetic attention init on the frames of VIDEOS synthetic inspection videos
# (default 200; seed 12: no frame of the demo's test video, which is seed 0, nor of its fine-tuning footage,
# seed 1), then the backbone (no head, fp16, ~11 MB) as OUT_DIR/vit-t-synth64.backbone.pt with the run's log and
# results beside it. Commit it as edgesewer/assets/vit-t-synth64.backbone.pt with a .md naming this command, and
# let `edgesewer demo` fine-tune vit-t-dino from it (SYNTH_BACKBONE in edgesewer/models/assets.py).
# Frames, not stills: a backbone pretrained on stills did not separate the test video's defect frames from the
# others after fine-tuning on frames (train/README.md, "ViT-T from scratch on a CPU").
# Why not on a CPU: on 2 cores ViT-T stayed at chance for 24 minutes on 24,000 such frames (same section).
set -euo pipefail
OUT=${1:?usage: synth_backbone.sh OUT_DIR [MINUTES] [VIDEOS]}
MINUTES=${2:-7}
VIDEOS=${3:-200}
DEVICE=${DEVICE:-cuda}
BATCH=${BATCH:-256}
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
WORKERS=$(nproc)
python -m edgesewer data synth --out "$OUT/footage" --images 0 --videos "$VIDEOS" --crack-images 0 --seed 12 \
  --workers "$WORKERS"
python -m edgesewer video frames --data "$OUT/footage" --out "$OUT/frames" --stride 4 \
  --val-videos $(( VIDEOS / 25 > 1 ? VIDEOS / 25 : 1 ))
python -m edgesewer train vit-t --data "$OUT/frames" --imgsz 64 --batch "$BATCH" --workers "$WORKERS" \
  --device "$DEVICE" --max-minutes "$MINUTES" --out "$OUT/run" \
  --set "model.kwargs={attn_init: mimetic}" --set optim.lr=1e-3 --set optim.scale_lr=false \
  --set optim.schedule=cosine --set optim.warmup_epochs=1 --set train.budget_schedule=true \
  --set train.epochs=200 --set train.early_stop=null --set train.monitor=mAP --set augment.erasing=0 \
  --set augment.rotation=0 --set augment.equalize=0 --set train.seed=0 2>&1 | tee "$OUT/train.log"
python - "$OUT" "$MINUTES" "$VIDEOS" <<'PY'
import sys
from pathlib import Path
from edgesewer.models.assets import write_backbone_asset
out, minutes, videos = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
asset = write_backbone_asset(out / "run" / "best.pt", out / "vit-t-synth64.backbone.pt",
                             note={"command": f"bash benchmarks/synth_backbone.sh OUT {minutes} {videos}", "seed": 0,
                                   "data": f"edgesewer data synth --images 0 --videos {videos} --seed 12, then "
                                           "edgesewer video frames --stride 4 (frames)"})
print(f"backbone: {asset} ({asset.stat().st_size / 1e6:.1f} MB)")
PY
