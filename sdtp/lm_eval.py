"""SDTP and its comparators as an lm-evaluation-harness model: `lm_eval --model sdtp` (via `python -m sdtp lm-eval`).

`SdtpLM` is an `lm_eval.api.model.TemplateLM` registered as `sdtp`; `model_args` such as
`pretrained=Qwen/Qwen2-7B-Instruct,method=sdtp,keep_ratio=0.7,pruner=<dir>,start=4,step=3,stages=8,dtype=bfloat16`.
Every method of `sdtp.scorers` (baseline, sdtp, random, streaming, attention, oracle), and the KV-cache presses of
`sdtp.kv_compression` (`kvpress:<press>`, `<scorer>+<press>`; the `[kvpress]` extra), runs through our engine
(`sdtp.engine.prefill_with_pruning`, `decode_step`), with the harness's own tokenisation and truncation rules (those
of its `hf` model, HFLM), so with `method=baseline` the numbers are HFLM's. A press compresses only the context's
cache, in the prefill: the continuation is appended to the compressed cache, uncompressed. A context layer too short
for the press (arc-style contexts hold 21–64 tokens, SnapKV's window 64) is left uncompressed
(`sdtp.kv_compression.press_fits`); `press_uncompressed_prefills` counts the prefills where that happened.

What may be pruned — only context tokens, never continuation tokens:
- `loglikelihood(context, continuation)`: the context is prefilled with pruning (the schedule prunes among the context
  tokens only); then every continuation token but the last is fed through the pruned cache in one block, appended
  unpruned to every layer at its original position (`original_length + i`), attending to the keys alive at that layer
  and to the continuation tokens before it. Continuation token 0 is scored by the prefill's last logits, token i by
  the block's position i − 1. The block is then cropped off the cache, so the choices of a multiple-choice question
  share one pruned prefill of their common context (consecutive requests with the same context tokens).
- `loglikelihood_rolling`: the harness's rolling windows (HFLM's `max_length`, context length 1) as
  (context, continuation) pairs, scored as above: in a window every predicted token is a continuation token, so only
  a window's non-predicted prefix is ever pruned (for documents shorter than `max_length`: nothing at all).
- `generate_until`: the context is prefilled with pruning, then greedy tokens are decoded from the pruned cache (no
  pruning during decode) until a stop string of `until` (or EOS, as the harness adds it) appears in the decoded text,
  an EOS token is chosen, or `max_gen_toks` tokens were generated; the text is cut at the first stop string.
The token-level half (the continuation block, greedy generation with stop strings) is `sdtp.continuation`.
Batch size 1: each request is its own prefill (the engine keeps one prompt's tokens); `batch_size` other than 1 is
refused. The oracle marks tokens by the gradient of the context's own LM loss (it never sees the continuation: that
would leak the answer into which tokens are kept).

The harness is an optional extra: this module imports without it, and `SdtpLM(...)` then raises an ImportError that
names the install command (`HARNESS_INSTALL`).
"""

from __future__ import annotations

import logging
import time

import torch
from torch import nn

from sdtp.continuation import continuation_token_logprobs, eos_token_ids, generate_greedy
from sdtp.decoder import device_of
from sdtp.engine import PrefillResult, prefill_with_pruning
from sdtp.kv_compression import kv_compression_for, parse_method
from sdtp.models import load_model
from sdtp.saliency import SaliencyConfig
from sdtp.schedule import KeepSchedule
from sdtp.scorers import SCORERS, Scorer, get_scorer

try:
    from lm_eval.api.model import TemplateLM
    from lm_eval.api.registry import register_model

    HARNESS_ERROR: ImportError | None = None
except ImportError as error:  # the extra is not installed: the class below cannot be used, the module still imports
    TemplateLM, register_model, HARNESS_ERROR = object, None, error

log = logging.getLogger(__name__)

HARNESS_INSTALL = 'pip install -e ".[lm-eval]"'
DEFAULT_MAX_LENGTH = 2048  # HFLM's, when neither the config nor the tokenizer names one
DEFAULT_MAX_GEN_TOKS = 256  # HFLM's


def require_harness() -> None:
    """Raise an ImportError naming the install command when lm-evaluation-harness is not importable."""
    if HARNESS_ERROR is not None:
        raise ImportError(
            f"lm-evaluation-harness (the `lm_eval` package) is not installed ({HARNESS_ERROR}); install the extra "
            f"with `{HARNESS_INSTALL}`"
        )


def _as_bool(value) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "yes")


def _schedule(layers, start, step, stages, keep_ratio, num_layers, **always_kept) -> KeepSchedule:
    """Explicit `layers` (a list, or one model_args string "4;7;10": commas separate model_args), else the paper's
    start/step/stages layout."""
    if layers is None or layers == "":
        return KeepSchedule.from_config(start, step, stages, keep_ratio, num_layers, **always_kept)
    if isinstance(layers, str):
        layers = [int(layer) for layer in layers.replace(";", " ").split()]
    schedule = KeepSchedule(list(layers), keep_ratio, **always_kept)
    schedule.validate(num_layers)
    return schedule


class SdtpLM(TemplateLM):
    """An lm-evaluation-harness model that runs one method of `sdtp.scorers` at one keep ratio (batch size 1).

    Args (all accepted as `model_args` strings):
        pretrained: hub id or local directory (loaded with `sdtp.models.load_model`), or a loaded causal LM (then pass
            `tokenizer`).
        method: baseline | sdtp | random | streaming | attention | oracle, or kvpress:<press> | <scorer>+<press>.
        keep_ratio: fraction each stage keeps, in (0, 1]; ignored (1.0) for baseline. (A press's budget follows it
            as in the pipeline: `kvpress_budget`, default sdtp_mean_kv.)
        kvpress: the config's `kvpress:` section (each press's parameters, `budget`), as a dict; kvpress_budget:
            its `budget` alone, as a model_args string.
        pruner: the trained pruner's directory (method sdtp).
        start, step, stages: the prune points (`KeepSchedule.from_config`), or `layers` ("4;7;10"); sink_tokens,
            local_ratio, min_local: the always-kept tokens.
        seed: random's seed. dtype, attn_implementation: as the config's `model:` keys; dtype "auto" (the default,
            as the harness's `hf` model) is the checkpoint's own (bfloat16 for Qwen2-7B). device: the harness's
            `--device` (not a model_args key there: the harness passes it itself); cuda falls back to the CPU when
            CUDA is not available, as HFLM does.
        max_length: context window for truncation (default: the model config's, as HFLM resolves it).
        max_gen_toks: default generation budget when a task names none (HFLM's 256).
        add_bos_token: as HFLM's (None: the tokenizer's own behaviour).
        saliency_objective, saliency_reduction: the oracle's saliency (`sdtp.saliency.SaliencyConfig`).
    """

    def __init__(
        self,
        pretrained,
        method: str = "sdtp",
        keep_ratio: float | None = None,
        pruner: str | None = None,
        start: int = 4,
        step: int = 3,
        stages: int = 8,
        layers=None,
        sink_tokens: int = 4,
        local_ratio: float = 0.1,
        min_local: int = 16,
        seed: int = 0,
        dtype: str = "auto",
        device: str | None = None,
        attn_implementation: str = "sdpa",
        max_length: int | None = None,
        max_gen_toks: int = DEFAULT_MAX_GEN_TOKS,
        add_bos_token: bool | None = None,
        saliency_objective: str | None = None,
        saliency_reduction: str | None = None,
        kvpress: dict | None = None,
        kvpress_budget: str | None = None,
        tokenizer=None,
        batch_size: int | str | None = 1,
        max_batch_size: int | None = None,
        **unused,
    ):
        require_harness()
        super().__init__()
        if unused:
            raise ValueError(
                f"model_args: unknown argument(s) {', '.join(sorted(unused))} for model sdtp; see sdtp.lm_eval.SdtpLM"
            )
        if batch_size not in (None, 1, "1"):
            raise ValueError(f"model sdtp runs batch size 1 (each request is its own pruned prefill), got {batch_size}")
        parsed = parse_method(str(method))
        if parsed.scorer not in SCORERS:
            raise ValueError(
                f"model_args method={method!r} is unknown; valid methods: {', '.join(SCORERS)}, kvpress:<press>, "
                "<scorer>+<press>"
            )
        if isinstance(pretrained, nn.Module):
            if tokenizer is None:
                raise ValueError("a loaded model needs its tokenizer: pass tokenizer=")
            self.model = pretrained
        else:
            spec = {"id": str(pretrained), "dtype": dtype, "attn_implementation": attn_implementation}
            if device and str(device).startswith("cuda") and not torch.cuda.is_available():
                # the harness CLI's default --device is cuda:0; like its HFLM, run where we can
                log.warning("device %s requested but CUDA is not available: running on the CPU", device)
                device = "cpu"
            if device:
                spec["device"] = str(device)
            self.model, loaded_tokenizer = load_model(spec)
            tokenizer = tokenizer or loaded_tokenizer
            if tokenizer is None:
                raise ValueError(f"model {pretrained!r} has no tokenizer: the harness's requests are text")
        self.tokenizer = tokenizer
        self.method = parsed.name
        saliency = {
            k: v for k, v in (("objective", saliency_objective), ("reduction", saliency_reduction)) if v is not None
        }
        self.scorer: Scorer = get_scorer(
            parsed.scorer, seed=int(seed), checkpoint=pruner, saliency=SaliencyConfig.from_dict(saliency or None)
        )
        compresses = self.scorer.prunes or parsed.press is not None
        if compresses and keep_ratio is None:
            raise ValueError(f"model_args: method {method} needs keep_ratio=<fraction kept per stage, in (0, 1]>")
        self.keep_ratio = float(keep_ratio) if compresses else 1.0
        self.schedule = _schedule(
            layers, int(start), int(step), int(stages), self.keep_ratio, self.model.config.num_hidden_layers,
            sink_tokens=int(sink_tokens), local_ratio=float(local_ratio), min_local=int(min_local),
        )  # fmt: skip
        press_section = {**(kvpress or {}), **({"budget": kvpress_budget} if kvpress_budget else {})}
        self.kv_compression = kv_compression_for(self.method, self.keep_ratio, self.schedule, press_section)
        self._max_length = int(max_length) if max_length else None
        self._max_gen_toks = int(max_gen_toks)
        self.add_bos_token = _as_bool(add_bos_token)
        self._device = device_of(self.model)
        self.pretrained = str(pretrained) if not isinstance(pretrained, nn.Module) else type(pretrained).__name__
        self.compression_ratios: list[float] = []  # per prefill: context tokens ÷ mean cached tokens over layers
        self.press_uncompressed_prefills = 0  # prefills with a layer too short for the press (left uncompressed)
        log.info(
            "sdtp model: method %s, keep ratio %s at layers %s, max length %d, batch size 1",
            method,
            self.keep_ratio,
            self.schedule.layers if self.scorer.prunes else [],
            self.max_length,
        )

    # -- what the harness asks of a model

    @property
    def eot_token_id(self) -> int:
        return self.tokenizer.eos_token_id

    @property
    def prefix_token_id(self) -> int:
        bos = self.tokenizer.bos_token_id
        return bos if bos is not None else self.tokenizer.eos_token_id

    @property
    def max_length(self) -> int:
        if self._max_length:
            return self._max_length
        from lm_eval.models.utils import resolve_max_length

        return resolve_max_length(self.model.config, self.tokenizer, default=DEFAULT_MAX_LENGTH)

    @property
    def max_gen_toks(self) -> int:
        return self._max_gen_toks

    @property
    def tokenizer_name(self) -> str:
        return self.tokenizer.name_or_path.replace("/", "__")

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs) -> list[int]:
        """HFLM's encoding: the tokenizer's special tokens unless told (or the string already starts with BOS)."""
        from lm_eval.models.utils import has_bos_prefix

        special = {}
        if add_special_tokens is not None:
            special = {"add_special_tokens": add_special_tokens}
        elif self.add_bos_token is not None:
            special = {"add_special_tokens": self.add_bos_token}
        if add_special_tokens is None and has_bos_prefix(string, self.tokenizer.decode(self.prefix_token_id)):
            special["add_special_tokens"] = False
        return self.tokenizer.encode(string, **special)

    def _generation_encode(self, context: str) -> list[int]:
        """HFLM's `tok_batch_encode` for one string (what its generate_until feeds the model)."""
        from lm_eval.models.utils import has_bos_prefix

        special = {}
        if has_bos_prefix(context, getattr(self.tokenizer, "bos_token", None)):
            special = {"add_special_tokens": False}
        elif self.add_bos_token is not None:
            special = {"add_special_tokens": self.add_bos_token}
        return self.tokenizer(context, **special)["input_ids"]

    def _prefill(self, context: list[int]) -> PrefillResult:
        ids = torch.tensor([context], dtype=torch.long, device=device_of(self.model.model.embed_tokens))
        result = prefill_with_pruning(self.model, ids, self.schedule, self.scorer, kv_compression=self.kv_compression)
        cached = result.kv_lengths  # a press shortens the cache beyond the tokens each layer saw
        self.compression_ratios.append(len(context) / (sum(cached) / len(cached)))
        self.press_uncompressed_prefills += bool(result.press_uncompressed_layers)
        return result

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs) -> list[tuple[float, bool]]:
        """(sum of log-probs, greedy?) per (request key, context ids, continuation ids), in request order.

        HFLM's truncation: the last max_length + 1 tokens of context + continuation, of which the model sees all but
        the last; the continuation is never truncated (it must fit in max_length)."""
        results, cached_context, prefill = [], None, None
        progress = _Progress("loglikelihood", len(requests))
        for key, context_enc, continuation_enc in requests:
            if not continuation_enc or len(continuation_enc) > self.max_length:
                raise ValueError(
                    f"continuation of {len(continuation_enc)} tokens: it must hold 1 … max_length "
                    f"({self.max_length}) tokens"
                )
            whole = (context_enc + continuation_enc)[-(self.max_length + 1) :]
            context = whole[: len(whole) - len(continuation_enc)]
            if context != cached_context:  # the choices of one question share the pruned prefill of its context
                prefill, cached_context = self._prefill(context), context
            logprobs, greedy = continuation_token_logprobs(self.model, prefill, continuation_enc)
            answer = (float(logprobs.sum()), bool(greedy.all()))
            results.append(answer)
            if key is not None:
                self.cache_hook.add_partial("loglikelihood", key, answer)
            progress.step()
        return results

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        from lm_eval import utils

        out = []
        for (string,) in [req.args for req in requests]:
            windows = [
                (None, *utils.make_disjoint_window(window))
                for window in utils.get_rolling_token_windows(
                    token_list=self.tok_encode(string),
                    prefix_token=self.prefix_token_id,
                    max_seq_len=self.max_length,
                    context_len=1,
                )
            ]
            total = sum(logprob for logprob, _ in self._loglikelihood_tokens(windows))
            out.append(total)
            self.cache_hook.add_partial("loglikelihood_rolling", (string,), total)
        return out

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        from lm_eval.models.utils import handle_stop_sequences, normalize_gen_kwargs, postprocess_generated_text

        out = []
        eos_text = self.tokenizer.decode(self.eot_token_id, skip_special_tokens=False)
        eos_ids = eos_token_ids(self.model, self.tokenizer)
        progress = _Progress("generate_until", len(requests))
        for context, gen_kwargs in [req.args for req in requests]:
            kwargs = normalize_gen_kwargs(dict(gen_kwargs), self.max_gen_toks)
            if kwargs.get("do_sample"):
                raise ValueError(f"model sdtp decodes greedily; the task asks for sampling ({gen_kwargs})")
            until = handle_stop_sequences(kwargs.pop("until", None), eos=eos_text)
            max_gen_toks = int(kwargs.pop("max_gen_toks"))
            if max_gen_toks >= self.max_length:
                raise ValueError(f"max_gen_toks ({max_gen_toks}) must be less than max_length ({self.max_length})")
            context_enc = self._generation_encode(context)[-(self.max_length - max_gen_toks) :]
            stops = [stop for stop in until if stop]
            tokens = generate_greedy(
                self.model,
                self._prefill(context_enc),
                max_gen_toks,
                lambda ids, stops=stops: any(stop in self.tokenizer.decode(ids) for stop in stops),
                eos_ids,
            )
            text = self.tokenizer.decode(tokens, skip_special_tokens=True)  # as HFLM decodes
            text = postprocess_generated_text(text, stop=until, think_end_token=None)
            out.append(text)
            self.cache_hook.add_partial("generate_until", (context, gen_kwargs), text)
            progress.step()
        return out

    def get_model_info(self) -> dict:
        return {"model_name": self.pretrained, "method": self.method, "keep_ratio": self.keep_ratio}

    @property
    def mean_compression_ratio(self) -> float:
        """Context tokens ÷ mean cached tokens over layers (the paper's compression ratio), averaged over the prefills
        so far (1.0 for none)."""
        return sum(self.compression_ratios) / len(self.compression_ratios) if self.compression_ratios else 1.0


class _Progress:
    """A log line about every tenth of the requests (and the last), with the rate."""

    def __init__(self, what: str, total: int):
        self.what, self.total, self.done, self.start = what, total, 0, time.perf_counter()
        self.every = max(1, total // 10)

    def step(self) -> None:
        self.done += 1
        if self.done % self.every == 0 or self.done == self.total:
            elapsed = time.perf_counter() - self.start
            log.info("%s: %d/%d requests (%.1f/s)", self.what, self.done, self.total, self.done / max(elapsed, 1e-9))


if register_model is not None:
    register_model("sdtp")(SdtpLM)
