"""KV-cache compression methods from NVIDIA kvpress (the optional `[kvpress]` extra), alone and after token pruning.

Method names (config, tables, figures) and their path form (result files, Snakemake's `method` wildcard; a colon is
not filesystem-friendly everywhere):

| method            | path label        | prefill                                  | then, per layer                  |
|-------------------|-------------------|------------------------------------------|----------------------------------|
| `kvpress:<press>` | `kvpress-<press>` | full (no pruning)                        | the press compresses its cache   |
| `<scorer>+<press>`| `<scorer>+<press>`| pruned between layers (`sdtp`, `random`…)| the press compresses its cache   |

The press is kvpress's own object (`PRESSES` maps our names to its classes), its parameters the config's
`kvpress.<press>` section, its hooks applied through `sdtp.kvpress_compat.applied` while the engine runs the prefill.
Its `compression_ratio` (the fraction of each layer's KV pairs it removes) comes from the keep ratio r:
- `kvpress.budget: sdtp_mean_kv` (default, a press alone): 1 − SDTP's mean KV per layer ÷ prompt length at the same
  r and schedule (the paper's compression definition), so the press sits at SDTP's KV budget;
- `kvpress.budget: keep_ratio` (a press alone): 1 − r per layer;
- combined methods always: 1 − r, applied to what the pruning left at each layer (KV = ⌊n_l · r⌋).
Every latency and prediction row records the budget it used (`kv_budget`) and the press's ratio.

A layer too short for the press is left uncompressed (`only_what_fits`): kvpress asserts when a layer holds no more
tokens than the press sets aside before scoring the rest (SnapKV's and PyramidKV's observation window, 64 by default;
StreamingLLM's and ExpectedAttention's sinks), and would empty a layer whose ⌊n_l · (1 − ratio)⌋ is 0. After token
pruning that happens on short prompts (`sdtp+snapkv` at r = 0.7 on 1K tokens leaves 59 tokens in the last layers), so
the press keeps such a layer whole, rather than narrowing its window (which would be another method), and
`KVCompression.last_uncompressed_layers` names those layers for the rows. Any other error the press raises becomes
`sdtp.failures.CannotMeasure` (a row with status "error" and the reason, not a crashed job).

kvpress is imported lazily: without the extra, everything but building a press works.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from torch import nn

from sdtp.failures import CannotMeasure
from sdtp.kvpress_compat import applied
from sdtp.oom import describe, is_out_of_memory
from sdtp.schedule import KeepSchedule

# Our name -> kvpress class. Presses that score and drop whole tokens per layer and run on CPU with any attention
# backend (ObservedAttention needs eager attention weights; ThinK drops channels, not tokens: not listed).
PRESSES = {
    "knorm": "KnormPress",
    "random": "RandomPress",
    "streaming_llm": "StreamingLLMPress",
    "snapkv": "SnapKVPress",
    "pyramidkv": "PyramidKVPress",
    "tova": "TOVAPress",
    "expected_attention": "ExpectedAttentionPress",
    "keydiff": "KeyDiffPress",
    "lagkv": "LagKVPress",
}
PREFIX = "kvpress:"
PATH_PREFIX = "kvpress-"
BUDGETS = ("sdtp_mean_kv", "keep_ratio")
INSTALL = "pip install -e '.[kvpress]'"
# Press fields naming tokens a press sets aside before it scores the rest (SnapKV's and PyramidKV's observation window,
# StreamingLLM's and ExpectedAttention's sinks): it can compress only a layer holding more tokens than these.
RESERVED_TOKEN_FIELDS = ("window_size", "n_sink")

log = logging.getLogger(__name__)


def kvpress_installed() -> bool:
    """kvpress is importable as the real package (a folder named kvpress on sys.path, e.g. tests/kvpress/, would
    import as an empty namespace package: it has no origin)."""
    spec = importlib.util.find_spec("kvpress")
    return spec is not None and spec.origin is not None


@dataclass(frozen=True)
class MethodName:
    """A method name split into its token-pruning scorer and its press.

    scorer: the `sdtp.scorers` name that prunes between layers ("baseline" for a press alone: no pruning).
    press: the `PRESSES` name, or None for a pure token-pruning method.
    """

    scorer: str
    press: str | None = None

    @property
    def name(self) -> str:
        """The canonical name, as in the config: `kvpress:snapkv`, `sdtp+snapkv`, `sdtp`."""
        if self.press is None:
            return self.scorer
        return f"{PREFIX}{self.press}" if self.scorer == "baseline" else f"{self.scorer}+{self.press}"

    @property
    def path_label(self) -> str:
        """The name in result paths: `kvpress-snapkv`, `sdtp+snapkv`, `sdtp`."""
        return self.name.replace(PREFIX, PATH_PREFIX)

    @property
    def kind(self) -> str:
        """The legend group: baseline, prefill pruning, KV compression or combined."""
        if self.press is None:
            return "baseline" if self.scorer == "baseline" else "prefill pruning"
        return "KV compression" if self.scorer == "baseline" else "combined"


def parse_method(method: str) -> MethodName:
    """`kvpress:snapkv` / `kvpress-snapkv` / `sdtp+snapkv` / `sdtp` -> MethodName; unknown presses are errors."""
    for prefix in (PREFIX, PATH_PREFIX):
        if method.startswith(prefix):
            return MethodName("baseline", _press_name(method[len(prefix) :], method))
    if "+" in method:
        scorer, press = method.split("+", 1)
        if scorer == "baseline":
            raise ValueError(f"method {method!r}: a press alone is named kvpress:{press}, not baseline+{press}")
        return MethodName(scorer, _press_name(press, method))
    return MethodName(method)


def canonical_method(method: str) -> str:
    """The config's name of a method given in either form (`kvpress-snapkv` -> `kvpress:snapkv`)."""
    return parse_method(method).name


def method_kind(method: str) -> str:
    """`MethodName.kind` of a method name; names that do not parse are "prefill pruning"."""
    try:
        return parse_method(method).kind
    except ValueError:
        return "prefill pruning"


def _press_name(press: str, method: str) -> str:
    if press not in PRESSES:
        raise ValueError(f"method {method!r}: unknown press {press!r}; known presses: {', '.join(PRESSES)}")
    return press


def require_kvpress(method: str) -> None:
    if not kvpress_installed():
        raise ImportError(f"method {method!r} needs NVIDIA kvpress, the optional extra: {INSTALL}")


def build_press(press: str, params: dict, compression_ratio: float):
    """kvpress's press object `PRESSES[press]` with the config's `params` at `compression_ratio`."""
    require_kvpress(f"{PREFIX}{press}")
    import kvpress

    cls = getattr(kvpress, PRESSES[press])
    fields = [f.name for f in dataclasses.fields(cls) if f.name != "compression_ratio"]
    unknown = sorted(set(params) - set(fields))
    if unknown:
        raise ValueError(
            f"config key kvpress.{press}: kvpress.{cls.__name__} has no parameter {', '.join(unknown)}; "
            f"its parameters: {', '.join(fields) or 'none'}"
        )
    return cls(compression_ratio=compression_ratio, **params)


def reserved_tokens(press) -> int:
    """Tokens `press` sets aside before scoring the rest (the largest of its `RESERVED_TOKEN_FIELDS`; 0 for none)."""
    return max(int(getattr(press, name, 0) or 0) for name in RESERVED_TOKEN_FIELDS)


def press_fits(press, tokens: int) -> bool:
    """Whether `press` can compress a layer of `tokens` cached tokens: more than its reserved tokens, and at least one
    token kept at its `compression_ratio` (kvpress keeps ⌊tokens · (1 − ratio)⌋)."""
    return tokens > reserved_tokens(press) and int(tokens * (1 - press.compression_ratio)) >= 1


def only_what_fits(press, uncompressed_layers: list[int]) -> None:
    """Make `press` (this instance only) leave a layer it does not fit (`press_fits`) uncompressed and append that
    layer's index to `uncompressed_layers`; any other error it raises (but out of memory) becomes `CannotMeasure`.

    kvpress's forward hook calls `press.compress(module, hidden_states, keys, values, attentions, kwargs)` after each
    layer's attention: hidden_states (1, q_len, d), keys and values (1, kv_heads, k_len, head_dim); it writes the
    returned keys and values back into the layer's cache, so returning them unchanged leaves the layer as it was.
    """
    compress = press.compress

    def compress_if_fits(module, hidden_states, keys, values, attentions, kwargs):
        tokens = min(hidden_states.shape[1], keys.shape[2])  # equal in a prefill: the layer's cache starts empty
        if not press_fits(press, tokens):
            uncompressed_layers.append(int(module.layer_idx))
            return keys, values
        try:
            return compress(module, hidden_states, keys, values, attentions, kwargs)
        except Exception as error:  # the press's own code: this configuration cannot be measured, not our bug
            if is_out_of_memory(error):
                raise
            message = f"{type(press).__name__} failed on layer {module.layer_idx} ({tokens} tokens): {describe(error)}"
        raise CannotMeasure(message)  # outside the except block: no chained traceback holding the layer's tensors

    press.compress = compress_if_fits


def mean_kv_fraction(schedule: KeepSchedule, length: int, num_layers: int) -> float:
    """SDTP's mean tokens per layer ÷ `length` at the schedule's keep ratio: 1 / the paper's compression ratio."""
    tokens = schedule.tokens_per_layer(length, num_layers)
    return sum(tokens) / (len(tokens) * length)


@dataclass
class KVCompression:
    """A method's press, built for each prompt at the compression ratio its budget gives (`compression_ratio`).

    press: `PRESSES` name; params: its config section; keep_ratio: r of the job; budget: `BUDGETS` entry, or
    "combined" (a press after token pruning: 1 − r per layer); schedule: the job's schedule (for `sdtp_mean_kv`).
    last_compression_ratio: the ratio of the latest `applied` prompt (what the rows record).
    last_uncompressed_layers: the layers the press left uncompressed in the latest `applied` prompt, too short for it
        (`press_fits`).
    """

    press: str
    params: dict
    keep_ratio: float
    budget: str
    schedule: KeepSchedule
    last_compression_ratio: float | None = field(default=None, init=False)
    last_uncompressed_layers: list[int] = field(default_factory=list, init=False)

    def __post_init__(self):
        if self.budget not in (*BUDGETS, "combined"):
            raise ValueError(f"kvpress.budget is {self.budget!r}; valid budgets: {', '.join(BUDGETS)}")
        if not 0 < self.keep_ratio <= 1:
            raise ValueError(f"keep ratio {self.keep_ratio} is outside (0, 1]")

    def compression_ratio(self, length: int, num_layers: int) -> float:
        """The press's `compression_ratio` (fraction of KV pairs removed per layer) for a prompt of `length`."""
        sdtp_budget = self.budget == "sdtp_mean_kv"
        keep = mean_kv_fraction(self.schedule, length, num_layers) if sdtp_budget else self.keep_ratio
        return max(0.0, 1.0 - keep)

    @contextmanager
    def applied(self, model: nn.Module, length: int) -> Iterator[None]:
        """The press's hooks on `model` for one prefill of `length` prompt tokens (what `sdtp.engine` enters)."""
        ratio = self.compression_ratio(length, model.config.num_hidden_layers)
        self.last_compression_ratio = ratio
        self.last_uncompressed_layers = []
        press = build_press(self.press, self.params, ratio)
        only_what_fits(press, self.last_uncompressed_layers)
        with applied(press, model):
            yield
        if self.last_uncompressed_layers:
            log.debug(
                "%s (reserves %d tokens) left layers %s of a %d-token prompt uncompressed: too short for it",
                self.press, reserved_tokens(press), self.last_uncompressed_layers, length,
            )  # fmt: skip


def kv_compression_for(method: str, keep_ratio: float, schedule: KeepSchedule, section: dict | None):
    """The `KVCompression` of `method` at `keep_ratio` (None for a pure token-pruning method).

    section: the config's `kvpress:` section (`budget` and one parameter object per press), None for the defaults.
    """
    parsed = parse_method(method)
    if parsed.press is None:
        return None
    require_kvpress(parsed.name)
    section = section or {}
    budget = "combined" if parsed.scorer != "baseline" else section.get("budget", "sdtp_mean_kv")
    return KVCompression(parsed.press, dict(section.get(parsed.press) or {}), keep_ratio, budget, schedule)
