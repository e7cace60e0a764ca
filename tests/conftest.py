"""Shared fixtures: every test that trains runs in its own directory, and generated CIFAR-10 files pass the
MD5 check that the product keeps for real downloads."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# Tests never reach the internet; a stray download attempt must fail fast instead of hanging.
os.environ.setdefault("TORCH_HOME", str(REPO / ".pytest_cache" / "torch_home"))


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in a fresh directory, as a user would in a new project folder."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def skip_cifar_md5(monkeypatch: pytest.MonkeyPatch) -> None:
    """Generated CIFAR-10 batches have the real format but not the real MD5 sums. torchvision checks every
    batch (``_check_integrity``) and, separately, the metadata file (``check_integrity`` in ``_load_meta``)."""
    import torchvision

    monkeypatch.setattr(torchvision.datasets.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *args, **kwargs: True)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every download fails as it does offline (never touches the network)."""
    import urllib.error
    import urllib.request

    def refuse(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
