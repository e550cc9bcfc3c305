import math

import torch
import torch.nn.functional as F
import pytest

from iqabench.training.contrastive import multi_positive_nt_xent


def _naive(z, labels, tau):
    z = F.normalize(z, dim=1)
    total, count = 0.0, 0
    for i in range(len(z)):
        denom = sum(math.exp(float(z[i] @ z[k]) / tau) for k in range(len(z)) if k != i)
        pos = [j for j in range(len(z)) if j != i and labels[j] == labels[i]]
        if pos:
            total += sum(-math.log(math.exp(float(z[i] @ z[j]) / tau) / denom) for j in pos) / len(pos)
            count += 1
    return total / count


def test_matches_a_loop_over_anchors_and_positives():
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(12, 8, generator=gen)
    labels = torch.tensor([0, 0, 1, 1, 1, 2, 2, 3, 4, 4, 4, 4])
    assert multi_positive_nt_xent(z, labels, 0.5).item() == pytest.approx(_naive(z, labels, 0.5), rel=1e-5)


def test_clustered_by_label_scores_lower_than_random():
    gen = torch.Generator().manual_seed(1)
    labels = torch.arange(4).repeat_interleave(8)
    centres = F.normalize(torch.randn(4, 16, generator=gen), dim=1)
    clustered = centres[labels] + 0.05 * torch.randn(32, 16, generator=gen)
    random = torch.randn(32, 16, generator=gen)
    assert multi_positive_nt_xent(clustered, labels) < multi_positive_nt_xent(random, labels) - 1.0


def test_batch_without_any_positive_is_an_error():
    with pytest.raises(ValueError, match="no anchor has a positive"):
        multi_positive_nt_xent(torch.randn(3, 4), torch.tensor([0, 1, 2]))
