"""pyproject lists its packages explicitly (recipes and profiles are mapped from train/ and export/):
every package under edgesewer/ must be in that list, or a non-editable install silently lacks it."""

import tomllib
from pathlib import Path

from setuptools import find_packages

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_is_listed_and_recipes_profiles_are_mapped():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(cfg["packages"])
    assert set(find_packages(str(ROOT), include=["edgesewer*"])) <= listed
    assert cfg["package-dir"]["edgesewer.recipes"] == "train" and cfg["package-dir"]["edgesewer.profiles"] == "export"
    assert any((ROOT / "train").glob("*.yaml")) and any((ROOT / "export").glob("*.yaml"))
