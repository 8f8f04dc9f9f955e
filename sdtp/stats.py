"""Rank statistics shared by the pruner's evaluation and the saliency diagnostics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch


def spearman(a, b) -> float:
    """Spearman correlation of two equal-length 1-D sequences (average ranks for ties); NaN if either is constant."""
    a = pd.Series(np.asarray(a.detach().cpu() if isinstance(a, torch.Tensor) else a, dtype=np.float64))
    b = pd.Series(np.asarray(b.detach().cpu() if isinstance(b, torch.Tensor) else b, dtype=np.float64))
    if len(a) != len(b):
        raise ValueError(f"spearman needs equal lengths, got {len(a)} and {len(b)}")
    rank_a, rank_b = a.rank(method="average").to_numpy(), b.rank(method="average").to_numpy()
    if len(a) < 2 or rank_a.std() == 0 or rank_b.std() == 0:
        return float("nan")
    return float(np.corrcoef(rank_a, rank_b)[0, 1])
