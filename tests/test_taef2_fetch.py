"""``--codec taef2`` by name: fetched into torch's hub cache with a checksum, used from the cache without a download,
one line offline or on a bad checksum (the bad file not kept). The download is replaced by a copy from ../shared."""

import shutil
import urllib.error

import numpy as np
import pytest
import torch
from PIL import Image

from d4m.cli.main import main
from d4m.codec import build_codec
from d4m.codec.taef2_fetch import SHA256, cache_dir, file_url
from d4m.errors import ModelError
from tests.conftest import shared_path


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A private torch hub cache; the real download is never reached."""
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))

    def no_network(url, dst, *args, **kwargs):
        raise AssertionError(f"unexpected download of {url}")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return tmp_path / "torch-home"


def _copy_from_shared(calls):
    weights = shared_path("weights", "taef2")

    def download(url, dst, *args, **kwargs):
        calls.append(url)
        shutil.copyfile(weights / url.rsplit("/", 1)[1], dst)

    return download


def test_fetched_once_then_read_from_the_cache(hub, monkeypatch):
    calls = []
    monkeypatch.setattr(torch.hub, "download_url_to_file", _copy_from_shared(calls))
    codec = build_codec("taef2")
    assert sorted(calls) == sorted(file_url(n) for n in SHA256)
    assert all(u.startswith("https://raw.githubusercontent.com/madebyollin/taesd/") for u in calls)
    assert cache_dir().is_relative_to(hub) and sorted(p.name for p in cache_dir().iterdir()) == sorted(SHA256)
    assert codec.name == "taef2"  # runs record the name, not the cache path
    z = codec.encode(torch.rand(1, 3, 64, 64))
    assert z.shape == (1, 32, 8, 8)
    calls.clear()
    build_codec("taef2")
    assert calls == []  # the second use finds both files with their hashes


def test_a_pre_seeded_cache_needs_no_network(hub):
    weights = shared_path("weights", "taef2")
    cache_dir().mkdir(parents=True)
    for name in SHA256:
        shutil.copyfile(weights / name, cache_dir() / name)
    assert build_codec("taef2").decode(torch.zeros(1, 32, 4, 4)).shape == (1, 3, 32, 32)


def test_offline_is_one_line_naming_the_url_and_the_folder_form(hub, monkeypatch, tmp_path, capsys):
    def offline(url, dst, *args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(ModelError, match=r"cannot download https://raw\.githubusercontent\.com/.*taef2:DIR"):
        build_codec("taef2")
    assert not any(p.is_file() for p in hub.rglob("*"))
    data = tmp_path / "data"
    for c in ("cat", "dog"):
        (data / c).mkdir(parents=True)
        Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(data / c / "0.png")
    rc = main(["prototypes", "--data", f"folder:{data}", "--codec", "taef2", "--size", "16", "--ipc", "1",
               "--out", str(tmp_path / "run"), "--workers", "0"])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("d4m: error")]
    assert rc == 2 and len(lines) == 1 and "taef2:DIR" in lines[0] and "Traceback" not in err, err


def test_a_wrong_checksum_is_refused_and_not_kept(hub, monkeypatch):
    def tampered(url, dst, *args, **kwargs):
        with open(dst, "wb") as f:
            f.write(b"not the published weights")

    monkeypatch.setattr(torch.hub, "download_url_to_file", tampered)
    with pytest.raises(ModelError, match=r"SHA-256 .* expected .*not kept"):
        build_codec("taef2")
    assert not any(p.is_file() for p in hub.rglob("*"))


def test_a_corrupt_cached_file_is_fetched_again(hub, monkeypatch):
    calls = []
    monkeypatch.setattr(torch.hub, "download_url_to_file", _copy_from_shared(calls))
    build_codec("taef2")
    (cache_dir() / "taef2_decoder.pth").write_bytes(b"truncated")
    calls.clear()
    build_codec("taef2")
    assert calls == [file_url("taef2_decoder.pth")]
