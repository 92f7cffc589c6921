"""SFR-Net: zero-shot multi-label sewer defect classification on CLIP (SPEC 5.5).

Importing the package registers `sfr-net` and `sfr-net-tiny`. Needs open_clip_torch.
"""

from edgesewer.models.sfrnet.class_texts import ClassTexts, load_class_texts, parse_class_texts
from edgesewer.models.sfrnet.model import SFRNet, create_sfrnet

__all__ = ["ClassTexts", "SFRNet", "create_sfrnet", "load_class_texts", "parse_class_texts"]
