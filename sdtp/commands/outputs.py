"""Writing a command's tables atomically (`sdtp.io`): a killed job leaves no readable half-file."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from sdtp.io import atomic_path


def write_parquet(df: pd.DataFrame, path: str | Path) -> Path:
    """Write `df` to Parquet atomically."""
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)
    return Path(path)
