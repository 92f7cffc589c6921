"""What machine an engine is being built on: GPU name and compute capability, JetPack / L4T.

Torch-free (engines are built on the robot, where only the runtime is installed). GPU facts come
from the runtime's own CUDA layer, so the names written here are the ones the runtime compares
against when it loads the engine; `nvidia-smi` is the fallback on a dGPU without cuda-python.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from edgesewer.runtime.artifact import DEVICE_TREE_MODEL, jetson_module

NV_TEGRA_RELEASE = Path("/etc/nv_tegra_release")
# L4T release -> JetPack, for images without the nvidia-jetpack meta package.
L4T_TO_JETPACK = {
    "35.1": "5.0.2", "35.2": "5.1", "35.3": "5.1.1", "35.4": "5.1.2", "35.5": "5.1.3", "35.6": "5.1.4",
    "36.2": "6.0 DP", "36.3": "6.0", "36.4": "6.1", "36.4.3": "6.2", "36.4.4": "6.2.1",
}


def gpu_info() -> tuple[str, str] | None:
    """(GPU name, "major.minor") of device 0, or None when no GPU can be queried."""
    try:
        from edgesewer.runtime.backends.tensorrt import load_cuda_api

        api = load_cuda_api()
    except Exception:  # noqa: BLE001 - no CUDA bindings or no GPU: try the next source
        api = None
    if api is not None:
        try:
            return api.device_info()
        except Exception:  # noqa: BLE001 - a GPU that does not answer: try nvidia-smi
            pass
        finally:
            api.close()  # pycuda made a context for this question: detach it, or every build leaks one
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=name,compute_cap", "--format=csv,noheader"],
                capture_output=True, text=True, timeout=20, check=True,
            ).stdout.splitlines()
        except (OSError, subprocess.SubprocessError):
            return None
        if out and "," in out[0]:
            name, cc = (part.strip() for part in out[0].rsplit(",", 1))
            return name, cc
    return None


def parse_l4t(text: str) -> str | None:
    """'# R36 (release), REVISION: 4.3, GCID: ...' -> '36.4.3'."""
    match = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text)
    return f"{match.group(1)}.{match.group(2)}" if match else None


def jetpack_for_l4t(l4t: str) -> str | None:
    """JetPack release of an L4T version (most specific match first)."""
    parts = l4t.split(".")
    for n in (3, 2):
        key = ".".join(parts[:n])
        if key in L4T_TO_JETPACK:
            return L4T_TO_JETPACK[key]
    return None


def jetson_info(release_file: Path = NV_TEGRA_RELEASE, model_file: Path = DEVICE_TREE_MODEL) -> dict[str, str] | None:
    """{"l4t", "jetpack", "module"} on a Jetson, None elsewhere."""
    try:
        l4t = parse_l4t(release_file.read_text(errors="replace"))
    except OSError:
        return None
    if l4t is None:
        return None
    info = {"l4t": l4t, "jetpack": _jetpack_from_dpkg() or jetpack_for_l4t(l4t) or "unknown"}
    module = jetson_module(model_file)  # the runtime compares the engine's module with its own reading
    if module:
        info["module"] = module
    return info


def _jetpack_from_dpkg() -> str | None:
    if not shutil.which("dpkg-query"):
        return None
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "nvidia-jetpack"],
                             capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    version = out.stdout.strip().split("-")[0].split("+")[0]
    return version or None
