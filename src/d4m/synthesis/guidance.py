"""Guided synthesis, beyond the paper, as pure functions (no I/O, no models loaded here).

- **Mode guidance** (after MGD3, ICML'25): while denoising, the UNet's predicted clean latent x0 is pulled toward the
  image's k-means mode (its prototype) by a fraction ``scale`` for the first ``stop`` of the steps, and the model
  output is rebuilt so that it is consistent with the current latents and the pulled x0. With ``--init noise`` this
  gives every image its own mode, which plain noise-init lacks (it draws the same picture per class ten times at
  strong guidance, RESULTS.md 2.6).
- **Candidates checked by the teacher** (after CaO2, ICCV'25): m draws per image (different seeds); per class, in
  image order, keep the draw that maximises the teacher's probability of the class plus ``diversity`` times its
  smallest cosine distance (in the teacher's feature space) to the images already kept for that class.
"""

from __future__ import annotations

import torch

VP_PREDICTIONS = ("epsilon", "v_prediction", "sample")


def check_mode_guidance(scheduler) -> str:
    """The scheduler's prediction type; refuses schedulers whose latents are not variance-preserving (Euler, LMS
    keep sigma-scaled latents, for which the x0 algebra below does not hold)."""
    pred = getattr(scheduler.config, "prediction_type", "epsilon")
    if pred not in VP_PREDICTIONS:
        raise ValueError(f"prediction type {pred!r} is not supported by mode guidance")
    if float(getattr(scheduler, "init_noise_sigma", 1.0)) != 1.0 or not hasattr(scheduler, "alphas_cumprod"):
        raise ValueError(f"{type(scheduler).__name__} keeps sigma-scaled latents; mode guidance needs a "
                         "variance-preserving scheduler (pndm, ddim, ddpm, dpm)")
    return pred


def predicted_clean(model_out: torch.Tensor, latents: torch.Tensor, alpha_bar: float, prediction: str) -> torch.Tensor:
    """x0 implied by the model output at noise level ``alpha_bar`` (x_t = sqrt(a) x0 + sqrt(1 - a) eps)."""
    a, s = alpha_bar ** 0.5, (1.0 - alpha_bar) ** 0.5
    if prediction == "epsilon":
        return (latents - s * model_out) / a
    if prediction == "v_prediction":
        return a * latents - s * model_out
    return model_out


def output_for_clean(x0: torch.Tensor, latents: torch.Tensor, alpha_bar: float, prediction: str) -> torch.Tensor:
    """The model output that implies ``x0`` given ``latents`` (inverse of ``predicted_clean``)."""
    a, s = alpha_bar ** 0.5, (1.0 - alpha_bar) ** 0.5
    if prediction == "sample":
        return x0
    eps = (latents - a * x0) / s
    if prediction == "epsilon":
        return eps
    return a * eps - s * x0


def pull_toward_mode(model_out: torch.Tensor, latents: torch.Tensor, alpha_bar: float, modes: torch.Tensor,
                     scale: float, prediction: str) -> torch.Tensor:
    """The model output with its predicted x0 moved ``scale`` of the way to ``modes`` (same shape as latents)."""
    x0 = predicted_clean(model_out.float(), latents.float(), alpha_bar, prediction)
    pulled = x0 + scale * (modes.float() - x0)
    return output_for_clean(pulled, latents.float(), alpha_bar, prediction).to(model_out.dtype)


def mode_guidance_steps(num_steps: int, stop: float) -> int:
    """How many of the ``num_steps`` denoising steps are guided: the first ``stop`` fraction, rounded."""
    return max(0, min(num_steps, int(round(num_steps * stop))))


def select_candidates(probs: torch.Tensor, feats: torch.Tensor, diversity: float) -> tuple[list[int], list[list[dict]]]:
    """Pick one of m candidates for each of J images of one class, greedily in image order.

    ``probs`` [J, m]: the teacher's probability of the class; ``feats`` [J, m, d]: teacher features. A candidate's
    score is its probability plus ``diversity`` times its smallest cosine distance (1 - cos, in [0, 2]) to the
    candidates already kept (0 for the first image). Ties go to the lower candidate index. Returns the chosen
    indices and, per image and candidate, {prob, distance, score}.
    """
    if probs.dim() != 2 or feats.shape[:2] != probs.shape:
        raise ValueError(f"probs {tuple(probs.shape)} and feats {tuple(feats.shape)} do not match")
    unit = torch.nn.functional.normalize(feats.double(), dim=-1)
    kept: list[torch.Tensor] = []
    chosen, table = [], []
    for j in range(probs.shape[0]):
        if kept:
            sims = unit[j] @ torch.stack(kept).T  # [m, kept]
            dist = (1.0 - sims).min(dim=1).values
        else:
            dist = torch.zeros(probs.shape[1], dtype=torch.float64)
        score = probs[j].double() + diversity * dist
        best = int(torch.argmax(score))  # argmax returns the first maximum
        chosen.append(best)
        kept.append(unit[j, best])
        table.append([{"prob": round(float(probs[j, k]), 6), "distance": round(float(dist[k]), 6),
                       "score": round(float(score[k]), 6)} for k in range(probs.shape[1])])
    return chosen, table
