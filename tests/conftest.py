"""Suite-wide settings. Nothing in the tests may download weights or data: the Hugging Face hub (timm and
SFR-Net's CLIP weights come through it) is told to stay offline, so a test that would reach for weights
fails with the project's one-line "not in the cache" error instead of trying the network."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
