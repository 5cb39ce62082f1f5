"""Backup retention periods (policies/retention.yaml), validated like the other rule files."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from policies.model import PolicyError

FIELDS = ("scheduled_days", "manual_days", "final_days")


@dataclass(frozen=True)
class Retention:
    scheduled_days: int
    manual_days: int
    final_days: int

    def days(self, trigger: str) -> int:
        return {"scheduled": self.scheduled_days, "manual": self.manual_days,
                "final": self.final_days}[trigger]


def load_retention(directory: Path | str | None = None) -> Retention:
    """Read retention.yaml; an error names the file, the field and what is expected."""
    base = Path(directory) if directory else Path(__file__).resolve().parent
    path = base / "retention.yaml"
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PolicyError(f"retention.yaml: file is missing from {base}") from None
    except yaml.YAMLError as exc:
        raise PolicyError(f"retention.yaml: not valid YAML ({exc})") from None
    if not isinstance(raw, dict):
        raise PolicyError("retention.yaml: expected a mapping of " + ", ".join(FIELDS))
    unknown = set(raw) - set(FIELDS)
    if unknown:
        raise PolicyError(f"retention.yaml: unknown field(s) {', '.join(sorted(unknown))}; "
                          f"expected {', '.join(FIELDS)}")
    values = {}
    for name in FIELDS:
        value = raw.get(name)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 3650:
            raise PolicyError(f"retention.yaml: {name}: expected a whole number of days from "
                              f"1 to 3650, got {value!r}")
        values[name] = value
    return Retention(**values)
