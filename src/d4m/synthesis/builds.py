"""How the synthesis UNet is built for a run, and which build d4m uses on a GPU by default (issue 24).

A build changes how the UNet runs, never what it computes beyond rounding: the memory layout (NCHW as loaded, or
channels_last) and ``torch.compile`` in one of its modes (``reduce-overhead`` adds CUDA graphs). The dtype is not
part of a build: bf16 is ``--dtype bfloat16``.

``GPU_DEFAULT`` is the build d4m uses on CUDA when ``--compile`` is not given. It is eager until a GPU run of the
kit's variants phase (bench/gpu_variants.py) recommends another build by the rule recorded there: the build's
images match eager fp16 within fp16 tolerance and it is at least 5% faster. Changing it is this one line, and
tests/test_gpu_phases.py refuses a change that no committed GPU result (bench/results/gpu*.json) recommends.
"""

from __future__ import annotations

from dataclasses import dataclass

COMPILE_MODES = ("no", "default", "reduce-overhead", "max-autotune")


@dataclass(frozen=True)
class UNetBuild:
    compile: str = "no"  # one of COMPILE_MODES
    channels_last: bool = False

    def __post_init__(self):
        if self.compile not in COMPILE_MODES:
            raise ValueError(f"compile mode {self.compile!r}: expected one of {', '.join(COMPILE_MODES)}")


EAGER = UNetBuild()
GPU_DEFAULT = EAGER  # not measured better yet: no GPU run has recommended another build (BENCHMARKS.md section 5)


def choose_build(compile_flag: bool, device: str, gpu_default: UNetBuild = GPU_DEFAULT) -> UNetBuild:
    """``--compile`` compiles (default mode, the GPU default's layout); otherwise the GPU default on CUDA, eager
    elsewhere."""
    on_gpu = str(device).startswith("cuda")
    if compile_flag:
        return UNetBuild("default", gpu_default.channels_last if on_gpu else False)
    return gpu_default if on_gpu else EAGER


def apply_build(unet, build: UNetBuild):
    """The module to call for ``build``: ``unet`` itself (its layout changed in place), or a compiled wrapper."""
    import torch

    if build.channels_last:
        unet.to(memory_format=torch.channels_last)
    if build.compile == "no":
        return unet
    return torch.compile(unet, mode=None if build.compile == "default" else build.compile)
