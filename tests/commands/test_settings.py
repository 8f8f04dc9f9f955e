"""The settings a command receives and the objects built from them (`sdtp.commands.settings`)."""

from __future__ import annotations

import torch
from tiny_models import make_tiny_model

from sdtp.saliency import token_saliency


def test_oracle_marks_tokens_as_stage_one_is_configured():
    from sdtp.commands.settings import scorer_for
    from sdtp.saliency import SaliencyConfig
    from sdtp.schedule import KeepSchedule

    model = make_tiny_model("qwen2", "eager", num_hidden_layers=3)
    prompt = torch.randint(4, model.config.vocab_size, (1, 12), generator=torch.Generator().manual_seed(1))
    schedule = KeepSchedule([1, 2], 0.5, sink_tokens=1, min_local=2)
    oracle = scorer_for({"seed": 0, "saliency": {"reduction": "abs_sum", "objective": "loss"}}, "oracle", None)
    assert oracle.config == SaliencyConfig("loss", "abs_sum")
    oracle.set_reference([5, 6])
    oracle.begin(model, prompt, schedule)
    full = torch.cat([prompt, torch.tensor([[5, 6]])], dim=1)
    labels = full.clone()
    labels[:, :12] = -100
    expected = token_saliency(model, full, [1, 2], labels=labels, objective="loss", reduction="abs_sum")
    for layer in (1, 2):
        torch.testing.assert_close(oracle._saliency[layer], expected[layer][:12])
    # Without a `saliency` section the oracle keeps the defaults (the paper's signed sum of the logit objective).
    assert scorer_for({"seed": 0}, "oracle", None).config == SaliencyConfig()


def test_jobs_that_mask_keys_load_flash_attention_models_with_sdpa(tmp_path, monkeypatch, caplog):
    """FlashAttention-2 reads any mask as a padding mask, so stage 1, stage 2 and saliency-check (which mask keys with
    an additive mask) load the model with SDPA and say so; inference jobs keep the configured implementation."""
    import argparse
    import logging

    from tiny_models import TINY_MODEL_SETTINGS, save_tiny_model

    from sdtp.commands import settings as settings_module

    save_tiny_model(tmp_path)
    model_section = {**TINY_MODEL_SETTINGS, "attn_implementation": "flash_attention_2"}
    args = argparse.Namespace(settings={"seed": 0, "model": model_section}, model_dir=str(tmp_path))
    with caplog.at_level(logging.INFO):
        _, model, _ = settings_module.load_run_model(args, additive_mask=True)
    assert model.config._attn_implementation == "sdpa"
    assert "cannot apply the additive attention mask" in caplog.text
    asked = []
    monkeypatch.setattr(settings_module, "load_model", lambda spec: asked.append(spec) or (model, None))
    settings_module.load_run_model(args)
    assert asked[0]["attn_implementation"] == "flash_attention_2"


def test_model_label_marks_random_weights():
    from sdtp.commands.settings import model_label

    assert model_label({"model": {"name": "qwen2-7b"}}) == "qwen2-7b"
    assert model_label({"model": {"name": "qwen2-7b", "weights": "pretrained"}}) == "qwen2-7b"
    assert model_label({"model": {"name": "qwen2-7b", "weights": "random"}}) == "qwen2-7b-random-weights"


def test_predict_refuses_a_random_weight_model(tmp_path):
    import json

    import pytest

    from sdtp.commands.cli import main as cli_main

    settings = {"seed": 0, "model": {"name": "x", "id": "Qwen/Qwen2-7B-Instruct", "weights": "random"}}
    with pytest.raises(ValueError, match="predictions of a random-weight model are meaningless"):
        cli_main([
            "longbench-predict", "--settings", json.dumps(settings), "--method", "baseline", "--ratio", "1.0",
            "--task", "hotpotqa", "--records", str(tmp_path / "none.jsonl"), "--out", str(tmp_path / "out.jsonl"),
        ])  # fmt: skip


def test_official_wrapping_recognises_the_family_by_name_or_hub_id():
    from sdtp.commands.longbench_predict import prompt_format_for

    llama2 = {"model": {"name": "mine", "id": "meta-llama/Llama-2-7b-chat-hf"}, "longbench": {"max_input_tokens": 99}}
    prompt_format = prompt_format_for(llama2)
    assert prompt_format.chat_template == "official" and prompt_format.max_input_tokens == 99
    from sdtp.longbench.prompts import official_chat_prompt

    assert official_chat_prompt("Q", prompt_format.model_name) == "[INST]Q[/INST]"
    qwen = {
        "model": {"name": "qwen2-7b-instruct", "id": "Qwen/Qwen2-7B-Instruct"},
        "longbench": {"max_input_tokens": 9},
    }
    assert official_chat_prompt("Q", prompt_format_for(qwen).model_name) == "Q"


def record_model_specs(monkeypatch) -> list[dict]:
    """The specs `load_run_model` hands to `load_model` (nothing is loaded)."""
    from sdtp.commands import settings as settings_module

    class LoadedModel:
        class config:  # noqa: N801 - stands in for a transformers config
            _attn_implementation = "sdpa"

    specs: list[dict] = []
    monkeypatch.setattr(settings_module, "load_model", lambda spec: specs.append(spec) or (LoadedModel(), None))
    return specs


def inside_a_slurm_step_with_gpus(monkeypatch, visible: str) -> None:
    """An `srun` step of SLURM job 1234, as snakemake-executor-plugin-slurm runs each job, with SLURM's GPUs; torch sees
    as many CUDA devices as SLURM bound."""
    monkeypatch.setenv("SLURM_JOB_ID", "1234")
    monkeypatch.setenv("SLURM_STEP_ID", "0")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: len(visible.split(",")))


def run_settings(gpus: int, device: str = "cuda"):
    import argparse

    from sdtp.commands.settings import load_run_model

    model_section = {"name": "qwen2-7b", "id": "Qwen/Qwen2-7B-Instruct", "device": device}
    return load_run_model(argparse.Namespace(settings={"model": model_section}, model_dir=None, gpus=gpus))


def test_inside_a_slurm_step_a_multi_gpu_job_spreads_its_model(monkeypatch):
    """Issue 22, defect 2: SLURM binds the job's GPUs and the pool stands aside, but the model must still be spread
    over them (the schema's resources.gpu promise), and a one-GPU job must not be."""
    import os

    specs = record_model_specs(monkeypatch)
    inside_a_slurm_step_with_gpus(monkeypatch, "0,1")
    run_settings(gpus=2)
    assert specs[-1]["device_map"] == "auto" and os.environ["CUDA_VISIBLE_DEVICES"] == "0,1"
    run_settings(gpus=0)  # a rule that asks SLURM with `gres` passes --gpus 0: the job uses what SLURM bound
    assert specs[-1]["device_map"] == "auto"
    run_settings(gpus=2, device="cpu")  # model.device: cpu stays on the CPU
    assert "device_map" not in specs[-1]
    run_settings(gpus=1)  # SLURM bound more than asked: the job uses the first, alone
    assert "device_map" not in specs[-1] and specs[-1]["device"] == "cuda"
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0"


def test_inside_a_slurm_step_one_gpu_is_not_spread_and_too_few_is_an_error(monkeypatch):
    import pytest

    specs = record_model_specs(monkeypatch)
    inside_a_slurm_step_with_gpus(monkeypatch, "3")
    run_settings(gpus=1)
    assert "device_map" not in specs[-1] and specs[-1]["device"] == "cuda"
    with pytest.raises(ValueError, match=r"asks for 2 GPUs \(config resources.gpu\) but SLURM job 1234 step 0 binds"):
        run_settings(gpus=2)
