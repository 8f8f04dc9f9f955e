"""A config section (a mapping from the workflow's YAML) as a library dataclass, naming any key it does not know."""

from __future__ import annotations

import dataclasses


def section_from_dict(cls, section: str, values: dict | None):
    """Build dataclass `cls` from the config section `section` (None = defaults), naming any key it does not know."""
    values = dict(values or {})
    valid = [f.name for f in dataclasses.fields(cls)]
    unknown = [key for key in values if key not in valid]
    if unknown:
        raise ValueError(
            f"unknown {section} config key{'s' if len(unknown) > 1 else ''} {', '.join(repr(k) for k in unknown)} in "
            f"config section `{section}`; valid keys: {', '.join(valid)}"
        )
    return cls(**values)
