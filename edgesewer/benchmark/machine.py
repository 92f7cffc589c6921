"""What machine the numbers came from: CPU, cores, GPU, library versions, Jetson power mode, load.

Published Jetson numbers always state JetPack and the power mode; a shared CPU's load average says
how much to trust a latency. Versions are read from package metadata, so nothing heavy is imported.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from edgesewer import __version__

CPUINFO = Path("/proc/cpuinfo")
GOVERNOR = Path("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
# Distribution name -> how the table calls it (the first one installed wins).
PACKAGES = {
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu"),
    "tensorrt": ("tensorrt", "tensorrt-cu12", "tensorrt-cu13"),
    "torch": ("torch",),
    "numpy": ("numpy",),
    "opencv": ("opencv-python-headless", "opencv-python", "opencv-contrib-python"),
}


def package_version(*distributions: str) -> str | None:
    for name in distributions:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def cpu_model(cpuinfo: Path = CPUINFO) -> str:
    """'Intel(R) Xeon(R) ...' from /proc/cpuinfo (x86 'model name', ARM 'Hardware'/'Model'), else platform."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        text = ""
    for key in ("model name", "Hardware", "Model", "cpu model"):
        for line in text.splitlines():
            if line.split(":")[0].strip() == key and ":" in line:
                value = line.split(":", 1)[1].strip()
                if value:
                    return value
    return platform.processor() or platform.machine() or "unknown CPU"


def usable_cores() -> int:
    """Cores this process may run on (affinity / container limits), not the host's total."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def parse_nvpmodel(text: str) -> str | None:
    """`nvpmodel -q` output ('NV Power Mode: MAXN\\n0') -> 'MAXN (mode 0)'."""
    name = mode = None
    for line in text.splitlines():
        line = line.strip()
        if line.lower().startswith("nv power mode"):
            name = line.split(":", 1)[1].strip() if ":" in line else None
        elif line.isdigit():
            mode = line
    if name is None:
        return None
    return f"{name} (mode {mode})" if mode is not None else name


def nvpmodel_mode() -> str | None:
    """The Jetson power mode, when `nvpmodel` is installed (it is on every JetPack image)."""
    if not shutil.which("nvpmodel"):
        return None
    try:
        out = subprocess.run(["nvpmodel", "-q"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_nvpmodel(out.stdout)


def _ort_providers() -> list[str]:
    try:
        import onnxruntime as ort  # noqa: PLC0415 - only when describing a machine
    except ImportError:
        return []
    return list(ort.get_available_providers())


def _memory_gib() -> float | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        return None


def describe_machine(threads: int | None = None) -> dict[str, Any]:
    """Everything the report header states about the machine and the software."""
    from edgesewer.export import device_info

    gpu = device_info.gpu_info()
    jetson = device_info.jetson_info()
    try:
        governor = GOVERNOR.read_text().strip()
    except OSError:
        governor = None
    try:
        load = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        load = None
    memory = _memory_gib()
    return {
        "host": platform.node(),
        "os": f"{platform.system()} {platform.release()}",
        "cpu": cpu_model(),
        "arch": platform.machine(),
        "cores": usable_cores(),
        "threads": threads,
        "memory_gib": round(memory, 1) if memory else None,
        "cpu_governor": governor,
        "load_average": load,
        "gpu": {"name": gpu[0], "compute_capability": gpu[1]} if gpu else None,
        "jetson": jetson,
        "power_mode": nvpmodel_mode(),
        "python": platform.python_version(),
        "edgesewer": __version__,
        "versions": {key: package_version(*names) for key, names in PACKAGES.items()},
        "ort_providers": _ort_providers(),
    }


def machine_lines(info: dict[str, Any]) -> list[str]:
    """Human lines for the top of the report (Markdown bullet text)."""
    versions = ", ".join(f"{k} {v}" for k, v in info.get("versions", {}).items() if v) or "none found"
    gpu = info.get("gpu")
    lines = [
        f"CPU: {info['cpu']} ({info['arch']}), {info['cores']} usable cores"
        + (f", {info['memory_gib']} GiB RAM" if info.get("memory_gib") else "")
        + (f", governor {info['cpu_governor']}" if info.get("cpu_governor") else ""),
        f"GPU: {gpu['name']} (sm {gpu['compute_capability']})" if gpu else "GPU: none",
        f"Software: Python {info['python']}, edgesewer {info['edgesewer']}, {versions}",
        f"ONNX Runtime providers: {', '.join(info.get('ort_providers') or []) or 'n/a'}",
    ]
    jetson = info.get("jetson")
    if jetson:
        lines.append(f"Jetson: {jetson.get('module', 'unknown module')}, JetPack {jetson.get('jetpack')}, "
                     f"L4T {jetson.get('l4t')}, power mode {info.get('power_mode') or 'unknown (nvpmodel -q failed)'}")
    elif info.get("power_mode"):
        lines.append(f"Power mode: {info['power_mode']}")
    if info.get("load_average"):
        lines.append("Load average (1/5/15 min) at start: " + " / ".join(f"{v:.2f}" for v in info["load_average"]))
    lines.append(f"OS: {info['os']}, host {info['host']}")
    return lines
