"""Offline is fast and quiet (issue 25): a hub id on a machine that cannot reach the hub is one line at once (no
retry loop), naming the id and the local form to use; a cached snapshot is used without the network."""

import socket
import time

import pytest

from d4m import pretrained
from d4m.errors import ModelError


@pytest.fixture
def no_network(monkeypatch):
    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise OSError("network unreachable (test)")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(pretrained, "_REACHABLE", {})
    return calls


def test_uncached_hub_id_offline_is_one_line_at_once(no_network, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    start = time.monotonic()
    with pytest.raises(ModelError) as err:
        pretrained.load_component(lambda *a, **k: None, "owner/model", "vae", "VAE", library="diffusers")
    assert time.monotonic() - start < 5
    message = str(err.value)
    assert "\n" not in message and "owner/model" in message and "--local-dir DIR" in message
    assert len(no_network) == 1  # asked once, no retries
    with pytest.raises(ModelError):  # the answer is remembered for the process
        pretrained.load_component(lambda *a, **k: None, "owner/model", "unet", "UNet", library="diffusers")
    assert len(no_network) == 1


def test_cached_snapshot_is_used_offline(no_network, tmp_path, monkeypatch):
    snapshot = tmp_path / "snap"
    (snapshot / "vae").mkdir(parents=True)
    (snapshot / "vae" / "config.json").write_text("{}")
    monkeypatch.setattr("huggingface_hub.snapshot_download", lambda repo, local_files_only: str(snapshot))
    seen = {}

    def loader(source, **kwargs):
        seen.update(source=source, **kwargs)
        return "loaded"

    assert pretrained.load_component(loader, "owner/model", "vae", "VAE", library="diffusers", weights=False) == \
        "loaded"
    assert seen["source"] == str(snapshot) and seen["subfolder"] == "vae"
