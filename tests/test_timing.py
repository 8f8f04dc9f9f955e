"""`sdtp.timing`: every device a model spans is synchronised around a timed region (CUDA simulated by recording)."""

from __future__ import annotations

import torch
from torch import nn

from sdtp import timing


class FakeParam:
    """Stands in for a parameter placed on a device this machine does not have."""

    def __init__(self, device: str):
        self.device = torch.device(device)


class SpreadModel(nn.Module):
    """A module whose parameters report the devices of a model dispatched over 2 GPUs (LM head on the last)."""

    def parameters(self, recurse: bool = True):
        return iter([FakeParam("cuda:0"), FakeParam("cuda:0"), FakeParam("cuda:1")])

    def buffers(self, recurse: bool = True):
        return iter([FakeParam("cuda:1")])


def record_cuda(monkeypatch) -> list[tuple[str, str]]:
    calls: list[tuple[str, str]] = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append(("sync", str(device))))
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device=None: calls.append(("reset", str(device))))
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: {"cuda:0": 7, "cuda:1": 9}[str(device)])
    return calls


def test_model_devices_lists_every_device_once_in_order():
    assert timing.model_devices(SpreadModel()) == [torch.device("cuda:0"), torch.device("cuda:1")]
    assert timing.model_devices(nn.Linear(2, 2)) == [torch.device("cpu")]


def test_timed_region_is_bracketed_by_a_sync_of_every_device(monkeypatch):
    calls = record_cuda(monkeypatch)
    devices = timing.model_devices(SpreadModel())
    seconds, result = timing.timed(lambda: calls.append(("work", "")) or 42, devices)
    assert result == 42 and seconds >= 0
    assert calls == [("sync", "cuda:0"), ("sync", "cuda:1"), ("work", ""), ("sync", "cuda:0"), ("sync", "cuda:1")]


def test_peak_memory_is_per_device(monkeypatch):
    calls = record_cuda(monkeypatch)
    devices = timing.model_devices(SpreadModel())
    timing.reset_peak_memory(devices)
    assert calls == [("reset", "cuda:0"), ("reset", "cuda:1")]
    assert timing.peak_memory_per_device(devices) == [7, 9]


def test_cpu_needs_no_sync(monkeypatch):
    calls = record_cuda(monkeypatch)
    timing.timed(lambda: None, [torch.device("cpu")])
    timing.reset_peak_memory("cpu")
    assert calls == [] and timing.peak_memory_per_device(["cpu"]) == []


def test_recorded_synchronisations_sees_each_call_and_lets_it_run(monkeypatch):
    calls = record_cuda(monkeypatch)
    fake_synchronize = torch.cuda.synchronize
    with timing.recorded_synchronisations() as drained:
        timing.timed(lambda: None, timing.model_devices(SpreadModel()))
        torch.cuda.synchronize()  # no device: the current one
    assert [str(d) for d in drained] == ["cuda:0", "cuda:1", "cuda:0", "cuda:1", "cuda"]
    assert calls == [("sync", "cuda:0"), ("sync", "cuda:1")] * 2 + [("sync", "None")]  # each call still ran
    assert torch.cuda.synchronize is fake_synchronize  # put back after the block
