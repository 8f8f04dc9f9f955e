"""Spearman's rank correlation."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from sdtp.stats import spearman


def test_spearman_by_hand_and_against_pandas():
    # ranks [1,2,3] vs [3,1,2]: centred (-1,0,1)·(1,-1,0) = -1 over variance 2 → -0.5.
    assert spearman([1.0, 2.0, 3.0], [30.0, 10.0, 20.0]) == pytest.approx(-0.5)
    assert spearman(torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([1.0, 4.0, 9.0, 16.0])) == pytest.approx(1.0)
    generator = torch.Generator().manual_seed(0)
    a = torch.randint(0, 5, (40,), generator=generator).float()  # ties → average ranks
    b = a + torch.randn(40, generator=generator)
    expected = pd.Series(a.numpy()).corr(pd.Series(b.numpy()), method="spearman")
    assert spearman(a, b) == pytest.approx(expected, abs=1e-12)
    assert math.isnan(spearman([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))
