"""One line of the doctor's report (`Check`), and the small formatting helpers every group of checks shares."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Check:
    """One line of the report.

    Fields:
        item: what was checked ("torch", "cuda:0", "hub").
        ok: False marks a PROBLEM (something to change before running).
        detail: what was found.
        advice: what to do about a problem ("" when ok).
        data: the same facts, machine-readable (for `--json`).
    """

    item: str
    ok: bool
    detail: str
    advice: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def line(self) -> str:
        text = f"{'ok' if self.ok else 'PROBLEM:':<8} {self.item}: {self.detail}"
        return f"{text}. Fix: {self.advice}" if self.advice else text

    def to_dict(self) -> dict[str, Any]:
        return {
            "item": self.item,
            "ok": self.ok,
            "detail": self.detail,
            "advice": self.advice,
            "data": self.data,
            "line": self.line,
        }


def count(params: int) -> str:
    """A parameter count for people: "7.62 B", "42.1 M", "320,512"."""
    if params >= 1e9:
        return f"{params / 1e9:.2f} B"
    if params >= 1e6:
        return f"{params / 1e6:.1f} M"
    return f"{params:,}"
