"""Where downloads and results go: the hub's settings and whether it answers (one HEAD request, none under
HF_HUB_OFFLINE=1), and free disk space."""

from __future__ import annotations

import os
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sdtp.doctor.checks import Check
from sdtp.memory import gib

HUB_TIMEOUT_S = 3.0
_TRUE = {"1", "ON", "YES", "TRUE"}


def _head(url: str, timeout_s: float) -> int:
    """HTTP status of a HEAD request to `url` (any HTTP answer, 4xx included, means the server is reachable)."""
    request = urllib.request.Request(url, method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().upper() in _TRUE


def hub_cache_dir() -> Path:
    """Where the hub cache is, as huggingface_hub resolves it (HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/…)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


@dataclass(frozen=True)
class HubStatus:
    """Can the hub be reached from here. `offline`: HF_HUB_OFFLINE is set (no request was made)."""

    endpoint: str
    offline: bool
    reachable: bool
    status: int | None = None
    seconds: float | None = None
    error: str | None = None


def hub_status(timeout_s: float = HUB_TIMEOUT_S) -> HubStatus:
    """One HEAD request to the hub's endpoint with a short timeout; none under HF_HUB_OFFLINE=1."""
    from huggingface_hub import constants

    endpoint = os.environ.get("HF_ENDPOINT") or constants.ENDPOINT
    if _env_true("HF_HUB_OFFLINE"):
        return HubStatus(endpoint, offline=True, reachable=False)
    start = time.perf_counter()
    try:
        status = _head(endpoint, timeout_s)
    except Exception as error:  # noqa: BLE001 - any failure (DNS, refused, timeout, TLS, proxy) means unreachable
        return HubStatus(
            endpoint, False, False, seconds=time.perf_counter() - start, error=f"{type(error).__name__}: {error}"
        )
    return HubStatus(endpoint, False, True, status=status, seconds=time.perf_counter() - start)


def _token_source() -> str | None:
    if os.environ.get("HF_TOKEN"):
        return "HF_TOKEN"
    try:
        from huggingface_hub import get_token

        return "a saved login (hf auth login)" if get_token() else None
    except Exception:  # noqa: BLE001 - an unreadable token file is "no token"
        return None


def hub(status: HubStatus | None = None, needed: Sequence[str] = ()) -> list[Check]:
    """The hub settings (HF_HOME, HF_HUB_CACHE, HF_HUB_OFFLINE, whether a token is set — never the token) and
    whether the hub answers.

    Args:
        status: the reachability (default: `hub_status()`, one HEAD request unless offline).
        needed: what this config still has to download (not in the cache); an unreachable hub is a problem only then.
    """
    status = hub_status() if status is None else status
    cache = hub_cache_dir()
    settings = {name: os.environ.get(name) for name in ("HF_HOME", "HF_HUB_CACHE", "HF_HUB_OFFLINE", "HF_ENDPOINT")}
    shown = ", ".join(f"{k}={v}" for k, v in settings.items() if v) or "no HF_* variables set"
    checks = [Check("hf cache", True, f"{cache} ({shown})", data={"cache": str(cache), **settings})]
    token = _token_source()
    checks.append(
        Check(
            "hf token",
            True,
            f"set ({token})" if token else "not set (only gated repos such as meta-llama/* need one: export HF_TOKEN)",
            data={"set": token is not None, "source": token},
        )
    )
    data = {
        "endpoint": status.endpoint,
        "offline": status.offline,
        "reachable": status.reachable,
        "status": status.status,
        "seconds": status.seconds,
        "error": status.error,
        "needed": list(needed),
    }
    if status.offline:
        checks.append(
            Check(
                "hub",
                True,
                "offline (HF_HUB_OFFLINE=1): no request made; models and data come from the HF cache or local paths",
                data=data,
            )
        )
    elif status.reachable:
        checks.append(
            Check("hub", True, f"{status.endpoint} reachable (HTTP {status.status}, {status.seconds:.2f} s)", data=data)
        )
    elif needed:
        checks.append(
            Check(
                "hub",
                False,
                f"{status.endpoint} unreachable ({status.error}), and this config downloads {', '.join(needed)}",
                "run where the hub is reachable (or set HF_ENDPOINT to a mirror), or fill the HF cache elsewhere and "
                "export HF_HUB_OFFLINE=1, or point the config at local copies",
                data,
            )
        )
    else:
        checks.append(
            Check(
                "hub", True, f"{status.endpoint} unreachable ({status.error}); this config downloads nothing", data=data
            )
        )
    return checks


# --- disk -------------------------------------------------------------------------------------------------------


def existing_parent(path: str | os.PathLike) -> Path:
    """`path` itself if it exists, else its nearest existing parent."""
    path = Path(path).expanduser().absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def disk(path: str | os.PathLike, need_bytes: int = 0, item: str = "disk", purpose: str = "") -> Check:
    """Free space where `path` is (or would be created); a problem when less than `need_bytes`."""
    where = existing_parent(path)
    usage = shutil.disk_usage(where)
    shown = str(path) if Path(path).expanduser().absolute() == where else f"{path} (not there yet; {where})"
    detail = f"{gib(usage.free)} free of {gib(usage.total)} at {shown}" + (f"; {purpose}" if purpose else "")
    data = {"path": str(path), "checked": str(where), "free": usage.free, "total": usage.total, "need": need_bytes}
    if usage.free < need_bytes:
        return Check(item, False, f"{detail}; needs about {gib(need_bytes)}", f"free space there or move {path}", data)
    return Check(item, True, detail, data=data)
