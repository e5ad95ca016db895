"""Shared fixtures: the real Caltech-101 copy and small trees built from its images."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aecnn.data import resolve_root
from aecnn.data.caltech101 import FOLDER
from aecnn.errors import DatasetNotFoundError


@pytest.fixture(scope="session")
def caltech_root() -> Path:
    try:
        return resolve_root()
    except DatasetNotFoundError as exc:
        pytest.skip(f"Caltech-101 not available: {exc}")


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory) -> None:
    os.environ["AECNN_CACHE"] = str(tmp_path_factory.mktemp("cache"))


@pytest.fixture()
def mini_caltech(caltech_root: Path, tmp_path: Path) -> Path:
    """A Caltech-101 layout with 101 classes of 4 real images each (symlinks)."""
    src, dst = caltech_root / FOLDER, tmp_path / "mini" / FOLDER
    for cls in sorted(os.listdir(src)):
        if cls == "BACKGROUND_Google":
            continue
        (dst / cls).mkdir(parents=True)
        for f in sorted(os.listdir(src / cls))[:4]:
            (dst / cls / f).symlink_to(src / cls / f)
    return tmp_path / "mini"


@pytest.fixture(scope="session")
def netns() -> None:
    """Skip unless network namespaces, veth and tc work here (root): the `network` tests."""
    from aecnn.netem.link import LinkSpec, LinkUnavailableError, ShapedLink

    try:
        with ShapedLink(LinkSpec(1e6)):
            pass
    except LinkUnavailableError as exc:
        pytest.skip(f"shaped links unavailable: {exc}")
