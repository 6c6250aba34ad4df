"""The TTM loss: KL(softmax(t/T) || softmax(s/T)), batch mean, without the T^2 factor (as SRe2L / D4M)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def kl_soft_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """sum_i sum_c p_t(c) (log p_t(c) - log p_s(c)) / N with p = softmax(logits / T)."""
    log_s = F.log_softmax(student_logits.float() / temperature, dim=1)
    log_t = F.log_softmax(teacher_logits.float() / temperature, dim=1)
    return F.kl_div(log_s, log_t, reduction="batchmean", log_target=True)


def mixed_ce_loss(student_logits: torch.Tensor, targets: torch.Tensor, partners: torch.Tensor,
                  lam: float) -> torch.Tensor:
    """Hard-label cross-entropy for a mixed batch: lam * CE(y) + (1 - lam) * CE(y of the mixed-in partner)."""
    ce = F.cross_entropy(student_logits.float(), targets)
    if lam >= 1.0:
        return ce
    return lam * ce + (1.0 - lam) * F.cross_entropy(student_logits.float(), partners)
