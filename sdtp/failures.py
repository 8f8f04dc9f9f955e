"""Failures a job records as a result row (`status` and `reason`) instead of stopping, so that one configuration that
cannot be measured still leaves the tables and the report buildable:

- "oom": out of memory (`sdtp.oom.is_out_of_memory`);
- "error": a configuration the method cannot run (`CannotMeasure`; e.g. a KV-cache press that fails on a layer).

Any other exception is a bug and stops the job. Free memory after leaving the `except` block, as `sdtp.oom` says.
"""

from __future__ import annotations

from sdtp.oom import describe, is_out_of_memory

OOM, ERROR = "oom", "error"


class CannotMeasure(RuntimeError):
    """This method cannot run on this input (not a bug of ours): the job records a row with status "error" and this
    message as its reason, and goes on."""


def recorded_failure(error: BaseException) -> tuple[str, str] | None:
    """(status, reason) of an error a job records as a row: ("oom", …) or ("error", …); None for one that must stop
    the job. The reason is the error's first line (`sdtp.oom.describe`)."""
    if is_out_of_memory(error):
        return OOM, describe(error)
    if isinstance(error, CannotMeasure):
        return ERROR, describe(error)
    return None
