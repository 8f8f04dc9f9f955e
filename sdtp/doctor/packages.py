"""Python and the packages the pipeline imports: installed versions against the ranges the package declares and the
versions the test suite passed on.

The policy, in one place:
- outside the range `pyproject.toml` declares (the installed distribution's `Requires-Dist`): a PROBLEM, with the
  command that installs a version inside it;
- inside the range but not the tested version: `ok`, with the tested version and the constraints file that reproduces
  the tested set (a newer patch release is what a fresh `pip install` gives a newcomer; it is not a fault);
- the tested version: `ok (tested)`.
The optional extras' packages (kvpress, lm_eval) get the same policy against their extra's range and
`envs/constraints-extras.txt`, when they are installed.

Every input can be given (`declared`, `installed`), so the policy is tested on versions that are not the installed ones.
"""

from __future__ import annotations

import importlib.metadata
import platform
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

from sdtp.doctor.checks import Check

DISTRIBUTION = "sdtp-bench"
# Packages the pipeline imports, compared with envs/constraints.txt (the versions the test suite passed on).
PACKAGES = ("torch", "transformers", "accelerate", "huggingface_hub", "snakemake", "pandas", "pyarrow", "plotly")
# The optional extras' packages (pyproject's [project.optional-dependencies]), compared with envs/constraints-extras.txt
# when they are installed.
EXTRA_PACKAGES = ("kvpress", "lm_eval")
MIN_PYTHON = (3, 10)
CONSTRAINTS = "envs/constraints.txt"
EXTRAS_CONSTRAINTS = "envs/constraints-extras.txt"
_EXTRA_MARKER = re.compile(r"""extra\s*==\s*["']([^"']+)["']""")


def normalise(name: str) -> str:
    """A distribution name as pip compares them (PEP 503): lower case, runs of `-_.` as one `-`."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class DeclaredRange:
    """What the package requires of one distribution: its version range, and the extra that asks for it (None: core)."""

    name: str
    specifier: SpecifierSet
    extra: str | None = None


def declared_ranges(requirements: Iterable[str] | None = None) -> dict[str, DeclaredRange]:
    """Normalised name → `DeclaredRange`, from requirement strings (default: the installed sdtp-bench's Requires-Dist,
    which pip resolved against `pyproject.toml`). A core requirement wins over an extra's for the same name."""
    if requirements is None:
        try:
            requirements = importlib.metadata.requires(DISTRIBUTION) or []
        except importlib.metadata.PackageNotFoundError:  # run from a source tree that was never installed
            requirements = []
    ranges: dict[str, DeclaredRange] = {}
    for text in requirements:
        requirement = Requirement(text)
        found = _EXTRA_MARKER.search(str(requirement.marker)) if requirement.marker else None
        extra = found.group(1) if found else None
        key = normalise(requirement.name)
        if key not in ranges or (ranges[key].extra is not None and extra is None):
            ranges[key] = DeclaredRange(requirement.name, requirement.specifier, extra)
    return ranges


def installed_version(name: str) -> str | None:
    """The installed version of distribution `name` (`importlib.metadata`), None when it is not installed."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _public(version: str) -> str:
    """`version` without its local label (torch's `+cu128`, `+cpu`): a different build of the same release."""
    return version.split("+", 1)[0]


def _in_range(version: str, specifier: SpecifierSet) -> bool:
    try:
        return specifier.contains(Version(_public(version)), prereleases=True)
    except InvalidVersion:
        return False


def _range_fix(name: str, declared: DeclaredRange) -> str:
    wanted = f"{declared.name}{declared.specifier}"
    if normalise(name) == "torch":
        return f'install a torch "{wanted}" built for your CUDA (https://pytorch.org/get-started/locally/)'
    if declared.extra:
        return f'pip install "{wanted}" (or pip install -e ".[{declared.extra}]" -c {EXTRAS_CONSTRAINTS})'
    return f'pip install "{wanted}" (or pip install -e ".[test]" -c {CONSTRAINTS}, the tested set)'


def package_check(
    name: str,
    installed: str | None,
    declared: DeclaredRange | None,
    tested: str | None,
    constraints: str | None,
) -> Check | None:
    """One package's line of the report (None for an optional extra that is not installed).

    Args:
        name: the distribution's name as the report shows it.
        installed: its installed version (None: not installed).
        declared: the range the package declares for it (None: no range; only the pin is compared).
        tested: the version the suite passed on (None: not pinned).
        constraints: the constraints file `tested` comes from (None: no such file was found).
    """
    data = {
        "installed": installed,
        "tested": tested,
        "declared": str(declared.specifier) if declared else None,
        "extra": declared.extra if declared else None,
    }
    if installed is None:
        if declared is not None and declared.extra:
            return None
        return Check(name, False, "not installed", 'pip install -e ".[test]"', data)
    if declared is not None and not _in_range(installed, declared.specifier):
        return Check(
            name,
            False,
            f"{installed} is outside the range sdtp-bench declares ({declared.specifier or 'any'}"
            + (f", extra [{declared.extra}]" if declared.extra else "")
            + ")",
            _range_fix(name, declared),
            data,
        )
    in_range = f"in the declared range {declared.specifier}; " if declared is not None and declared.specifier else ""
    if constraints is None:
        return Check(name, True, f"{installed} ({in_range}not compared: no {CONSTRAINTS})", data=data)
    if tested is None:
        return Check(name, True, f"{installed} ({in_range}not pinned in {constraints})", data=data)
    if _public(installed) == _public(tested):
        return Check(name, True, f"{installed} (tested)", data=data)
    return Check(
        name,
        True,
        f"{installed} (tested: {tested}; {in_range}`-c {constraints}` reproduces the tested set)",
        data=data,
    )


def versions(
    tested: Mapping[str, str] | None,
    tested_extras: Mapping[str, str] | None = None,
    declared: Mapping[str, DeclaredRange] | None = None,
    installed: Callable[[str], str | None] | None = None,
) -> list[Check]:
    """Python, each of `PACKAGES`, and each installed extra package (`EXTRA_PACKAGES`), by the module's policy.

    Args:
        tested: name → version of envs/constraints.txt (None: no such file, e.g. an installed package).
        tested_extras: the same of envs/constraints-extras.txt.
        declared: normalised name → range (default: `declared_ranges()`, the installed distribution's).
        installed: name → installed version or None (default: `installed_version`, looked up when called).
    """
    declared = declared_ranges() if declared is None else declared
    installed = installed_version if installed is None else installed
    python_ok = sys.version_info[:2] >= MIN_PYTHON
    checks = [
        Check(
            "python",
            python_ok,
            f"{platform.python_version()} ({sys.executable})",
            "" if python_ok else f"use Python >= {'.'.join(map(str, MIN_PYTHON))}",
            {"version": platform.python_version(), "executable": sys.executable},
        )
    ]
    groups = [(PACKAGES, tested, CONSTRAINTS), (EXTRA_PACKAGES, tested_extras, EXTRAS_CONSTRAINTS)]
    for names, pins, constraints in groups:
        normalised_pins = {normalise(k): v for k, v in (pins or {}).items()}
        for name in names:
            key = normalise(name)
            check = package_check(
                name,
                installed(name),
                declared.get(key),
                normalised_pins.get(key),
                constraints if pins is not None else None,
            )
            if check is not None:
                checks.append(check)
    return checks


def read_constraints(path: str | Path) -> dict[str, str] | None:
    """`name==version` lines of a constraints file; None when the file is not there (an installed package)."""
    path = Path(path)
    if not path.is_file():
        return None
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[name.strip()] = version.strip()
    return pins
