"""SDTP's pruning module and its checkpoint format.

One small MLP per prune layer, `Linear(d, d/4) → GELU → Linear(d/4, 1)`, maps the hidden state of each token entering
that layer to an importance score. At inference only the ranking matters (the paper's 2-logit Gumbel-Softmax head is a
training device). The input is first RMS-normalised without learned weights: residual-stream magnitudes differ by
orders of magnitude across layers and tokens (attention sinks), which would otherwise dominate the MLP.

Checkpoint = a directory with `pruner.safetensors` (weights, keys `stages.<layer>.<i>.weight|bias`) and `pruner.json`
(`format`, `version`, `layers`, `hidden_size`, plus free-form `meta` such as the base model and keep ratio).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from sdtp.io import atomic_dir

FORMAT_NAME = "sdtp-pruner"
FORMAT_VERSION = 1
WEIGHTS_FILE = "pruner.safetensors"
META_FILE = "pruner.json"


class PruningModule(nn.Module):
    """Per-layer token scorers.

    Args:
        layers: the decoder layers this module scores before (one MLP each).
        hidden_size: the model's hidden size d.
    """

    def __init__(self, layers: list[int], hidden_size: int, eps: float = 1e-6):
        super().__init__()
        if hidden_size < 4:
            raise ValueError(f"hidden_size must be >= 4 (the MLP is d → d/4 → 1), got {hidden_size}")
        self.layers = sorted(int(layer) for layer in layers)
        self.hidden_size = int(hidden_size)
        self.eps = eps
        inner = hidden_size // 4
        self.stages = nn.ModuleDict(
            {
                str(layer): nn.Sequential(nn.Linear(hidden_size, inner), nn.GELU(), nn.Linear(inner, 1))
                for layer in self.layers
            }
        )

    def forward(self, layer: int, hidden_states: torch.Tensor) -> torch.Tensor:
        """Scores of the tokens entering `layer`.

        Args:
            hidden_states: (..., n, d) hidden states entering decoder layer `layer`.
        Returns:
            (..., n) float32 scores (for a `place`d or float32 module); higher = more important.
        """
        key = str(layer)
        if key not in self.stages:
            raise KeyError(
                f"this pruning module has no stage for layer {layer}; it was trained for layers {self.layers}"
            )
        first, activation, last = self.stages[key]
        x = hidden_states.to(device=first.weight.device, dtype=first.weight.dtype)  # a no-op once `place`d
        # RMS normalisation folded after the first matmul (it is linear): no normalised n × d copy is made, and the
        # mean square is accumulated in fp32 even for bf16 inputs.
        scale = torch.rsqrt(x.pow(2).mean(-1, keepdim=True, dtype=torch.float32) + self.eps).to(x.dtype)
        inner = activation(nn.functional.linear(x, first.weight) * scale + first.bias)
        # The last layer (d/4 → 1) in fp32: pure-bf16 scores tie (2,181 distinct values over 32,768 tokens), and ties
        # would decide the ranking.
        return last(inner.to(last.weight.dtype)).squeeze(-1)

    def place(self, devices: dict[int, torch.device], dtype: torch.dtype) -> PruningModule:
        """Put each stage on its decoder layer's device (`devices`: layer → device), the first linear layer in the
        model's `dtype` (its n × d input then needs no cast), the last one in fp32 (the scores). Once per model."""
        for layer in self.layers:
            first, _, last = self.stages[str(layer)]
            first.to(device=devices[layer], dtype=dtype)
            last.to(device=devices[layer], dtype=torch.float32)
        return self

    def save(self, directory: str | Path, meta: dict | None = None) -> Path:
        """Write the checkpoint directory atomically; returns its path."""
        directory = Path(directory)
        header = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "layers": self.layers,
            "hidden_size": self.hidden_size,
            "meta": meta or {},
        }
        tensors = {f"stages.{k}": v.detach().float().cpu().contiguous() for k, v in self.stages.state_dict().items()}
        with atomic_dir(directory) as tmp:
            save_file(tensors, str(tmp / WEIGHTS_FILE))
            (tmp / META_FILE).write_text(json.dumps(header, indent=2) + "\n")
        return directory

    @staticmethod
    def read_meta(directory: str | Path) -> dict:
        """The free-form `meta` of a checkpoint (base model, keep ratio, held-out figures), without its weights."""
        meta_path = Path(directory) / META_FILE
        if not meta_path.is_file():
            raise FileNotFoundError(
                f"pruner checkpoint incomplete: {meta_path} does not exist"
                " (train one with `python -m sdtp train-pruner`)"
            )
        return json.loads(meta_path.read_text()).get("meta", {})

    @classmethod
    def load(cls, directory: str | Path, map_location: str | torch.device = "cpu") -> PruningModule:
        """Read a checkpoint written by `save`; a clear error names what is missing or wrong."""
        directory = Path(directory)
        meta_path, weights_path = directory / META_FILE, directory / WEIGHTS_FILE
        for path in (meta_path, weights_path):
            if not path.is_file():
                raise FileNotFoundError(
                    f"pruner checkpoint incomplete: {path} does not exist (a checkpoint directory holds {META_FILE} "
                    f"and {WEIGHTS_FILE}; train one with `python -m sdtp train-pruner`)"
                )
        header = json.loads(meta_path.read_text())
        if header.get("format") != FORMAT_NAME or header.get("version") != FORMAT_VERSION:
            raise ValueError(
                f"{meta_path}: expected format {FORMAT_NAME!r} version {FORMAT_VERSION}, "
                f"got {header.get('format')!r} version {header.get('version')!r}"
            )
        module = cls(header["layers"], header["hidden_size"])
        state = {k.removeprefix("stages."): v for k, v in load_file(str(weights_path)).items()}
        module.stages.load_state_dict(state)
        module.meta = header.get("meta", {})
        return module.to(map_location).eval()
