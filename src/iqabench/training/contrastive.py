"""CONTRIQUE's objective: NT-Xent with multiple positives.

Every patch vector whose label (distortion class, or image id for authentic
images) equals the anchor's is a positive; all others are negatives. The loss
for an anchor is the mean over its positives of -log softmax(sim / tau), i.e.
the supervised-contrastive form, which is what CONTRIQUE's code computes.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def multi_positive_nt_xent(z: torch.Tensor, labels: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """z: M x D projections (normalised here), labels: M integer classes."""
    if z.ndim != 2 or labels.shape != (z.shape[0],):
        raise ValueError(f"expected z M x D and labels of length M, got {tuple(z.shape)} and {tuple(labels.shape)}")
    z = F.normalize(z.float(), dim=1)
    logits = z @ z.T / temperature
    self_mask = torch.eye(len(z), dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    positives = (labels[:, None] == labels[None, :]) & ~self_mask
    n_pos = positives.sum(1)
    has_pos = n_pos > 0
    # Checked only where it costs no wait for an accelerator; the training loop's targets always have
    # positives (every image appears in two views), so on a GPU a violation can only come from a direct call.
    if labels.device.type == "cpu" and not has_pos.any():
        raise ValueError("no anchor has a positive: every label in the batch is unique")
    per_anchor = -(log_prob.masked_fill(~positives, 0.0).sum(1) / n_pos.clamp_min(1))
    return (per_anchor * has_pos).sum() / has_pos.sum()  # the mean over anchors with a positive, without a sync
