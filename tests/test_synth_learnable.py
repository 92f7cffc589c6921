"""The synthetic Sewer-ML set is learnable: a small timm CNN trained a couple of CPU minutes
beats the best constant prediction by a wide margin (issue 2's proof that the data carries signal).

This is not the training pipeline (edgesewer.train is); the loop here is the bare minimum.
"""

import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")

from edgesewer.data.sewerml import load_split  # noqa: E402
from edgesewer.data.synth import generate  # noqa: E402
from edgesewer.data.torch_dataset import SewerMLDataset  # noqa: E402
from edgesewer.metrics.sewerml import evaluate_sewerml  # noqa: E402
from edgesewer.modelcfg import SEWERML_MEAN, SEWERML_STD  # noqa: E402
from edgesewer.models.losses import ciw_pos_weight  # noqa: E402

# 160x128 stills at 64 px (2.5x shrink) and a one-cycle lr: ~3x cheaper than 320x256 at 96 px for 350
# constant-lr steps (229 s -> ~80 s here), and the decayed lr makes the last step's model a stable one.
GEN_SIZE, SIZE = (160, 128), 64
STEPS, LR = 250, 3e-3  # a step budget, not a time budget: a loaded CI runner must not change the outcome
CPU_LIMIT_S = 300  # the "at most 5 CPU minutes" (process CPU time, all threads)


def _scores(model, loader):
    model.eval()
    out, tgt = [], []
    with torch.no_grad():
        for x, y in loader:
            out.append(torch.sigmoid(model(x)).numpy())
            tgt.append(y.numpy())
    return np.concatenate(out), np.concatenate(tgt)


@pytest.mark.slow
def test_small_timm_model_learns_synthetic_sewerml(tmp_path):
    generate(tmp_path, images=2000, videos=0, crack_images=0, size=GEN_SIZE, seed=0, workers=2, progress=False)
    train = load_split(tmp_path / "sewerml", "Train")
    val = load_split(tmp_path / "sewerml", "Val")
    torch.manual_seed(0)
    # One thread: CPU time then equals wall time, and OpenMP spinning on a busy runner cannot inflate it.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    ds_train = SewerMLDataset(train, SIZE, SEWERML_MEAN, SEWERML_STD)
    ds_val = SewerMLDataset(val, SIZE, SEWERML_MEAN, SEWERML_STD)
    # Decode once: the loop then measures learning, not PNG decoding.
    xs = torch.stack([ds_train[i][0] for i in range(len(ds_train))])
    ys = torch.stack([ds_train[i][1] for i in range(len(ds_train))])
    val_loader = torch.utils.data.DataLoader(ds_val, batch_size=64)

    model = timm.create_model("resnet10t", num_classes=17, pretrained=False)
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, LR, total_steps=STEPS, pct_start=0.15)
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=torch.as_tensor(ciw_pos_weight(), dtype=torch.float32))
    start, cpu_start, step = time.monotonic(), time.process_time(), 0
    while step < STEPS:
        model.train()
        for idx in torch.randperm(len(xs)).split(32):
            x = xs[idx]
            if torch.rand(()) < 0.5:
                x = x.flip(-1)
            loss = loss_fn(model(x), ys[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if step >= STEPS:
                break
    train_s, train_cpu = time.monotonic() - start, time.process_time() - cpu_start

    torch.set_num_threads(threads)
    scores, targets = _scores(model, val_loader)
    trained = evaluate_sewerml(scores, targets)
    constant = evaluate_sewerml(np.ones_like(scores), targets)  # the best constant: all positive
    print(f"steps={step} in {train_s:.0f} s wall, {train_cpu:.0f} s CPU: trained F2_CIW={trained['F2_CIW']:.3f} "
          f"F1_Normal={trained['F1_Normal']:.3f} mAP={trained['mAP']:.3f} | all-ones F2_CIW={constant['F2_CIW']:.3f}")
    # Two runs here (torch seeds 0 and 1): F2_CIW 0.439 / 0.458, mAP 0.423 / 0.426, against all-ones F2_CIW
    # 0.214 and a class-prevalence mAP of 0.065. Untrained (0 steps): F2_CIW 0.042, mAP 0.062, so all three fail.
    assert trained["F2_CIW"] > constant["F2_CIW"] + 0.15
    assert trained["F2_CIW"] > 1.5 * constant["F2_CIW"]
    assert trained["mAP"] > 0.3
    assert train_cpu < CPU_LIMIT_S
