"""`python -m sdtp longbench-predict`: greedy predictions of one task with one method at one keep ratio.

Per record, as the official LongBench v1 `pred.py` does it and with pruning in the prefill:
1. model input ids: the task's template filled with the record -> middle truncation of the prompt to
   `longbench.max_input_tokens` tokens -> wrapped as `longbench.chat_template` says (never for few-shot or code
   tasks; `sdtp.longbench.prompts.PromptFormat`);
2. `prefill_with_pruning` with the method's scorer and the config's schedule (timed, synchronised on both sides),
   and the method's KV-cache press when it has one (`kvpress:<press>`, `sdtp+<press>`: `sdtp.kv_compression`);
3. greedy decoding from the pruned cache, at most the task's `max_new_tokens`, stopping after EOS;
4. the generated ids decoded with `skip_special_tokens=True` (the prompt is not part of the prediction).

One untimed warm-up prefill on the first record comes first, so that `prefill_s` of record 0 does not include one-off
costs (CUDA context, kernel selection). Non-pruning methods (baseline) run at keep ratio 1.0 whatever `--ratio` says.

Output: one `PredictionRow` per record, in record order, handed to the caller as soon as it exists (`on_row`; the
command appends it to a `.partial` JSONL file at once). A rerun of a killed job resumes where it stopped:
`predict_task(..., done=k)` starts at record k.

A record that cannot be measured becomes a row with an empty prediction and no measurements (the scorer counts it
as 0), its `status` and `reason` (`sdtp.failures`): "oom" when it runs out of memory (the memory is freed), "error"
when the method cannot run on it (`CannotMeasure`: a KV-cache press that fails on a layer); the next record runs.
Any other error stops the job. A layer too short for the method's press is not a failure: the press leaves it
uncompressed and the row names it (`press_uncompressed_layers`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from sdtp.decoder import device_of
from sdtp.engine import decode_greedy, prefill_with_pruning
from sdtp.failures import OOM, recorded_failure
from sdtp.flops import compression_ratio
from sdtp.longbench.prompts import PromptFormat
from sdtp.longbench.tasks import TaskSpec
from sdtp.models import weights_of
from sdtp.oom import free_memory
from sdtp.schedule import KeepSchedule
from sdtp.timing import model_devices, timed

log = logging.getLogger(__name__)

LOG_EVERY = 10  # records between progress lines


@dataclass
class PredictionRow:
    """One record's prediction.

    _id, answers, all_classes, length: copied from the record (what the official scorer reads).
    pred:              the decoded generation (special tokens skipped).
    prompt_tokens:     model input ids after truncation and chat template.
    tokens_per_layer:  tokens entering each decoder layer during prefill (and cached by it, without a press).
    compression_ratio: prompt_tokens / mean(kv_lengths) (the SDTP paper's definition); None when "oom".
    prefill_s:         synchronised wall-clock seconds of the pruned prefill; None when "oom".
    new_tokens:        generated tokens, EOS included when there was one (<= the task's max_new_tokens).
    status:            "ok"; "oom" (out of memory) or "error" (`sdtp.failures.CannotMeasure`): pred "", no tokens
                       per layer, no times.
    reason:            why the record could not be measured (the error's first line); "" when "ok".
    chat_template:     how the prompt was wrapped (`longbench.chat_template`: official | model | none).
    kv_lengths:        tokens each layer cached after the prefill (= tokens_per_layer without a press).
    kv_budget, press_compression_ratio: the press's budget and fraction of KV pairs removed ("" and 0.0 without one).
    press_uncompressed_layers: layers the press left uncompressed, holding no more tokens than its window or sinks
                       (`sdtp.kv_compression.press_fits`); empty without a press.
    weights:           what the model's weights are (`sdtp.models.weights_of`: "pretrained", or e.g. "Q4_1 values
                       dequantized to float32" for a GGUF source).
    """

    _id: Any
    pred: str
    answers: list[str]
    all_classes: list[str] | None
    length: int
    prompt_tokens: int
    tokens_per_layer: list[int]
    compression_ratio: float | None
    prefill_s: float | None
    new_tokens: int
    status: str = "ok"
    chat_template: str = "official"
    kv_lengths: list[int] = field(default_factory=list)
    kv_budget: str = ""
    press_compression_ratio: float = 0.0
    press_uncompressed_layers: list[int] = field(default_factory=list)
    reason: str = ""
    weights: str = ""


def ensure_eos(model, tokenizer) -> None:
    """Stop at the tokenizer's EOS when the model's generation config names none (what `generate` would also miss)."""
    generation_config = getattr(model, "generation_config", None)
    has_eos = getattr(generation_config, "eos_token_id", None) is not None
    if not has_eos and getattr(model.config, "eos_token_id", None) is None and tokenizer.eos_token_id is not None:
        log.info("the model names no EOS token; stopping at the tokenizer's %r", tokenizer.eos_token)
        if generation_config is not None:
            generation_config.eos_token_id = tokenizer.eos_token_id
        else:
            model.config.eos_token_id = tokenizer.eos_token_id


def reference_ids(tokenizer, record: dict) -> list[int]:
    """Token ids of the record's first reference answer, then EOS: what the oracle's loss teacher-forces."""
    ids = tokenizer(" " + record["answers"][0], add_special_tokens=False)["input_ids"] if record["answers"] else []
    return ids + ([tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else [])


def _format(prompt_format: PromptFormat | int) -> PromptFormat:
    """A bare int is `max_input_tokens` with the default (official) wrapping."""
    return prompt_format if isinstance(prompt_format, PromptFormat) else PromptFormat(int(prompt_format))


def predict_record(
    model,
    tokenizer,
    task: TaskSpec,
    record: dict,
    schedule: KeepSchedule,
    scorer,
    prompt_format: PromptFormat | int,
    kv_compression=None,
) -> PredictionRow:
    """Encode, prefill with pruning (timed, every device the model spans synchronised), decode greedily; one
    `PredictionRow`."""
    prompt_format = _format(prompt_format)
    device = device_of(model)
    ids = prompt_format.encode(task, record, tokenizer)
    input_ids = torch.tensor([ids], dtype=torch.long, device=device)
    if hasattr(scorer, "set_reference"):  # the oracle's saliency is that of the reference answer (its loss)
        scorer.set_reference(reference_ids(tokenizer, record))
    devices = model_devices(model)
    prefill = lambda: prefill_with_pruning(model, input_ids, schedule, scorer, kv_compression=kv_compression)  # noqa: E731
    prefill_s, result = timed(prefill, devices)
    kv_lengths = result.kv_lengths  # before decoding grows the cache
    generated = decode_greedy(model, result, task.max_new_tokens, ignore_eos=False)
    generated_ids = generated[0].tolist()
    return PredictionRow(
        _id=record["_id"],
        pred=tokenizer.decode(generated_ids, skip_special_tokens=True),
        answers=record["answers"],
        all_classes=record.get("all_classes"),
        length=record["length"],
        prompt_tokens=len(ids),
        tokens_per_layer=list(result.tokens_per_layer),
        compression_ratio=compression_ratio(len(ids), kv_lengths),
        prefill_s=prefill_s,
        new_tokens=len(generated_ids),
        chat_template=prompt_format.chat_template,
        kv_lengths=kv_lengths,
        kv_budget="" if kv_compression is None else kv_compression.budget,
        press_compression_ratio=result.press_compression_ratio or 0.0,
        press_uncompressed_layers=result.press_uncompressed_layers,
    )


def failed_row(
    tokenizer, task: TaskSpec, record: dict, prompt_format: PromptFormat | int, status: str = OOM, reason: str = ""
) -> PredictionRow:
    """The row of a record that could not be measured (`status` "oom" or "error", and why): an empty prediction, no
    measurements."""
    prompt_format = _format(prompt_format)
    return PredictionRow(
        _id=record["_id"],
        pred="",
        answers=record["answers"],
        all_classes=record.get("all_classes"),
        length=record["length"],
        prompt_tokens=len(prompt_format.encode(task, record, tokenizer)),
        tokens_per_layer=[],
        compression_ratio=None,
        prefill_s=None,
        new_tokens=0,
        status=status,
        chat_template=prompt_format.chat_template,
        reason=reason,
    )


def _warm_up(model, tokenizer, task: TaskSpec, record: dict, schedule: KeepSchedule, scorer, prompt_format, press):
    """One untimed prefill of `record`; a failure `sdtp.failures` records is logged (the record's row will say it)."""
    failure = None
    try:
        ids = _format(prompt_format).encode(task, record, tokenizer)
        input_ids = torch.tensor([ids], dtype=torch.long, device=device_of(model))
        prefill_with_pruning(model, input_ids, schedule, scorer, kv_compression=press)
    except RuntimeError as error:  # torch.OutOfMemoryError and CannotMeasure are RuntimeErrors
        failure = recorded_failure(error)
        if failure is None:
            raise
    if failure is not None:
        log.warning("warm-up on record %r failed (%s): %s", record["_id"], *failure)
        free_memory()  # outside the except block: its traceback holds the failed prefill's tensors


def predict_task(
    model,
    tokenizer,
    task: TaskSpec,
    records: list[dict],
    schedule: KeepSchedule,
    scorer,
    prompt_format: PromptFormat | int,
    label: str = "",
    *,
    done: int = 0,
    on_row: Callable[[PredictionRow], None] | None = None,
    kv_compression=None,
) -> list[PredictionRow]:
    """Predictions for `records[done:]` in order (the first `done` ones were predicted by an earlier, interrupted run),
    after one untimed warm-up prefill; each row goes to `on_row` as soon as it exists; progress is logged every ~10
    records. A record that cannot be measured (`sdtp.failures.recorded_failure`) gives a `failed_row`, and the next
    one runs. `kv_compression`: the method's press (`sdtp.kv_compression.KVCompression`), or None."""
    todo = records[done:]
    if not todo:
        return []
    _warm_up(model, tokenizer, task, todo[0], schedule, scorer, prompt_format, kv_compression)
    rows: list[PredictionRow] = []
    total_prefill_s, ok_rows, failed_rows, weights = 0.0, 0, 0, weights_of(model)
    for i, record in enumerate(todo, start=done + 1):
        failure = None
        try:
            row = predict_record(model, tokenizer, task, record, schedule, scorer, prompt_format, kv_compression)
        except RuntimeError as error:  # torch.OutOfMemoryError and CannotMeasure are RuntimeErrors
            failure = recorded_failure(error)
            if failure is None:
                raise
        if failure is not None:
            status, reason = failure
            log.warning("%s%s: record %d/%d (%r): %s, %s", label, task.name, i, len(records), record["_id"], status,
                        reason)  # fmt: skip
            free_memory()  # outside the except block: its traceback holds the failed record's tensors
            row = failed_row(tokenizer, task, record, prompt_format, status, reason)
            failed_rows += 1
        else:
            ok_rows += 1
            total_prefill_s += row.prefill_s
        row.weights = weights
        rows.append(row)
        if on_row is not None:
            on_row(row)
        if i % LOG_EVERY == 0 or i == len(records):
            log.info(
                "%s%s: record %d/%d, mean prefill %.4f s, %d failed, last: %d prompt tokens, %d new tokens",
                label,
                task.name,
                i,
                len(records),
                total_prefill_s / ok_rows if ok_rows else float("nan"),
                failed_rows,
                row.prompt_tokens,
                row.new_tokens,
            )
    return rows
