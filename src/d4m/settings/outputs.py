"""Settings of report and export."""

from __future__ import annotations

from d4m.settings.base import S

OUTPUTS = (
    # report
    S("--run", "run directory (report goes to RUN/report/)", ("report",), required=True),
    S("--teacher", "teacher SPEC for the t-SNE panel (skipped without it)", ("report",)),
    S("--classes", "classes shown in the grid (t-SNE: at most 10)", ("report",), "classes", type=int, default=20),
    S("--per-class", "images per class in the grid", ("report",), "images", type=int, default=10),
    S("--real-per-class", "real images per class in the t-SNE", ("report",), "images", type=int, default=100),
    # export
    S("--run", "the run to export", ("export",), required=True),
    S("--to", "hf DIR (a Hugging Face dataset) or ddranking DIR", ("export",), param="to, out", required=True,
      nargs=2, metavar=("FORMAT", "DIR")),
    S("--teacher", "soft labels: the teacher's logits on each whole image (hf: soft_label column; ddranking: "
      "labels.pt)", ("export",)),
    S("--dataset", "ddranking: its dataset name (CIFAR10, CIFAR100, TinyImageNet, ImageNet1K)", ("export",),
      unset="from the run's --data"),
    S("--recipe", "ddranking: the d4m recipe its config.yaml carries", ("export",), default="paper"),
    S("--label-mode", "ddranking: soft_label_mode in config.yaml (M: its teachers relabel each batch; S: labels.pt)",
      ("export",), param="mode", default="M", choices=("M", "S")),
    S("--force", "replace an earlier export in DIR (a folder d4m did not make is never written into)", ("export",),
      action="store_true"),
)
