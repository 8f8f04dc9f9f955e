import json

import pytest
import torch
from tiny_models import FAMILIES, TINY, qwen2_7b_config
from transformers import AutoConfig, LlamaConfig

from sdtp import memory
from sdtp.demo_model import SHIPPED_CHECKPOINT
from sdtp.flops import kv_bytes_per_layer
from sdtp.models import load_model
from sdtp.saliency import LOGIT_CHUNK

GIB = 2**30


def test_parameter_count_from_the_config_alone_matches_the_loaded_model():
    model, _ = load_model({"id": str(SHIPPED_CHECKPOINT)})
    assert memory.parameter_count(AutoConfig.from_pretrained(SHIPPED_CHECKPOINT)) == sum(
        p.numel() for p in model.parameters()
    )


def test_qwen2_7b_bf16_at_32k_tokens():
    config = qwen2_7b_config()
    d, inter, layers, vocab, kv_width = 3584, 18944, 28, 152064, 4 * 128
    # q, k, v (with biases), o, the gated MLP, two norms
    per_layer = (d * d + d) + 2 * (d * kv_width + kv_width) + d * d + 3 * d * inter + 2 * d
    params = 2 * vocab * d + layers * per_layer + d  # untied embeddings and LM head, final norm
    estimate = memory.memory_estimate(config, torch.bfloat16, 32768 - 128, 128)
    assert estimate.params == params == 7_615_616_512
    assert estimate.weights_bytes == 2 * params == 15_231_233_024  # ≈ 15.2 GB
    assert estimate.tokens == 32768
    assert estimate.kv_bytes == 2 * 28 * 4 * 128 * 32768 * 2
    n = 32768 - 128
    assert estimate.activation_bytes == n * (2 * d + max(3 * d + 3 * kv_width, 3 * inter)) * 2
    assert 18 * GIB < estimate.total_bytes < 24 * GIB
    assert "weights 14.2 GiB + KV cache 1.8 GiB + activations 3.9 GiB" in estimate.describe()
    eager = memory.memory_estimate(config, "bfloat16", 32768 - 128, 128, attn_implementation="eager", params=params)
    assert eager.activation_bytes - estimate.activation_bytes == 28 * n * n * (2 + 4)


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("extra", [{}, {"tie_word_embeddings": True}])
def test_the_dense_count_without_torch_equals_the_meta_device_count(family, extra):
    config_cls, _, family_extra = FAMILIES[family]
    config = config_cls(**{**TINY, **family_extra, **extra})
    assert memory.dense_parameter_count(config) == memory.parameter_count(config)
    # the same from the saved config.json, as the workflow reads it at DAG time
    assert memory.dense_parameter_count(json.loads(config.to_json_string())) == memory.parameter_count(config)


def test_the_dense_count_follows_attention_and_mlp_biases():
    config = LlamaConfig(**TINY, attention_bias=True, mlp_bias=True)
    assert memory.dense_parameter_count(config) == memory.parameter_count(config)
    assert memory.dense_parameter_count(qwen2_7b_config()) == 7_615_616_512
    shipped = json.loads((SHIPPED_CHECKPOINT / "config.json").read_text())
    meta_count = memory.parameter_count(AutoConfig.from_pretrained(SHIPPED_CHECKPOINT))
    assert memory.dense_parameter_count(shipped) == meta_count


def test_kv_bytes_agree_with_the_flops_module_and_dtype_names_equal_torch_dtypes():
    config = qwen2_7b_config()
    by_name = memory.memory_estimate(config, "bfloat16", 1000, 24, params=1)
    by_dtype = memory.memory_estimate(config, torch.bfloat16, 1000, 24, params=1)
    assert by_name == by_dtype
    assert by_name.kv_bytes == sum(kv_bytes_per_layer(config, [1024] * 28, torch.bfloat16))
    with pytest.raises(ValueError, match="unknown model dtype 'int8'"):
        memory.memory_estimate(config, "int8", 1000, 24, params=1)


def test_checkpointed_gradient_memory_uses_saliencys_logit_chunk_by_default():
    config = qwen2_7b_config()
    default = memory.gradient_memory_estimate(config, "bfloat16", 4096, first_layer=4, params=1)
    chunked = memory.gradient_memory_estimate(config, "bfloat16", 4096, 4, params=1, logit_chunk=LOGIT_CHUNK)
    small = memory.gradient_memory_estimate(config, "bfloat16", 4096, 4, params=1, logit_chunk=8)
    assert default == chunked
    assert default.activation_bytes - small.activation_bytes == (LOGIT_CHUNK - 8) * 152064 * 4


def test_memory_imports_no_torch():
    import subprocess
    import sys

    code = "import sys, sdtp.memory; assert 'torch' not in sys.modules, 'sdtp.memory imported torch'"
    subprocess.run([sys.executable, "-c", code], check=True)
