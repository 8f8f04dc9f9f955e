"""Method names, KV budgets and the press's parameters (`sdtp.kv_compression`); building a press needs the extra."""

from __future__ import annotations

import pytest

from sdtp import kv_compression
from sdtp.kv_compression import KVCompression, canonical_method, kv_compression_for, mean_kv_fraction, parse_method
from sdtp.schedule import KeepSchedule


@pytest.mark.parametrize(
    ("method", "scorer", "press", "name", "path", "kind"),
    [
        ("kvpress:snapkv", "baseline", "snapkv", "kvpress:snapkv", "kvpress-snapkv", "KV compression"),
        ("kvpress-streaming_llm", "baseline", "streaming_llm", "kvpress:streaming_llm", "kvpress-streaming_llm",
         "KV compression"),
        ("sdtp+snapkv", "sdtp", "snapkv", "sdtp+snapkv", "sdtp+snapkv", "combined"),
        ("random+pyramidkv", "random", "pyramidkv", "random+pyramidkv", "random+pyramidkv", "combined"),
        ("sdtp", "sdtp", None, "sdtp", "sdtp", "prefill pruning"),
        ("baseline", "baseline", None, "baseline", "baseline", "baseline"),
    ],
)  # fmt: skip
def test_method_names(method, scorer, press, name, path, kind):
    parsed = parse_method(method)
    assert (parsed.scorer, parsed.press, parsed.name, parsed.path_label, parsed.kind) == (
        scorer, press, name, path, kind,
    )  # fmt: skip
    assert canonical_method(parsed.path_label) == name


@pytest.mark.parametrize(
    ("method", "message"),
    [
        ("kvpress:snapkw", "unknown press 'snapkw'; known presses: knorm, random"),
        ("sdtp+h2o", "unknown press 'h2o'"),
        ("baseline+snapkv", "a press alone is named kvpress:snapkv"),
    ],
)
def test_bad_method_names_say_what_is_valid(method, message):
    with pytest.raises(ValueError, match=message):
        parse_method(method)


def test_budgets():
    schedule = KeepSchedule([1, 3], 0.7, min_local=8)
    n, layers = 200, 5
    tokens = schedule.tokens_per_layer(n, layers)
    assert tokens == [200, 140, 140, 98, 98]
    assert mean_kv_fraction(schedule, n, layers) == pytest.approx(sum(tokens) / (5 * 200))
    sdtp_budget = KVCompression("snapkv", {}, 0.7, "sdtp_mean_kv", schedule)
    assert sdtp_budget.compression_ratio(n, layers) == pytest.approx(1 - 676 / 1000)
    for budget in ("keep_ratio", "combined"):
        assert KVCompression("snapkv", {}, 0.7, budget, schedule).compression_ratio(n, layers) == pytest.approx(0.3)
    with pytest.raises(ValueError, match="kvpress.budget is 'mean'; valid budgets: sdtp_mean_kv, keep_ratio"):
        KVCompression("snapkv", {}, 0.7, "mean", schedule)


def test_kv_compression_for_picks_the_budget(monkeypatch):
    monkeypatch.setattr(kv_compression, "kvpress_installed", lambda: True)
    schedule = KeepSchedule([1], 0.5)
    section = {"budget": "keep_ratio", "snapkv": {"window_size": 8}}
    alone = kv_compression_for("kvpress-snapkv", 0.5, schedule, section)
    assert (alone.press, alone.params, alone.budget) == ("snapkv", {"window_size": 8}, "keep_ratio")
    assert kv_compression_for("sdtp+snapkv", 0.5, schedule, section).budget == "combined"
    assert kv_compression_for("kvpress:knorm", 0.5, schedule, None).budget == "sdtp_mean_kv"
    assert kv_compression_for("sdtp", 0.5, schedule, section) is None


def test_missing_extra_names_the_install_command(monkeypatch):
    monkeypatch.setattr(kv_compression, "kvpress_installed", lambda: False)
    with pytest.raises(
        ImportError, match=r"method 'kvpress:snapkv' needs NVIDIA kvpress.*pip install -e '\.\[kvpress\]'"
    ):
        kv_compression_for("kvpress-snapkv", 0.5, KeepSchedule([1], 0.5), None)
    assert kv_compression_for("sdtp", 0.5, KeepSchedule([1], 0.5), None) is None  # no press, no kvpress needed


def test_bad_press_parameter_names_the_config_key():
    if not kv_compression.kvpress_installed():
        pytest.skip("building a press needs the kvpress extra: pip install -e '.[kvpress]'")
    with pytest.raises(
        ValueError,
        match="config key kvpress.snapkv: kvpress.SnapKVPress has no parameter windw_size; "
        "its parameters: window_size, kernel_size",
    ):
        kv_compression.build_press("snapkv", {"windw_size": 8}, 0.5)
    assert kv_compression.build_press("snapkv", {"window_size": 8}, 0.25).window_size == 8
