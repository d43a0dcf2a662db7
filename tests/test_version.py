"""One version, written once in the workspace Cargo.toml, everywhere it is shown; and the
Python running the suite is one the package declares."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

import fastledger

WORKSPACE_MANIFEST = Path(__file__).resolve().parents[1] / "Cargo.toml"


def test_the_version_is_that_of_the_installed_distribution() -> None:
    assert fastledger.__version__ == metadata.version("fastledger")


@pytest.mark.skipif(not WORKSPACE_MANIFEST.exists(), reason="run outside the source tree")
def test_the_version_is_the_one_the_workspace_cargo_toml_sets() -> None:
    with WORKSPACE_MANIFEST.open("rb") as manifest:
        version = tomllib.load(manifest)["workspace"]["package"]["version"]
    assert fastledger.__version__ == version


def test_the_command_line_says_the_version() -> None:
    shown = subprocess.run(
        [sys.executable, "-m", "fastledger", "--version"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert shown.strip() == f"fastledger {fastledger.__version__}"


def test_the_running_python_is_one_the_package_declares() -> None:
    classifiers = metadata.metadata("fastledger").get_all("Classifier") or []
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert f"Programming Language :: Python :: {running}" in classifiers
