"""benchmarks/gpu_check.py's CPU-safe parts: finding the GPU, reading pytest's summary, the table, and
the refusal on a machine without an NVIDIA GPU (the GPU parts run only on the GPU machine)."""

import importlib.util
import subprocess
import sys
import types
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
gpu_check = importlib.util.module_from_spec(spec)
sys.modules["gpu_check"] = gpu_check  # dataclasses look their module up there
spec.loader.exec_module(gpu_check)


def fake_run(stdout, returncode=0):
    return lambda *a, **k: types.SimpleNamespace(stdout=stdout, returncode=returncode)


def test_find_gpu_reads_nvidia_smi():
    listing = "GPU 0: NVIDIA H200 (UUID: GPU-1234)\nGPU 1: NVIDIA H200 (UUID: GPU-5678)\n"
    assert gpu_check.find_gpu(fake_run(listing), lambda _: "/usr/bin/nvidia-smi") == "NVIDIA H200"
    assert gpu_check.find_gpu(fake_run("GPU 0: Orin (nvgpu)\n"), lambda _: "/usr/bin/nvidia-smi") == "Orin (nvgpu)"
    assert gpu_check.find_gpu(fake_run("", 9), lambda _: "/usr/bin/nvidia-smi") is None  # driver not loaded
    assert gpu_check.find_gpu(fake_run(listing), lambda _: None) is None  # no nvidia-smi at all


def test_pytest_summary_and_table():
    assert gpu_check.pytest_summary("....\n3 passed, 1 failed, 2 skipped in 40.1s") == (3, 1, 2)
    assert gpu_check.pytest_summary("E\n1 error in 0.3s") == (0, 1, 0)
    assert gpu_check.pytest_summary("") == (0, 0, 0)
    table = gpu_check.format_table([gpu_check.Row("train AMP", "vit-t", True, "20 steps"),
                                    gpu_check.Row("eager GPU", "scnet b8", False, "CUDA error")])
    lines = table.splitlines()
    assert lines[0].split() == ["check", "subject", "status", "result"] and set(lines[1]) == {"-", " "}
    assert lines[2].split()[:3] == ["train", "AMP", "vit-t"] and "ok" in lines[2]
    assert "FAIL" in lines[3] and lines[3].endswith("CUDA error")


def test_without_a_gpu_it_says_so_and_exits_non_zero(capsys):
    assert gpu_check.main([], gpu_finder=lambda: None) == 2
    assert "no NVIDIA GPU here" in capsys.readouterr().err


def test_the_script_runs_as_a_command_here():
    # This machine has no NVIDIA GPU: the real entry point must refuse cleanly, not crash.
    if gpu_check.find_gpu() is not None:
        return
    done = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "no NVIDIA GPU here" in done.stderr and "Traceback" not in done.stderr
