"""The reference article's approximate statistics merge, kept here (not in the package) to document its
error against the exact recorder."""

from collections.abc import Sequence

import torch
from torch import Tensor


def naive_merge_mean_std(means: Sequence[Tensor], stds: Sequence[Tensor], counts: Sequence[int]) -> tuple[Tensor, Tensor]:
    """The reference article's merge, kept to document its error (not used by fastspecnorm).

    It combines per-batch means and *unbiased* per-batch standard deviations weighted by item
    counts: `var = n1/(n1+n2) * s1^2 + n2/(n1+n2) * s2^2 + n1*n2/(n1+n2)^2 * (m1-m2)^2`, applied
    batch after batch. Per-batch stds use ddof=1 over `values_per_batch` values, and the weights are
    items rather than values, so the result is close to, but not, the population std of the data.
    """
    mean, std, n = means[0].double(), stds[0].double(), counts[0]
    for m2_, s2_, n2 in zip(means[1:], stds[1:], counts[1:], strict=True):
        m2_, s2_ = m2_.double(), s2_.double()
        tot = n + n2
        new_mean = n / tot * mean + n2 / tot * m2_
        var = n / tot * std**2 + n2 / tot * s2_**2 + n * n2 / tot**2 * (mean - m2_) ** 2
        mean, std, n = new_mean, torch.sqrt(var), tot
    return mean, std
