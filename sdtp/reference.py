"""The masked reference: what a pruned prefill and decode must equal, computed by the unmodified model.

A full-length forward of the model in which, at every decoder layer, each query may attend only to the keys alive at
that layer (a per-layer 4-D additive mask installed with forward pre-hooks, eager attention). A token pruned before
layer l keeps its hidden state below l and influences nothing from l on — exactly what dropping it does — and every
token keeps its original position. So if positions were renumbered, the ragged cache wrong or decoding ignored it, the
engine's logits would differ from these. The tests and `python -m sdtp verify` share this one definition.

Cost: one full forward of n tokens with n × n masks (eager): meant for verification prompts of a few hundred tokens.
"""

from __future__ import annotations

import torch
from torch import nn


def alive_masks(kept_positions: list[torch.Tensor], n: int) -> list[torch.Tensor]:
    """Per decoder layer, (n,) bool on CPU: which of the prompt's n positions are alive (cached) at that layer."""
    masks = []
    for positions in kept_positions:
        alive = torch.zeros(n, dtype=torch.bool)
        alive[positions.cpu()] = True
        masks.append(alive)
    return masks


@torch.no_grad()
def masked_reference_logits(model: nn.Module, ids: torch.Tensor, alive_per_layer: list[torch.Tensor]) -> torch.Tensor:
    """(1, vocab) float32 last-position logits of a full forward where layer l's queries see only keys alive at l.

    Args:
        ids: (1, n) token ids.
        alive_per_layer: per decoder layer, (n,) bool over all positions of `ids`.
    Runs with eager attention (a float mask is added to the scores), whatever the model was loaded with; each mask
    goes to its layer's device (accelerate's device_map included).
    """
    n = ids.shape[1]
    causal = torch.ones(n, n, dtype=torch.bool).tril()
    min_value = torch.finfo(model.dtype).min
    handles = []
    for layer_idx, layer in enumerate(model.model.layers):
        allowed = causal & alive_per_layer[layer_idx][None, :]
        mask = torch.zeros(n, n, dtype=model.dtype).masked_fill(~allowed, min_value)[None, None]

        def hook(module, args, kwargs, mask=mask):
            hidden = args[0] if args else kwargs["hidden_states"]
            return args, {**kwargs, "attention_mask": mask.to(hidden.device)}

        handles.append(layer.register_forward_pre_hook(hook, with_kwargs=True))
    saved = model.config._attn_implementation
    model.config._attn_implementation = "eager"
    try:
        device = next(model.parameters()).device
        return model(ids.to(device), logits_to_keep=1).logits[:, -1].float()
    finally:
        model.config._attn_implementation = saved
        for handle in handles:
            handle.remove()


def reference_decode_logits(
    model: nn.Module, ids: torch.Tensor, alive_per_layer: list[torch.Tensor], tokens: torch.Tensor
) -> torch.Tensor:
    """(T, vocab) float32: the masked reference extended step by step with `tokens` (1, T), the tokens a decode chose.

    Row t is the reference distribution for token t: the prompt with its per-layer alive masks, followed by
    `tokens[:, :t]`, which every layer keeps (decoding prunes nothing).
    """
    rows, sequence = [], ids
    for t in range(tokens.shape[1]):
        alive = [torch.cat([a, torch.ones(t, dtype=torch.bool)]) for a in alive_per_layer]
        rows.append(masked_reference_logits(model, sequence, alive)[0])
        sequence = torch.cat([sequence, tokens[:, t : t + 1].to(sequence.device)], dim=1)
    return torch.stack(rows)
