"""`sdtp.lm_eval.SdtpLM` against the harness's own HF model (HFLM) on a tiny local model and local tasks."""

from __future__ import annotations

import inspect
import math

import pytest
import torch
from harness_fixtures import HARNESS_MISSING
from tiny_models import make_fixture_model, make_fixture_tokenizer

lm_eval = pytest.importorskip("lm_eval", reason=HARNESS_MISSING)

from lm_eval.api.instance import Instance  # noqa: E402
from lm_eval.models.huggingface import HFLM  # noqa: E402
from lm_eval.tasks import TaskManager  # noqa: E402

from sdtp.continuation import continuation_token_logprobs  # noqa: E402
from sdtp.lm_eval import SdtpLM  # noqa: E402
from sdtp.models import load_model  # noqa: E402
from sdtp.reference import alive_masks, reference_decode_logits  # noqa: E402

SCHEDULE = dict(start=0, step=1, stages=3, min_local=4)


def evaluate(lm, task_dir, tasks):
    return lm_eval.simple_evaluate(
        model=lm,
        tasks=tasks,
        task_manager=TaskManager(include_path=str(task_dir), include_defaults=False),  # built-ins take ~30 s to index
        log_samples=True,
    )


@pytest.fixture(scope="module")
def hf_reference(tiny_model_dir, task_dir):
    """HFLM on the same saved model and tokenizer (loaded as our loader does: transformers' AutoTokenizer would pick
    Qwen2's tokenizer class for the word-level one), and its results on the three tasks."""
    model, tokenizer = load_model({"id": str(tiny_model_dir), "device": "cpu"})
    hf = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=1)
    return evaluate(hf, task_dir, ["tiny_mc", "tiny_rolling", "tiny_gen"])


@pytest.fixture(scope="module")
def baseline_results(tiny_model_dir, task_dir):
    lm = SdtpLM(pretrained=str(tiny_model_dir), method="baseline", device="cpu", **SCHEDULE)
    return evaluate(lm, task_dir, ["tiny_mc", "tiny_rolling", "tiny_gen"])


def responses(results, task):
    return [sample["resps"] for sample in sorted(results["samples"][task], key=lambda s: s["doc_id"])]


def test_baseline_loglikelihoods_equal_hflm_per_sample(baseline_results, hf_reference):
    ours, theirs = responses(baseline_results, "tiny_mc"), responses(hf_reference, "tiny_mc")
    assert len(ours) == len(theirs) == 10
    for doc_ours, doc_theirs in zip(ours, theirs, strict=True):
        assert len(doc_ours) == 4
        for (ll_ours, greedy_ours), (ll_theirs, greedy_theirs) in zip(
            [r[0] for r in doc_ours], [r[0] for r in doc_theirs], strict=True
        ):
            assert ll_ours == pytest.approx(ll_theirs, abs=1e-4)
            assert greedy_ours == greedy_theirs
    for metric in ("acc,none", "acc_norm,none", "acc_stderr,none"):
        assert baseline_results["results"]["tiny_mc"][metric] == hf_reference["results"]["tiny_mc"][metric]


def test_baseline_rolling_loglikelihood_equals_hflm(baseline_results, hf_reference):
    ours, theirs = responses(baseline_results, "tiny_rolling"), responses(hf_reference, "tiny_rolling")
    assert [r[0][0] for r in ours] == pytest.approx([r[0][0] for r in theirs], abs=1e-4)
    for metric in ("word_perplexity,none", "bits_per_byte,none"):
        ours_value = baseline_results["results"]["tiny_rolling"][metric]
        assert ours_value == pytest.approx(hf_reference["results"]["tiny_rolling"][metric], rel=1e-5)


def test_baseline_generation_equals_hflm(baseline_results, hf_reference):
    ours, theirs = responses(baseline_results, "tiny_gen"), responses(hf_reference, "tiny_gen")
    assert ours == theirs
    assert any(r[0][0] for r in ours)  # something was generated
    assert (
        baseline_results["results"]["tiny_gen"]["exact_match,none"]
        == hf_reference["results"]["tiny_gen"]["exact_match,none"]
    )


@pytest.fixture(scope="module")
def pruned_lm(tiny_model_dir):
    return SdtpLM(pretrained=str(tiny_model_dir), method="streaming", keep_ratio=0.5, device="cpu", **SCHEDULE)


def test_pruning_touches_only_context_tokens(pruned_lm):
    """The continuation's log-probs equal the masked reference in which the context is pruned as the engine pruned it
    and every continuation token is alive at every layer, at its original position."""
    tokenizer, model = pruned_lm.tokenizer, pruned_lm.model
    context = tokenizer.encode(" ".join(["alpha bravo charlie delta echo"] * 12) + " which word follows golf ?")
    continuation = tokenizer.encode("hotel india juliet", add_special_tokens=False)
    [(logprob, _)] = pruned_lm._loglikelihood_tokens([(None, context, continuation)])

    prefill = pruned_lm._prefill(context)
    assert min(prefill.tokens_per_layer) < len(context)  # the context was pruned
    logprobs, _ = continuation_token_logprobs(model, prefill, continuation)
    assert prefill.kv_lengths == prefill.tokens_per_layer  # the continuation block was cropped off the cache again
    ids = torch.tensor([context])
    reference = reference_decode_logits(
        model, ids, alive_masks(prefill.kept_positions, len(context)), torch.tensor([continuation])
    ).log_softmax(-1)
    target = torch.tensor(continuation)[:, None]
    torch.testing.assert_close(logprobs[:, None], reference.gather(1, target), atol=1e-4, rtol=0)
    assert logprob == pytest.approx(float(reference.gather(1, target).sum()), abs=1e-4)
    # …and it is not what the unpruned model says: pruning did change the context
    full = reference_decode_logits(
        model, ids, [torch.ones(len(context), dtype=torch.bool)] * 5, torch.tensor([continuation])
    ).log_softmax(-1)
    assert not math.isclose(logprob, float(full.gather(1, target).sum()), abs_tol=1e-3)


def test_choices_of_one_context_share_one_prefill(pruned_lm):
    tokenizer = pruned_lm.tokenizer
    context = tokenizer.encode(" ".join(["kilo lima mike"] * 15))
    choices = [tokenizer.encode(word, add_special_tokens=False) for word in ("alpha", "bravo charlie", "delta")]
    before = len(pruned_lm.compression_ratios)
    pruned_lm._loglikelihood_tokens([(None, context, choice) for choice in choices])
    assert len(pruned_lm.compression_ratios) == before + 1
    assert pruned_lm.compression_ratios[-1] > 1.0


def generate(lm, context, **gen_kwargs):
    return lm.generate_until([Instance("generate_until", {}, (context, gen_kwargs), 0)])[0]


def test_generate_until_honours_max_gen_toks_and_until(tiny_model_dir):
    lm = SdtpLM(pretrained=str(tiny_model_dir), method="baseline", device="cpu", **SCHEDULE)
    context = passage_text = " ".join(["oscar papa alpha bravo"] * 10)
    free = generate(lm, context, until=[], max_gen_toks=8, do_sample=False)
    words = free.split()
    assert len(lm.tokenizer.encode(free, add_special_tokens=False)) == 8 and len(words) == 8, free
    assert generate(lm, context, until=[], max_gen_toks=3, do_sample=False).split() == words[:3]
    stop = words[4]
    cut = generate(lm, passage_text, until=[stop], max_gen_toks=8, do_sample=False)
    assert stop not in cut and free.startswith(cut)
    assert cut.split() == words[: words.index(stop)]


def test_model_args_are_checked(tiny_model_dir):
    with pytest.raises(ValueError, match="unknown argument.*colour"):
        SdtpLM(pretrained=str(tiny_model_dir), method="baseline", colour="red")
    with pytest.raises(ValueError, match="batch size 1"):
        SdtpLM(pretrained=str(tiny_model_dir), method="baseline", batch_size=4)
    with pytest.raises(ValueError, match="needs keep_ratio"):
        SdtpLM(pretrained=str(tiny_model_dir), method="random", **SCHEDULE)
    with pytest.raises(ValueError, match="unknown; valid methods"):
        SdtpLM(pretrained=str(tiny_model_dir), method="magic", keep_ratio=0.5)
    with pytest.raises(ValueError, match="checkpoint=<pruner directory>"):
        SdtpLM(pretrained=str(tiny_model_dir), method="sdtp", keep_ratio=0.5, **SCHEDULE)
    with pytest.raises(ValueError, match="outside the model"):
        SdtpLM(pretrained=str(tiny_model_dir), method="random", keep_ratio=0.5, start=3, step=1, stages=4)


def test_registered_as_sdtp_and_built_from_a_model_args_string(tiny_model_dir):
    from lm_eval.api.registry import get_model

    cls = get_model("sdtp")
    assert cls is SdtpLM
    lm = cls.create_from_arg_string(
        f"pretrained={tiny_model_dir},method=random,keep_ratio=0.6,layers=1;3,seed=3,min_local=2",
        {"batch_size": 1, "max_batch_size": None, "device": "cpu"},
    )
    assert lm.schedule.layers == [1, 3] and lm.keep_ratio == 0.6 and lm.scorer.seed == 3


def test_press_methods_score_the_continuation_on_the_compressed_cache(tiny_model_dir):
    """`kvpress:<press>`: the press shortens each layer's cache in the prefill; the continuation block through that
    cache equals feeding it token by token with `decode_step` (which needs no mask)."""
    from sdtp.engine import decode_step
    from sdtp.kv_compression import kvpress_installed

    if not kvpress_installed():
        pytest.skip("the kvpress extra is not installed: pip install -e '.[kvpress]'")
    lm = SdtpLM(
        pretrained=str(tiny_model_dir), method="kvpress:knorm", keep_ratio=0.5, kvpress_budget="keep_ratio",
        device="cpu", **SCHEDULE,
    )  # fmt: skip
    context = lm.tokenizer.encode(" ".join(["november oscar papa alpha"] * 12))
    continuation = lm.tokenizer.encode("bravo charlie delta echo", add_special_tokens=False)
    [(logprob, _)] = lm._loglikelihood_tokens([(None, context, continuation)])
    assert lm.compression_ratios[-1] > 1.5  # the press removed about half of every layer's cache

    prefill = lm._prefill(context)
    assert max(prefill.kv_lengths) < len(context)
    rows = [prefill.logits[0]]
    for i, token in enumerate(continuation[:-1]):
        rows.append(decode_step(lm.model, prefill.cache, torch.tensor([[token]]), len(context) + i)[0])
    stepwise = torch.stack(rows).log_softmax(-1).gather(1, torch.tensor(continuation)[:, None]).sum()
    assert logprob == pytest.approx(float(stepwise), abs=1e-4)


def test_the_default_dtype_is_the_checkpoints_as_hflms(tmp_path):
    """A bfloat16 checkpoint loads in bfloat16 unless told otherwise, as HFLM's default `dtype="auto"` loads it."""
    tokenizer = make_fixture_tokenizer()
    make_fixture_model(tokenizer).to(torch.bfloat16).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    assert inspect.signature(HFLM.__init__).parameters["dtype"].default == "auto"
    assert SdtpLM(pretrained=str(tmp_path), method="baseline", device="cpu", **SCHEDULE).model.dtype == torch.bfloat16
    as_float32 = SdtpLM(pretrained=str(tmp_path), method="baseline", device="cpu", dtype="float32", **SCHEDULE)
    assert as_float32.model.dtype == torch.float32


def test_a_press_on_a_context_within_its_window_leaves_it_uncompressed(tiny_model_dir):
    """Arc-style contexts (21–64 tokens) under SnapKV's default 64-token window: kvpress would assert; the context's
    cache stays whole, the prefill is counted in `press_uncompressed_prefills`, and the scores are the baseline's."""
    from sdtp.kv_compression import kvpress_installed

    if not kvpress_installed():
        pytest.skip("the kvpress extra is not installed: pip install -e '.[kvpress]'")
    lm = SdtpLM(
        pretrained=str(tiny_model_dir), method="kvpress:snapkv", keep_ratio=0.5, kvpress_budget="keep_ratio",
        device="cpu", **SCHEDULE,
    )  # fmt: skip
    baseline = SdtpLM(pretrained=str(tiny_model_dir), method="baseline", device="cpu", **SCHEDULE)
    context = lm.tokenizer.encode(" ".join(["quebec romeo sierra tango"] * 6) + " which word follows tango ?")
    assert 21 <= len(context) <= 64
    continuation = lm.tokenizer.encode("uniform victor", add_special_tokens=False)
    [(logprob, greedy)] = lm._loglikelihood_tokens([(None, context, continuation)])
    assert lm.press_uncompressed_prefills == 1 and lm.compression_ratios == [1.0]
    [(expected, expected_greedy)] = baseline._loglikelihood_tokens([(None, context, continuation)])
    assert logprob == pytest.approx(expected, abs=1e-5) and greedy == expected_greedy
    long_context = lm.tokenizer.encode(" ".join(["quebec romeo sierra tango"] * 30))
    lm._loglikelihood_tokens([(None, long_context, continuation)])
    assert lm.press_uncompressed_prefills == 1 and lm.compression_ratios[-1] > 1.5  # a long context is compressed
