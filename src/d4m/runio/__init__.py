"""I/O of a run directory: atomic files, the manifest, the stage log."""

from d4m.runio.atomic import atomic_write_bytes, atomic_write_text, atomic_save_png, sha256_file
from d4m.runio.stagelog import StageTimer, peak_memory

__all__ = ["atomic_write_bytes", "atomic_write_text", "atomic_save_png", "sha256_file", "StageTimer", "peak_memory"]
