"""Scoring a continuation through a (pruned or compressed) KV cache, and greedy generation from it with stop strings:
the token-level half of the lm-evaluation-harness model (`sdtp.lm_eval`).

A prefill (`sdtp.engine.prefill_with_pruning`) leaves a ragged cache: layer l holds the context tokens alive (or kept
by a press) at l, at their original positions. Continuation tokens are never pruned: they are appended to every
layer's cache at positions original_length, original_length + 1, …, each attending to all keys cached at that layer
and to the continuation tokens before it — in one block pass with a per-layer mask (SDPA, eager), or token by token
with `decode_step` (any backend). Batch size 1.

Scoring never holds the m × vocab logits of a long continuation (a rolling log-likelihood window is max_length tokens:
three float32 copies would be 56 GiB at m = 32K with Qwen2's 152K vocabulary): the LM head runs on `LOGIT_CHUNK`
positions at a time, and only each token's log-probability and whether it was the greedy one are kept, as
`sdtp.saliency` chunks its objective.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sdtp.decoder import device_of, rotary, run_decoder_layer
from sdtp.engine import PrefillResult, decode_step

# Attention backends that apply an arbitrary additive 4-D mask (the continuation block's); others score it token by
# token with `decode_step`, which needs no mask.
BLOCK_MASK_ATTENTION = ("sdpa", "eager")
# Continuation positions whose logits exist at once: the (chunk, vocab) float32 logits and their log-softmax are the
# largest tensors of a scoring (2 × 1024 × 152K × 4 bytes ≈ 1.2 GiB for Qwen2).
LOGIT_CHUNK = 1024


def block_mask(cached: int, block: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(1, 1, block, cached + block) additive mask: every cached key, and the block causally."""
    allowed = torch.ones(block, cached + block, dtype=torch.bool, device=device)
    allowed[:, cached:] = torch.ones(block, block, dtype=torch.bool, device=device).tril()
    return torch.zeros(allowed.shape, dtype=dtype, device=device).masked_fill(~allowed, torch.finfo(dtype).min)[
        None, None
    ]


@torch.no_grad()
def _block_hidden(model: nn.Module, prefill: PrefillResult, block_ids: torch.Tensor) -> torch.Tensor:
    """(m, d) final hidden states (after the final norm, on the LM head's device) after each of `block_ids` (1, m),
    fed through the ragged cache in one pass.

    Each layer appends the m tokens (at original positions original_length …) to its own cache; query i sees every key
    cached at that layer and block tokens 0 … i.
    """
    decoder = model.model
    m = block_ids.shape[1]
    hidden = decoder.embed_tokens(block_ids.to(device_of(decoder.embed_tokens)))
    positions = torch.arange(prefill.original_length, prefill.original_length + m, device=hidden.device)
    position_embeddings = rotary(decoder, hidden, positions)
    for idx, layer in enumerate(decoder.layers):
        device = device_of(layer)
        if hidden.device != device:
            hidden, positions = hidden.to(device), positions.to(device)
            position_embeddings = rotary(decoder, hidden, positions)
        mask = block_mask(prefill.cache.get_seq_length(idx), m, hidden.dtype, hidden.device)
        hidden = run_decoder_layer(layer, hidden, mask, positions, prefill.cache, position_embeddings)
    hidden = decoder.norm(hidden.to(device_of(decoder.norm)))
    return hidden[0].to(device_of(model.lm_head))


def _scored(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(c,) float32 log-probabilities of `targets` (c,) under `logits` (c, vocab), and (c,) whether each target is the
    argmax (as HFLM decides it: on the log-probabilities)."""
    logprobs = F.log_softmax(logits.float(), dim=-1)
    return logprobs.gather(1, targets[:, None])[:, 0], logprobs.argmax(-1) == targets


@torch.no_grad()
def continuation_token_logprobs(
    model: nn.Module, prefill: PrefillResult, continuation: list[int], chunk: int = LOGIT_CHUNK
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each continuation token's log-probability and whether it is the greedy token: (m,) float32, (m,) bool.

    Token 0 is scored by the prefill's last logits; tokens 1 … by continuation[:-1] fed through the pruned cache
    (never pruned), the LM head applied to `chunk` positions at a time. The cache is left as the prefill made it (the
    fed tokens are cropped off again), so the same prefill scores the next continuation of the same context.
    """
    if not continuation:
        raise ValueError("continuation is empty: there is nothing to score")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1 position, got {chunk}")
    targets = torch.tensor(continuation, dtype=torch.long, device=prefill.logits.device)
    scored = [_scored(prefill.logits.reshape(1, -1), targets[:1])]
    fed = continuation[:-1]
    if fed:
        ids = torch.tensor([fed], dtype=torch.long, device=device_of(model.model.embed_tokens))
        if model.config._attn_implementation in BLOCK_MASK_ATTENTION:
            hidden = _block_hidden(model, prefill, ids)
            for start in range(0, len(fed), chunk):
                logits = model.lm_head(hidden[start : start + chunk]).to(targets.device)
                scored.append(_scored(logits, targets[1 + start : 1 + start + chunk]))
        else:
            for i in range(len(fed)):
                step = decode_step(model, prefill.cache, ids[:, i : i + 1], prefill.original_length + i)
                scored.append(_scored(step.to(targets.device), targets[1 + i : 2 + i]))
        for layer in prefill.cache.layers:
            layer.crop(-len(fed))
    logprobs, greedy = zip(*scored, strict=True)
    return torch.cat(logprobs), torch.cat(greedy)


@torch.no_grad()
def generate_greedy(
    model: nn.Module,
    prefill: PrefillResult,
    max_new_tokens: int,
    stop_when,
    eos_ids: set[int],
) -> list[int]:
    """Greedy token ids decoded from the (pruned) cache: at most `max_new_tokens`, stopping after an EOS id or when
    `stop_when(ids)` says so (the harness's stop strings, checked on the decoded text)."""
    tokens: list[int] = []
    logits = prefill.logits
    for step in range(max_new_tokens):
        token = int(logits.argmax(-1))
        tokens.append(token)
        if token in eos_ids or stop_when(tokens) or step == max_new_tokens - 1:
            break
        token_ids = torch.tensor([[token]], device=device_of(model.model.embed_tokens))
        logits = decode_step(model, prefill.cache, token_ids, prefill.original_length + step)
    return tokens


def eos_token_ids(model: nn.Module, tokenizer) -> set[int]:
    """EOS ids generation stops at: the generation config's (as `generate` does), else the tokenizer's."""
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if eos is None:
        eos = tokenizer.eos_token_id
    if eos is None:
        return set()
    return {int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos])}
