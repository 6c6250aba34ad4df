"""The one door to ``from_pretrained``: no code from a model folder runs, and no pickle is unpickled.

Every diffusers / transformers component d4m loads (UNet, VAE, text encoder, tokenizer, scheduler) comes through
``load_component``, which

- reads the component's JSON configuration first (a local folder: every ``*.json`` in it; a hub id: the config
  the loader itself would read) and refuses one that names custom code (``auto_map``, a ``custom_pipeline``);
- refuses a local folder whose weights are pickles only (``*.bin``, ``*.pt``, ``*.ckpt``, ...): unpickling runs
  code; d4m reads safetensors;
- calls the loader with ``trust_remote_code=False`` (transformers) and ``use_safetensors=True`` (weights), so the
  library never asks "run the custom code? [y/N]", whatever stdin holds;
- turns any loading failure into one ``ModelError`` line naming the folder.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

from d4m.errors import ModelError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
CODE_KEYS = ("auto_map", "custom_pipeline")


def local_folder(source: str, subfolder: str | None = None) -> Path | None:
    """The local directory of ``source``/``subfolder``, or None when ``source`` is not a local path (a hub id)."""
    root = Path(str(source)).expanduser()
    if not root.exists():
        return None
    return root / subfolder if subfolder else root


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:240] if text else exc.__class__.__name__


def _refuse_code(data, where: str) -> None:
    if isinstance(data, dict):
        for key in CODE_KEYS:
            if key in data:
                raise ModelError(f"{where}: refused: its configuration names custom code ({key!r}); d4m never runs "
                                 "code from a model folder")


def check_folder(folder: Path, where: str, weights: bool) -> None:
    """Refuse custom code in any JSON of ``folder`` and, when it holds ``weights``, pickle-only weights."""
    if not folder.is_dir():
        raise ModelError(f"{where}: no such directory")
    for path in sorted(folder.glob("*.json")):
        try:
            data = json.loads(path.read_bytes().decode("utf-8-sig"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise ModelError(f"{path}: not a readable JSON file ({_first_line(exc)})") from None
        _refuse_code(data, str(path))
    files = [p for p in folder.iterdir() if p.is_file()]
    pickles = sorted(p.name for p in files if p.suffix.lower() in PICKLE_SUFFIXES)
    if pickles and not any(p.suffix == ".safetensors" for p in files):
        kind = "weights" if weights else "files"
        raise ModelError(f"{where}: refused: its {kind} are pickles only ({pickles[0]}); unpickling can run code, "
                         "so d4m loads safetensors only (convert them with save_pretrained(safe_serialization=True))")


_REACHABLE: dict[tuple[str, int], bool] = {}


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub answers a TCP connection (asked once per process; False in offline mode), so
    that an offline machine gets one line at once instead of the hub client's minutes of retries."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    url = urlparse(constants.ENDPOINT)
    key = (url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443))
    if key not in _REACHABLE:
        try:
            socket.create_connection(key, timeout=timeout).close()
            _REACHABLE[key] = True
        except OSError:
            _REACHABLE[key] = False
    return _REACHABLE[key]


def offline_snapshot(source: str) -> str:
    """The cached snapshot folder of hub id ``source``, for a machine that cannot reach the hub; one line if none."""
    from huggingface_hub import constants, snapshot_download

    try:
        return snapshot_download(str(source), local_files_only=True)
    except Exception:  # noqa: BLE001 - not cached, in whatever form the hub client says it
        raise ModelError(f"{source}: the Hugging Face hub ({urlparse(constants.ENDPOINT).hostname}) cannot be "
                         f"reached from here and {source} is not in the local cache; download it where there is "
                         f"internet (`huggingface-cli download {source} --local-dir DIR`) and pass the folder DIR "
                         "instead of the id") from None


def hub_config(source: str, subfolder: str | None, filename: str, where: str) -> dict:
    """The JSON file ``filename`` of hub repository ``source`` (downloading only that file)."""
    try:
        from huggingface_hub import hf_hub_download

        path = hf_hub_download(str(source), filename, subfolder=subfolder or None)
        data = json.loads(Path(path).read_bytes().decode("utf-8-sig"))
    except Exception as exc:  # noqa: BLE001 - hub, network and parse errors come in many types
        raise ModelError(f"{where}: cannot read its {filename} ({_first_line(exc)})") from None
    if not isinstance(data, dict):
        raise ModelError(f"{where}: its {filename} is not a JSON object")
    return data


def _hub_id(source) -> bool:
    return not str(source).startswith((".", "/", "~")) and str(source).count("/") == 1


def load_component(loader: Callable, source: str, subfolder: str | None, what: str, *, library: str,
                   weights: bool = True, config_name: str = "config.json", **kwargs):
    """``loader(source, subfolder=..., **kwargs)`` after the checks above; ``what`` names the part in errors."""
    folder = local_folder(source, subfolder)
    if folder is None and _hub_id(source) and not hub_reachable():  # offline: the cached snapshot, or one line
        source = offline_snapshot(source)
        folder = local_folder(source, subfolder)
    where = f"{source}/{subfolder}" if subfolder else str(source)
    if folder is not None:
        check_folder(folder, where, weights)
    elif not _hub_id(source):
        raise ModelError(f"{source}: no such directory (and not a hub id of the form owner/name)")
    else:  # a hub id: the configuration the loader is about to follow
        _refuse_code(hub_config(source, subfolder, config_name, where), where)
    if library == "transformers":
        kwargs["trust_remote_code"] = False
    if weights:
        kwargs["use_safetensors"] = True
    if subfolder:
        kwargs["subfolder"] = subfolder
    try:
        obj = loader(source, **kwargs)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RuntimeError, ImportError) as exc:
        raise ModelError(f"{where}: cannot load the {what}: {_first_line(exc)}") from None
    return obj
