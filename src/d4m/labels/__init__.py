"""TTM soft labels: the augmentation stream (pure), the KL loss, stored and online label sources."""

from d4m.labels.feed import Batch, StreamImages, iterate_epoch, num_batches
from d4m.labels.loss import kl_soft_loss, mixed_ce_loss
from d4m.labels.store import FORMATS, LabelStore, OnlineLabels, StoredLabels, decode, encode, relabel
from d4m.labels.stream import (MixParams, StreamSpec, apply_crop, apply_mix, crop_params, epoch_batches,
                               epoch_order, mix_params, params_checksum)

__all__ = ["Batch", "StreamImages", "iterate_epoch", "num_batches", "kl_soft_loss", "mixed_ce_loss", "FORMATS",
           "LabelStore", "OnlineLabels", "StoredLabels", "decode", "encode", "relabel", "MixParams", "StreamSpec",
           "apply_crop", "apply_mix", "crop_params", "epoch_batches", "epoch_order", "mix_params",
           "params_checksum"]

