"""Train the offline demo's tiny Qwen2 on the synthetic long-context QA world, so SDTP has a model that answers.

`train_demo_model(out_dir, config)` builds a small `Qwen2ForCausalLM` over the word-level tokenizer's vocabulary, trains
it with AdamW on freshly generated training examples (`synthetic.generate_training_examples`: a new, seeded batch every
step, so there are no epochs and no overfitting to a fixed set), evaluates held-out exact match per task and context
length, and saves model + tokenizer + `metrics.json` into `out_dir` atomically.

Loss on the answer tokens only (the response and its `</s>`). The rest of the prompt is uniformly random filler,
names and codes: its next-token loss is irreducible noise that would swamp the one learnable signal — finding the fact
the question asks for and copying its value — and would spend the tiny model's capacity on modelling filler.

Contexts grow on a curriculum (short first): retrieval circuits form quickly on short contexts and then carry over to
long ones, while training from the start on long contexts stalls on a loss plateau.

Exact match is measured by teacher forcing: greedy decoding emits exactly the reference answer followed by `</s>` if and
only if the argmax at every answer position (and at the `</s>` after it) is the reference token — so one batched
forward pass scores what `generate(do_sample=False)` would, without generating.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from pathlib import Path

import torch
from transformers import GenerationConfig, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

from sdtp.data.synthetic import SYNTHETIC_TASKS, build_prompt, generate_records, generate_training_examples
from sdtp.data.tokenizer import build_tokenizer
from sdtp.io import atomic_dir

log = logging.getLogger(__name__)

DEFAULT_DEMO_CONFIG: dict = {
    "seed": 0,
    "tasks": ["synthetic_passkey", "synthetic_needle_qa"],
    # model (Qwen2Config)
    "hidden_size": 64,
    "intermediate_size": 256,
    "num_hidden_layers": 6,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "rope_theta": 10000.0,
    "max_position_embeddings": 4096,
    # optimisation
    "steps": 2000,
    "batch_size": 32,
    "lr": 1e-3,
    "warmup_steps": 30,
    "min_lr_ratio": 0.5,  # cosine decay to lr * min_lr_ratio
    "weight_decay": 0.01,
    "grad_clip": 1.0,
    # step from which each task joins the batches (absent: from step 0); retrieval is learnt on the passkey first
    "task_start": {"synthetic_needle_qa": 300},
    # curriculum stages [from_step, min_context_words, max_context_words]
    "curriculum": [[0, 28, 48], [1200, 48, 120], [1400, 120, 250], [1600, 250, 400]],
    # evaluation (held-out records of generate_records, seed eval_seed)
    "eval_lengths": [200, 300, 400],
    "eval_records": 100,
    "eval_seed": 12345,
    "eval_batch_size": 50,
    "log_every": 50,
    "threads": 2,
}

# Keys that change how training runs or reports, not the model it produces.
NOT_RECIPE_KEYS = ("log_every", "threads")

# The demo model as `python -m sdtp demo-model --train` builds it from `DEFAULT_DEMO_CONFIG` (seed 0), shipped with the
# package (a 1.6 MB checkpoint) so a first run skips ~8 CPU-minutes of training and every machine's demo tables agree.
SHIPPED_CHECKPOINT = Path(__file__).parent / "demo_checkpoint"


def build_model(config: dict, tokenizer: PreTrainedTokenizerFast) -> Qwen2ForCausalLM:
    """A freshly initialised (seeded) tiny Qwen2 whose vocabulary and special ids are the tokenizer's."""
    torch.manual_seed(config["seed"])
    model_config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=config["hidden_size"],
        intermediate_size=config["intermediate_size"],
        num_hidden_layers=config["num_hidden_layers"],
        num_attention_heads=config["num_attention_heads"],
        num_key_value_heads=config["num_key_value_heads"],
        max_position_embeddings=config["max_position_embeddings"],
        rope_parameters={"rope_type": "default", "rope_theta": config["rope_theta"]},
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = Qwen2ForCausalLM(model_config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        do_sample=False,
        max_new_tokens=max(task["max_new_tokens"] for task in SYNTHETIC_TASKS.values()),
    )
    return model


def encode_examples(
    tokenizer: PreTrainedTokenizerFast, prompts: list[str], responses: list[str]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded `<s> prompt response </s>` ids and labels (-100 everywhere but the response and its `</s>`).

    Returns:
        input_ids: (batch, n) long, padded with `<pad>` on the right (causal attention never looks right, so pads need
        no attention mask and every sequence keeps positions 0, 1, …).
        labels: (batch, n) long; label[t] is the target of position t (the loss shifts by one).
    """
    prompt_ids = tokenizer(prompts)["input_ids"]
    response_ids = tokenizer(responses, add_special_tokens=False)["input_ids"]
    rows = [p + r + [tokenizer.eos_token_id] for p, r in zip(prompt_ids, response_ids, strict=True)]
    width = max(len(row) for row in rows)
    input_ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    for i, (row, p) in enumerate(zip(rows, prompt_ids, strict=True)):
        input_ids[i, : len(row)] = torch.tensor(row)
        labels[i, len(p) : len(row)] = torch.tensor(row[len(p) :])
    return input_ids, labels


def answer_loss_and_hits(
    model: Qwen2ForCausalLM, input_ids: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy over labelled positions, and per sequence whether every labelled token is the argmax.

    Args:
        input_ids, labels: (batch, n) as from `encode_examples`.
    Returns:
        loss: scalar tensor. hits: (batch,) bool — greedy decoding would reproduce the labelled tokens exactly.
    """
    targets = labels[:, 1:]
    labelled = targets != -100  # (batch, n-1): positions whose next token is an answer token
    hidden = model.model(input_ids=input_ids, use_cache=False).last_hidden_state[:, :-1]
    # The LM head only where a label is: the answer is a few tokens of hundreds, and the head is a large part of the
    # cost.
    logits = model.lm_head(hidden[labelled]).float()  # (labelled tokens, vocab)
    loss = torch.nn.functional.cross_entropy(logits, targets[labelled])
    correct = torch.ones_like(labelled)
    correct[labelled] = logits.argmax(-1) == targets[labelled]
    return loss, correct.all(dim=1)


@torch.no_grad()
def evaluate_exact_match(
    model: Qwen2ForCausalLM, tokenizer: PreTrainedTokenizerFast, config: dict
) -> dict[str, dict[str, float]]:
    """Held-out greedy exact match per task and context length: {task: {str(words): accuracy}}."""
    model.eval()
    results: dict[str, dict[str, float]] = {}
    for task in config["tasks"]:
        results[task] = {}
        for words in config["eval_lengths"]:
            records = generate_records(task, config["eval_records"], words, config["eval_seed"])
            hits = 0
            for i in range(0, len(records), config["eval_batch_size"]):
                batch = records[i : i + config["eval_batch_size"]]
                input_ids, labels = encode_examples(
                    tokenizer, [build_prompt(r) for r in batch], [r["answers"][0] for r in batch]
                )
                hits += int(answer_loss_and_hits(model, input_ids, labels)[1].sum())
            results[task][str(words)] = hits / len(records)
    model.train()
    return results


def curriculum_stage(config: dict, step: int) -> tuple[int, int]:
    """The curriculum's (min context words, max context words) at `step`."""
    current = config["curriculum"][0]
    for stage in config["curriculum"]:
        if step >= stage[0]:
            current = stage
    return int(current[1]), int(current[2])


def active_tasks(config: dict, step: int) -> list[str]:
    """The tasks trained at `step`: those whose `task_start` step has come (a task without one starts at 0)."""
    tasks = [task for task in config["tasks"] if step >= config["task_start"].get(task, 0)]
    return tasks or list(config["tasks"])


def learning_rate(config: dict, step: int) -> float:
    """Linear warm-up, then cosine decay from `lr` to `lr * min_lr_ratio` at the last step."""
    lr = config["lr"]
    if step < config["warmup_steps"]:
        return lr * (step + 1) / config["warmup_steps"]
    progress = (step - config["warmup_steps"]) / max(1, config["steps"] - config["warmup_steps"])
    floor = lr * config["min_lr_ratio"]
    return floor + (lr - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def training_batch(config: dict, tokenizer: PreTrainedTokenizerFast, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The seeded batch of `step`: training examples step*batch … (step+1)*batch-1 (tasks interleaved), sharing one
    context length drawn from the curriculum's range (similar lengths pad little)."""
    lo, hi = curriculum_stage(config, step)
    generator = torch.Generator().manual_seed(config["seed"] * 1_000_003 + step)
    words = int(torch.randint(lo, hi + 1, (1,), generator=generator))
    tasks = active_tasks(config, step)
    examples = generate_training_examples(
        config["batch_size"], words, config["seed"], tasks, start=step * config["batch_size"]
    )
    return encode_examples(tokenizer, [e["prompt"] for e in examples], [e["response"] for e in examples])


def demo_config(overrides: dict | None = None) -> dict:
    """`DEFAULT_DEMO_CONFIG` with `overrides` (the config's `demo:` section and `seed`); unknown keys are an error."""
    unknown = set(overrides or {}) - set(DEFAULT_DEMO_CONFIG)
    if unknown:
        raise ValueError(
            f"unknown demo config keys {sorted(unknown)} in config section `demo`; valid keys: "
            f"{', '.join(DEFAULT_DEMO_CONFIG)}"
        )
    return {**DEFAULT_DEMO_CONFIG, **(overrides or {})}


def recipe(config: dict) -> dict:
    """What determines the trained model: the demo config without `NOT_RECIPE_KEYS`."""
    return {key: value for key, value in demo_config(config).items() if key not in NOT_RECIPE_KEYS}


def shipped_recipe(checkpoint: str | Path = SHIPPED_CHECKPOINT) -> dict | None:
    """The recipe a shipped checkpoint was trained with (its `metrics.json`), None when there is none."""
    try:
        metrics = json.loads((Path(checkpoint) / "metrics.json").read_text())
    except FileNotFoundError:
        return None
    return recipe(metrics["config"])


def train(config: dict) -> tuple[Qwen2ForCausalLM, PreTrainedTokenizerFast, dict]:
    """Train a demo model in memory; returns (model, tokenizer, metrics). See `train_demo_model`."""
    config = demo_config(config)
    threads_before = torch.get_num_threads()
    torch.set_num_threads(config["threads"])
    try:
        tokenizer = build_tokenizer()
        model = build_model(config, tokenizer)
        model.train()
        decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
        no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": config["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}],
            lr=config["lr"],
            betas=(0.9, 0.98),
        )
        losses: list[float] = []
        start = time.perf_counter()
        window_loss, window_hits, window_n = 0.0, 0, 0
        for step in range(config["steps"]):
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(config, step)
            input_ids, labels = training_batch(config, tokenizer, step)
            loss, hits = answer_loss_and_hits(model, input_ids, labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config["grad_clip"])
            optimizer.step()
            losses.append(loss.item())
            window_loss += loss.item() * len(hits)
            window_hits += int(hits.sum())
            window_n += len(hits)
            if (step + 1) % config["log_every"] == 0 or step + 1 == config["steps"]:
                lo, hi = curriculum_stage(config, step)
                log.info(
                    "step %d/%d  loss %.4f  train exact match %.2f  words %d-%d  lr %.2e  elapsed %.1f s",
                    step + 1, config["steps"], window_loss / window_n, window_hits / window_n, lo, hi,
                    learning_rate(config, step), time.perf_counter() - start,
                )  # fmt: skip
                window_loss, window_hits, window_n = 0.0, 0, 0
        train_s = time.perf_counter() - start
        accuracy = evaluate_exact_match(model, tokenizer, config)
        log.info("held-out exact match: %s", json.dumps(accuracy))
        metrics = {
            "exact_match": accuracy,
            "train_s": train_s,
            "steps": config["steps"],
            "num_parameters": sum(p.numel() for p in model.parameters()),
            "loss_first": losses[0],
            "loss_last": sum(losses[-config["log_every"] :]) / len(losses[-config["log_every"] :]),
            "losses": losses,
            "config": config,
        }
        model.eval()
        return model, tokenizer, metrics
    finally:
        torch.set_num_threads(threads_before)


def train_demo_model(out_dir: str | Path, config: dict | None = None) -> dict:
    """Train the demo model and save it, its tokenizer and `metrics.json` into `out_dir` atomically.

    Args:
        out_dir: directory to create (an existing one is replaced only once training succeeded).
        config: overrides of `DEFAULT_DEMO_CONFIG` (unknown keys are an error).
    Returns:
        The metrics also written to `out_dir/metrics.json`: `exact_match` {task: {context words: accuracy}},
        `train_s`, `steps`, `num_parameters`, `loss_first`, `loss_last`, `losses` (one per step), `config`.
    """
    model, tokenizer, metrics = train(config or {})
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def build_demo_model(
    out_dir: str | Path, config: dict | None = None, retrain: bool = False, checkpoint: str | Path = SHIPPED_CHECKPOINT
) -> tuple[dict, bool]:
    """The demo model of `config` in `out_dir`: a copy of the shipped `checkpoint` when it was trained with the same
    recipe (seconds), else trained here (`train_demo_model`, minutes). `retrain` always trains.

    Returns:
        (the model's metrics, whether it was trained here).
    """
    wanted = recipe(config or {})
    if not retrain and shipped_recipe(checkpoint) == wanted:
        with atomic_dir(out_dir) as tmp:
            shutil.copytree(checkpoint, tmp, dirs_exist_ok=True)
        return json.loads((Path(out_dir) / "metrics.json").read_text()), False
    return train_demo_model(out_dir, config), True
