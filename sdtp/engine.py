"""Pruned prefill on a ragged KV cache, and greedy decoding from that cache.

The engine runs the model's own modules — embedding, decoder layers, rotary embedding, final norm, LM head — one layer
at a time, so it can drop tokens between layers. No modeling code is copied: a new transformers release that keeps
these module names keeps working.

- Kept tokens keep their original position ids, so keys cached by earlier layers (rotated with those positions) and
  keys of later layers agree, and decoding continues at `original_length`.
- Layer l's cache holds only the tokens alive at layer l: a `DynamicCache` with per-layer lengths.
- Prefill uses the attention backend's own causal path (no mask tensor for SDPA/flash; the model's eager mask
  otherwise), so the unpruned engine costs what `model.forward` costs.
- A decode step feeds one token through every layer with no mask: a single query may attend to every cached key,
  whatever each layer's length. (`model.forward` would size one mask by layer 0's cache and fail on a ragged cache.)

- A KV-cache press (`kv_compression`, `sdtp.kv_compression`: kvpress's own press and hooks) may compress each
  layer's cache right after that layer's attention ran on the alive tokens: layer l then caches fewer than n_l
  tokens (the layer's output is unchanged; decoding reads the compressed cache, positions still original).

Batch size is 1: each prompt keeps its own tokens.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field

import torch
from torch import nn
from transformers import DynamicCache

from sdtp.decoder import (
    cache_keyword,
    causal_mask,
    check_window,
    device_of,
    rotary,
    run_decoder_layer,
    synchronize,
)
from sdtp.schedule import KeepSchedule
from sdtp.scorers import ScoreContext, Scorer


@dataclass
class PrefillResult:
    """Outcome of `prefill_with_pruning`.

    Attributes:
        logits: (1, vocab) float32 logits of the last prompt position.
        cache: the ragged `DynamicCache`; layer l holds `tokens_per_layer[l]` keys and values.
        kept_positions: per decoder layer, (n_l,) LongTensor of the original positions alive at that layer.
        original_length: prompt length n before pruning.
        tokens_per_layer: n_l, the number of tokens entering (and, without a press, cached by) each layer.
        scorer_s: seconds spent in the scorer (only measured with `time_scorer=True`, else None).
        press_compression_ratio: the press's fraction of KV pairs removed per layer (None without a press).
        press_uncompressed_layers: the layers the press left uncompressed, too short for it
            (`sdtp.kv_compression.press_fits`; empty without a press).
    """

    logits: torch.Tensor
    cache: DynamicCache
    kept_positions: list[torch.Tensor]
    original_length: int
    tokens_per_layer: list[int] = field(default_factory=list)
    scorer_s: float | None = None
    press_compression_ratio: float | None = None
    press_uncompressed_layers: list[int] = field(default_factory=list)

    @property
    def kv_lengths(self) -> list[int]:
        """Cached tokens per layer as the cache reports them (grows during decoding)."""
        return [self.cache.get_seq_length(layer) for layer in range(len(self.cache.layers))]


def _last_logits(model: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """LM head on the last position only: never materialise (n, vocab) logits."""
    decoder = model.model
    last = hidden[:, -1:]
    last = decoder.norm(last.to(device_of(decoder.norm)))
    return model.lm_head(last.to(device_of(model.lm_head)))[:, -1].float()


@torch.no_grad()
def _prefill_layers(model, input_ids, schedule, scorer, time_scorer):
    decoder = model.model
    layers = decoder.layers
    n = input_ids.shape[1]
    hidden = decoder.embed_tokens(input_ids.to(device_of(decoder.embed_tokens)))
    positions = torch.arange(n, device=hidden.device)
    cache = DynamicCache(config=model.config)
    kept_positions: list[torch.Tensor] = []
    position_embeddings = mask = None
    scorer_s = 0.0 if time_scorer else None
    prunes = scorer.prunes and schedule.keep_ratio < 1.0

    for idx, layer in enumerate(layers):
        device = device_of(layer)
        if hidden.device != device:  # accelerate dispatch: hidden states follow each layer's device
            hidden, positions = hidden.to(device), positions.to(device)
            position_embeddings = mask = None
        stage = schedule.stage_of(idx)
        if prunes and stage is not None:
            if position_embeddings is None:
                position_embeddings = rotary(decoder, hidden, positions)
            if time_scorer:
                synchronize(device)
                start = time.perf_counter()
            scores = scorer.score(ScoreContext(model, idx, stage, hidden, positions, position_embeddings))
            keep = schedule.select(scores.to(device))
            if time_scorer:
                synchronize(device)
                scorer_s += time.perf_counter() - start
            if keep.shape[0] < hidden.shape[1]:
                hidden, positions = hidden[:, keep], positions[keep]
                position_embeddings = mask = None
        if position_embeddings is None:
            position_embeddings = rotary(decoder, hidden, positions)
            mask = causal_mask(model, hidden)
        hidden = run_decoder_layer(layer, hidden, mask, positions, cache, position_embeddings)
        kept_positions.append(positions)
    return hidden, cache, kept_positions, scorer_s


def prefill_with_pruning(
    model: nn.Module,
    input_ids: torch.Tensor,
    schedule: KeepSchedule,
    scorer: Scorer,
    *,
    time_scorer: bool = False,
    kv_compression=None,
) -> PrefillResult:
    """Prefill `input_ids`, pruning tokens before the schedule's layers by the scorer's ranking.

    Args:
        model: a causal LM of the Qwen2/Llama/Mistral families (`model.model.layers`, `.rotary_emb`, `.norm`,
            `model.lm_head`), possibly dispatched over several devices by accelerate.
        input_ids: (1, n) prompt token ids.
        schedule: prune layers and keep ratio.
        scorer: ranks the alive tokens at each prune point (`sdtp.scorers.get_scorer`).
        time_scorer: synchronise around scorer calls and report their seconds (adds syncs: not for timed runs).
        kv_compression: a `sdtp.kv_compression.KVCompression` (anything whose `applied(model, n)` is a context
            manager hooking a press into the attention modules) compressing each layer's cache after its attention.
    Returns:
        PrefillResult with the last position's logits and the ragged cache.
    """
    if input_ids.dim() != 2 or input_ids.shape[0] != 1:
        raise ValueError(f"input_ids must have shape (1, n): batch size 1, got {tuple(input_ids.shape)}")
    n = input_ids.shape[1]
    if n == 0:
        raise ValueError("input_ids is empty: the prompt needs at least one token")
    schedule.validate(len(model.model.layers))
    check_window(model, n)
    scorer.begin(model, input_ids, schedule)
    pressing = kv_compression.applied(model, n) if kv_compression is not None else contextlib.nullcontext()
    with pressing:
        hidden, cache, kept_positions, scorer_s = _prefill_layers(model, input_ids, schedule, scorer, time_scorer)
    with torch.no_grad():
        logits = _last_logits(model, hidden)
    result = PrefillResult(
        logits=logits,
        cache=cache,
        kept_positions=kept_positions,
        original_length=n,
        tokens_per_layer=[int(p.shape[0]) for p in kept_positions],
        scorer_s=scorer_s,
        press_compression_ratio=None if kv_compression is None else kv_compression.last_compression_ratio,
        press_uncompressed_layers=list(getattr(kv_compression, "last_uncompressed_layers", None) or []),
    )
    # Shapes only (no device sync): a transformers release whose layers stop filling the cache they are given would
    # leave it empty and decoding would silently ignore the prompt.
    cached, alive = result.kv_lengths, result.tokens_per_layer
    # A press keeps at most what the layer saw, and at least one token.
    pressed_ok = all(0 < c <= a for c, a in zip(cached, alive, strict=True))
    if not (cached == alive if kv_compression is None else pressed_ok):
        raise RuntimeError(
            f"the decoder layers cached {result.kv_lengths} tokens per layer, the prefill kept "
            f"{result.tokens_per_layer}: this transformers version's decoder layers no longer fill the cache passed "
            f"as `{cache_keyword(type(model.model.layers[0]).forward)}`"
        )
    return result


@torch.no_grad()
def decode_step(
    model: nn.Module, cache: DynamicCache, token_id: torch.Tensor, position: int | torch.Tensor
) -> torch.Tensor:
    """Feed one token at original position `position` through every layer, appending to each layer's cache.

    Args:
        token_id: (1, 1) token id.
        position: its original position: an int, or a (1,) LongTensor already on the device (what `decode_greedy`
            passes, so that no step copies a Python number to the GPU: a blocking host-to-device copy per token).
    Returns:
        (1, vocab) float32 logits for the next token.
    """
    decoder = model.model
    hidden = decoder.embed_tokens(token_id.to(device_of(decoder.embed_tokens)))
    if isinstance(position, torch.Tensor):
        positions = position.reshape(1).to(hidden.device)
    else:
        positions = torch.tensor([position], device=hidden.device)
    position_embeddings = rotary(decoder, hidden, positions)
    for layer in decoder.layers:
        device = device_of(layer)
        if hidden.device != device:
            hidden, positions = hidden.to(device), positions.to(device)
            position_embeddings = rotary(decoder, hidden, positions)
        hidden = run_decoder_layer(layer, hidden, None, positions, cache, position_embeddings)
    return _last_logits(model, hidden)


def _eos_ids(model: nn.Module) -> set[int]:
    generation_config = getattr(model, "generation_config", None)
    eos = getattr(generation_config, "eos_token_id", None)
    if eos is None:
        eos = getattr(model.config, "eos_token_id", None)
    if eos is None:
        return set()
    return {int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos])}


@torch.no_grad()
def decode_greedy(
    model: nn.Module,
    prefill_result: PrefillResult,
    max_new_tokens: int,
    ignore_eos: bool = False,
    return_logits: bool = False,
):
    """Greedy tokens decoded from the pruned cache, positions continuing at `original_length`.

    The first token is the argmax of the prefill logits; each further token costs one `decode_step`. The cache is
    extended in place (run a fresh prefill to decode again). With `ignore_eos=True` exactly `max_new_tokens` tokens come
    back; otherwise decoding stops after the first EOS (included).

    Returns:
        (1, T) LongTensor of generated ids, T ≤ max_new_tokens; with `return_logits=True` also (T, vocab) float32
        logits, row t being the distribution token t was chosen from.
    """
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    eos = set() if ignore_eos else _eos_ids(model)
    logits = prefill_result.logits
    tokens, all_logits = [], []
    # Positions live on the device and advance there: one copy per prompt (tiny), none per token.
    position = torch.full((1,), prefill_result.original_length, device=device_of(model.model.embed_tokens))
    for step in range(max_new_tokens):
        token = logits.argmax(-1, keepdim=True)  # (1, 1)
        tokens.append(token)
        if return_logits:
            all_logits.append(logits[0])
        if step == max_new_tokens - 1 or (eos and int(token) in eos):  # int() syncs: only when EOS matters
            break
        logits = decode_step(model, prefill_result.cache, token, position + step)
    out = torch.cat([t.to(tokens[0].device) for t in tokens], dim=1)
    return (out, torch.stack([step.to(all_logits[0].device) for step in all_logits])) if return_logits else out
