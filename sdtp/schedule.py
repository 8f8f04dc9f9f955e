"""Where SDTP prunes and how many tokens each stage keeps.

A `KeepSchedule` names the decoder layers before which a pruning stage runs and the fraction `keep_ratio` of the
tokens reaching that stage that it keeps, so after stage s the cumulative keep is ``keep_ratio ** s``. At every stage
the first `sink_tokens` tokens (attention sinks) and the local window (the last `local_ratio` of the current tokens,
at least `min_local`) are always kept; the rest of the budget goes to the top-scored tokens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class KeepSchedule:
    """Prune points and keep ratio of one SDTP configuration.

    Args:
        layers: decoder-layer indices (0-based) before which a pruning stage runs; strictly distinct.
        keep_ratio: fraction in (0, 1] of the tokens reaching a stage that the stage keeps.
        sink_tokens: leading tokens always kept (attention sinks).
        local_ratio: fraction of the current tokens, at the end, always kept (the local window).
        min_local: the local window holds at least this many tokens.
    """

    layers: list[int]
    keep_ratio: float
    sink_tokens: int = 4
    local_ratio: float = 0.1
    min_local: int = 16
    _stage_of_layer: dict[int, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        layers = [int(layer) for layer in self.layers]
        object.__setattr__(self, "layers", sorted(layers))
        if not isinstance(self.keep_ratio, (int, float)) or not 0.0 < float(self.keep_ratio) <= 1.0:
            raise ValueError(f"keep_ratio must be in (0, 1], got {self.keep_ratio!r}")
        duplicates = sorted({layer for layer in layers if layers.count(layer) > 1})
        if duplicates:
            raise ValueError(
                f"prune layers must be distinct, got duplicate layer(s) {duplicates} in {list(self.layers)}"
            )
        negative = [layer for layer in layers if layer < 0]
        if negative:
            raise ValueError(f"prune layers must be >= 0, got {negative}")
        if self.sink_tokens < 0:
            raise ValueError(f"sink_tokens must be >= 0, got {self.sink_tokens}")
        if not 0.0 <= self.local_ratio <= 1.0:
            raise ValueError(f"local_ratio must be in [0, 1], got {self.local_ratio}")
        if self.min_local < 0:
            raise ValueError(f"min_local must be >= 0, got {self.min_local}")
        object.__setattr__(self, "_stage_of_layer", {layer: stage for stage, layer in enumerate(self.layers)})

    @classmethod
    def from_config(
        cls, start: int, step: int, stages: int, keep_ratio: float, num_layers: int, **kwargs
    ) -> KeepSchedule:
        """The paper's layout: `stages` prune points at layers start, start+step, …; all must exist in the model."""
        if stages < 0:
            raise ValueError(f"stages must be >= 0, got {stages}")
        if stages > 1 and step <= 0:
            raise ValueError(f"step must be >= 1 when stages > 1, got {step}")
        schedule = cls([start + step * i for i in range(stages)], keep_ratio, **kwargs)
        schedule.validate(num_layers)
        return schedule

    def validate(self, num_layers: int) -> None:
        """Raise `ValueError` if a prune layer does not exist in a model with `num_layers` decoder layers."""
        outside = [layer for layer in self.layers if layer >= num_layers]
        if outside:
            raise ValueError(
                f"prune layer(s) {outside} outside the model: it has {num_layers} decoder layers "
                f"(0..{num_layers - 1}); "
                "lower `schedule.start`/`schedule.step`/`schedule.stages` or list valid `schedule.layers`"
            )

    @property
    def num_stages(self) -> int:
        return len(self.layers)

    def stage_of(self, layer: int) -> int | None:
        """The stage index that runs before `layer`, or None when `layer` is not a prune point."""
        return self._stage_of_layer.get(layer)

    def protected_count(self, n: int) -> int:
        """How many of `n` tokens are always kept: sinks plus the local window (overlaps counted once)."""
        local = max(self.min_local, math.ceil(self.local_ratio * n))
        return min(n, self.sink_tokens + local)

    def keep_count(self, n: int) -> int:
        """Tokens a stage keeps out of `n`: round(keep_ratio·n), never fewer than the protected tokens or 1."""
        if n <= 0:
            return 0
        budget = math.floor(self.keep_ratio * n + 0.5)
        return min(n, max(1, budget, self.protected_count(n)))

    def counts(self, n: int) -> list[int]:
        """Tokens alive after each stage, starting from `n`: the per-stage keep counts, cumulative."""
        alive = []
        for _ in self.layers:
            n = self.keep_count(n)
            alive.append(n)
        return alive

    def tokens_scored(self, n: int) -> list[int]:
        """Tokens reaching (and scored at) each stage for a prompt of `n` tokens: `n`, then what each stage keeps."""
        return [n, *self.counts(n)[:-1]] if self.layers else []

    def tokens_per_layer(self, n: int, num_layers: int) -> list[int]:
        """Tokens entering each of `num_layers` decoder layers for a prompt of `n` tokens (the ragged cache's
        lengths)."""
        self.validate(num_layers)
        out, alive = [], n
        for layer in range(num_layers):
            if self.stage_of(layer) is not None:
                alive = self.keep_count(alive)
            out.append(alive)
        return out

    def select(self, scores: torch.Tensor) -> torch.Tensor:
        """Indices of the tokens a stage keeps, sorted ascending.

        Args:
            scores: (n,) importance of each current token; higher is kept first. NaN counts as least important.
        Returns:
            (keep_count(n),) LongTensor on `scores.device`. Sinks and the local window are always included; among
            equal scores the earlier token wins (a stable sort), so selection is deterministic.
        """
        if scores.dim() != 1:
            raise ValueError(f"scores must be 1-D (one score per token), got shape {tuple(scores.shape)}")
        n = scores.shape[0]
        keep = self.keep_count(n)
        if keep >= n:
            return torch.arange(n, device=scores.device)
        ranked = torch.nan_to_num(scores.detach().float(), nan=-math.inf)
        protected = self.protected_count(n)
        local = protected - min(self.sink_tokens, n)
        ranked[: self.sink_tokens] = math.inf
        if local > 0:
            ranked[n - local :] = math.inf
        top = torch.sort(ranked, descending=True, stable=True).indices[:keep]
        return torch.sort(top).values
