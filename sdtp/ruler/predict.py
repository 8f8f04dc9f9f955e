"""Greedy RULER predictions with pruning in the prefill: `predict_records`.

Per record, as RULER's `pred/call_api.py` does it with a HF model, and with the method's pruning in the prefill:
1. model input ids: `prompts.record_input_ids` (the input wrapped as the record's `chat_template` says, then the answer
   prefix; the very ids whose count the generator fitted into the target length);
2. `prefill_with_pruning` with the method's scorer and schedule (timed, every device the model spans synchronised),
   and the method's KV-cache press when it has one;
3. greedy decoding from the pruned cache, at most the task's `tokens_to_generate`, stopping after EOS;
4. the generated ids decoded with `skip_special_tokens=True`.

One untimed warm-up prefill on the first record to predict comes first (one-off costs stay out of `prefill_s`).
A record that cannot be measured (`sdtp.failures.recorded_failure`: out of memory, or a press that cannot run on it)
becomes a row with an empty prediction, no measurements, its `status` and `reason`; the scorer counts it as 0 and the
table counts it. Any other error stops the job.

A row (dict, JSON-ready) is the record's identity and references plus the measurements:

    _id                 the record's `index` (the key a resumed job checks rows against)
    task, max_seq_length, length, input_tokens, tokens_to_generate, chat_template, seed, outputs: from the record
    pred                the decoded generation
    prompt_tokens       model input ids fed (= the record's `input_tokens` when the tokenizer is the generator's)
    tokens_per_layer    tokens entering each decoder layer during the prefill
    kv_lengths          tokens each layer cached after the prefill
    kv_fraction         mean(kv_lengths) / prompt_tokens: the KV budget actually used (1.0 without pruning)
    compression_ratio   prompt_tokens / mean(kv_lengths), the SDTP paper's definition
    kv_budget, press_compression_ratio: the KV-cache press's budget and fraction of KV pairs removed ("" and 0.0
                        without a press; as LongBench's rows)
    press_uncompressed_layers: layers the press left uncompressed (no more tokens than its window or sinks)
    prefill_s           synchronised wall-clock seconds of the pruned prefill
    new_tokens          generated tokens, EOS included when there was one
    status, reason      "ok" and ""; or "oom" / "error" and why
    weights             what the model's weights are (`sdtp.models.weights_of`: "pretrained", or e.g. "Q4_1 values
                        dequantized to float32" for a GGUF source)
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch

from sdtp.decoder import device_of
from sdtp.engine import decode_greedy, prefill_with_pruning
from sdtp.failures import recorded_failure
from sdtp.flops import compression_ratio
from sdtp.models import weights_of
from sdtp.oom import free_memory
from sdtp.ruler.prompts import record_input_ids
from sdtp.schedule import KeepSchedule
from sdtp.timing import model_devices, timed

log = logging.getLogger(__name__)

LOG_EVERY = 10  # records between progress lines
RECORD_FIELDS = ("task", "max_seq_length", "length", "input_tokens", "tokens_to_generate", "chat_template", "seed",
                 "outputs")  # fmt: skip


def _record_part(record: dict[str, Any]) -> dict[str, Any]:
    return {"_id": record["index"], **{key: record[key] for key in RECORD_FIELDS}}


def reference_ids(tokenizer, record: dict[str, Any]) -> list[int]:
    """The references as the model should continue the answer prefix, then EOS: what the oracle's loss
    teacher-forces."""
    ids = tokenizer(" " + ", ".join(record["outputs"]), add_special_tokens=False)["input_ids"]
    return ids + ([tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else [])


def predict_record(model, tokenizer, record: dict, schedule: KeepSchedule, scorer, kv_compression=None) -> dict:
    """Encode, prefill with pruning (timed), decode greedily up to the record's `tokens_to_generate`; one row."""
    ids = record_input_ids(record, tokenizer)
    input_ids = torch.tensor([ids], dtype=torch.long, device=device_of(model))
    if hasattr(scorer, "set_reference"):  # the oracle's saliency is that of the reference answer (its loss)
        scorer.set_reference(reference_ids(tokenizer, record))
    prefill = lambda: prefill_with_pruning(model, input_ids, schedule, scorer, kv_compression=kv_compression)  # noqa: E731
    prefill_s, result = timed(prefill, model_devices(model))
    kv_lengths = list(result.kv_lengths)  # before decoding grows the cache
    generated = decode_greedy(model, result, record["tokens_to_generate"], ignore_eos=False)[0].tolist()
    ratio = compression_ratio(len(ids), kv_lengths)
    return {
        **_record_part(record),
        "pred": tokenizer.decode(generated, skip_special_tokens=True),
        "prompt_tokens": len(ids),
        "tokens_per_layer": list(result.tokens_per_layer),
        "kv_lengths": kv_lengths,
        "kv_fraction": 1.0 / ratio,
        "compression_ratio": ratio,
        "kv_budget": "" if kv_compression is None else kv_compression.budget,
        "press_compression_ratio": result.press_compression_ratio or 0.0,
        "press_uncompressed_layers": list(result.press_uncompressed_layers),
        "prefill_s": prefill_s,
        "new_tokens": len(generated),
        "status": "ok",
        "reason": "",
    }


def failed_row(tokenizer, record: dict, status: str, reason: str) -> dict:
    """The row of a record that could not be measured: an empty prediction, no measurements."""
    return {
        **_record_part(record),
        "pred": "",
        "prompt_tokens": len(record_input_ids(record, tokenizer)),
        "tokens_per_layer": [],
        "kv_lengths": [],
        "kv_fraction": None,
        "compression_ratio": None,
        "kv_budget": "",
        "press_compression_ratio": None,
        "press_uncompressed_layers": [],
        "prefill_s": None,
        "new_tokens": 0,
        "status": status,
        "reason": reason,
    }


def _try(call: Callable[[], Any]) -> tuple[Any, tuple[str, str] | None]:
    """(call's result, None), or (None, (status, reason)) for a failure a job records; memory freed after it."""
    failure = None
    try:
        return call(), None
    except RuntimeError as error:  # torch.OutOfMemoryError and CannotMeasure are RuntimeErrors
        failure = recorded_failure(error)
        if failure is None:
            raise
    free_memory()  # outside the except block: its traceback holds the failed prefill's tensors
    return None, failure


def predict_records(
    model,
    tokenizer,
    records: list[dict],
    schedule: KeepSchedule,
    scorer,
    *,
    done: int = 0,
    on_row: Callable[[dict], None] | None = None,
    kv_compression=None,
    label: str = "",
) -> list[dict]:
    """Rows for `records[done:]` in order (the first `done` came from an interrupted run), after one untimed warm-up
    prefill; each row goes to `on_row` as soon as it exists."""
    todo = records[done:]
    if not todo:
        return []
    warm_ids = torch.tensor([record_input_ids(todo[0], tokenizer)], dtype=torch.long, device=device_of(model))
    _, failure = _try(lambda: prefill_with_pruning(model, warm_ids, schedule, scorer, kv_compression=kv_compression))
    if failure is not None:
        log.warning("warm-up on record %r failed (%s): %s", todo[0]["index"], *failure)
    rows, failed, weights = [], 0, weights_of(model)
    for i, record in enumerate(todo, start=done + 1):
        row, failure = _try(lambda r=record: predict_record(model, tokenizer, r, schedule, scorer, kv_compression))
        if failure is not None:
            log.warning("%s%s: record %d/%d: %s, %s", label, record["task"], i, len(records), *failure)
            row, failed = failed_row(tokenizer, record, *failure), failed + 1
        row["weights"] = weights
        rows.append(row)
        if on_row is not None:
            on_row(row)
        if i % LOG_EVERY == 0 or i == len(records):
            log.info("%s%s: record %d/%d, %d failed, last: %d prompt tokens, %d new tokens", label, record["task"], i,
                     len(records), failed, row["prompt_tokens"], row["new_tokens"])  # fmt: skip
    return rows
