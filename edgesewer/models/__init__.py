"""Model zoo (needs torch). Each family module registers its names on import.

Family modules are added here as they land; `create_model(name)` builds any of them.
"""

from edgesewer.models._registry import create_model, get_entry, list_models, register_model

# Families: importing a module registers its model names.
from edgesewer.models import q2l, scnet, sfrnet, superimage, videoswin, vit  # noqa: F401,E402

__all__ = ["create_model", "get_entry", "list_models", "register_model"]
