"""Scoring a continuation through a pruned cache in chunks (`sdtp.continuation.continuation_token_logprobs`): the same
log-probabilities as one (m, vocab) log-softmax, and never more than a chunk of vocabulary-wide rows at once."""

from __future__ import annotations

import pytest
import torch
from tiny_models import make_tiny_model, random_ids
from torch.utils._python_dispatch import TorchDispatchMode

from sdtp import continuation as continuation_module
from sdtp.continuation import LOGIT_CHUNK, continuation_token_logprobs
from sdtp.engine import prefill_with_pruning
from sdtp.reference import alive_masks, reference_decode_logits
from sdtp.schedule import KeepSchedule
from sdtp.scorers import get_scorer

VOCAB = 101  # tiny_models.TINY's: no other dimension of these runs has this size


class LargestVocabRows(TorchDispatchMode):
    """Records the most rows of any vocabulary-wide tensor an operation allocates (logits, their float copy, their
    log-softmax): (rows, VOCAB) tensors, counted by numel so that any leading shape counts; views (the LM head's
    transposed weight) allocate nothing."""

    def __init__(self):
        super().__init__()
        self.rows = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if any(result.alias_info is not None for result in func._schema.returns):  # a view (aten.t, reshape …)
            return out
        for tensor in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(tensor, torch.Tensor) and tensor.dim() >= 2 and tensor.shape[-1] == VOCAB:
                self.rows = max(self.rows, tensor.numel() // VOCAB)
        return out


def pruned_prefill(model, context, keep_ratio=0.5):
    schedule = KeepSchedule([1, 3], keep_ratio, min_local=4)
    return prefill_with_pruning(model, context, schedule, get_scorer("streaming"))


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_chunked_scores_equal_the_whole_log_softmax(attn):
    """Chunks of 1, 7 and all 40 positions give the masked reference's log-probabilities of the continuation under
    the pruned context, and the same greedy flags; the cache is left as the prefill made it."""
    model = make_tiny_model("qwen2", attn)
    context, continuation = random_ids(60, 0), random_ids(41, 1)[0].tolist()
    prefill = pruned_prefill(model, context)
    lengths = prefill.kv_lengths
    reference = reference_decode_logits(
        model, context, alive_masks(prefill.kept_positions, 60), torch.tensor([continuation])
    ).log_softmax(-1)
    expected = reference.gather(1, torch.tensor(continuation)[:, None])[:, 0]
    results = [continuation_token_logprobs(model, prefill, continuation, chunk) for chunk in (1, 7, 40, 10_000)]
    for logprobs, greedy in results:
        assert prefill.kv_lengths == lengths
        assert logprobs.shape == (41,) and logprobs.dtype == torch.float32
        torch.testing.assert_close(logprobs, expected, atol=1e-5, rtol=0)
        torch.testing.assert_close(logprobs, results[-1][0], atol=1e-6, rtol=0)  # chunked = unchunked
        assert torch.equal(greedy, reference.argmax(-1) == torch.tensor(continuation))


@pytest.mark.parametrize(("chunk", "rows"), [(8, 8), (1, 1), (LOGIT_CHUNK, 63)])
def test_at_most_a_chunk_of_vocabulary_rows_exists_at_once(chunk, rows):
    """A 64-token continuation (63 fed through the cache) never materialises more than `chunk` rows of vocabulary
    width: a rolling window of 32K tokens then costs a chunk of logits, not three 32K × vocab float32 copies."""
    model = make_tiny_model("qwen2", "sdpa")
    prefill = pruned_prefill(model, random_ids(30, 2))
    with LargestVocabRows() as largest:
        continuation_token_logprobs(model, prefill, random_ids(64, 3)[0].tolist(), chunk)
    assert largest.rows == rows


def test_the_token_by_token_path_scores_the_same(monkeypatch):
    """Backends without an arbitrary mask (flash attention) feed the continuation token by token: same scores."""
    model = make_tiny_model("qwen2", "sdpa")
    context, continuation = random_ids(50, 4), random_ids(12, 5)[0].tolist()
    block, block_greedy = continuation_token_logprobs(model, pruned_prefill(model, context), continuation, 5)
    monkeypatch.setattr(continuation_module, "BLOCK_MASK_ATTENTION", ())  # as for flash attention: no block mask
    stepwise, step_greedy = continuation_token_logprobs(model, pruned_prefill(model, context), continuation, 5)
    torch.testing.assert_close(stepwise, block, atol=1e-5, rtol=0)
    assert torch.equal(step_greedy, block_greedy)


def test_bad_arguments():
    model = make_tiny_model("qwen2", "sdpa")
    prefill = pruned_prefill(model, random_ids(20, 6))
    with pytest.raises(ValueError, match="continuation is empty"):
        continuation_token_logprobs(model, prefill, [])
    with pytest.raises(ValueError, match="chunk must be >= 1"):
        continuation_token_logprobs(model, prefill, [1, 2], chunk=0)
