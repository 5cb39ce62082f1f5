"""Rules as data: sizes of each kind and naming rules, loaded from YAML and checked at start."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml

POLICIES_DIR = Path(__file__).resolve().parent
KINDS = ("website",)
_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
HOSTNAME_RE = re.compile(rf"^{_LABEL}(\.{_LABEL})+$")


class PolicyError(ValueError):
    """A policy file is malformed; the message names the file, the field and what is expected."""


@dataclass(frozen=True)
class Size:
    kind: str
    name: str
    cpu: float
    memory_mib: int
    pids: int
    disk_mib: int

    @property
    def memory_bytes(self) -> int:
        return self.memory_mib * 1024 * 1024

    @property
    def nano_cpus(self) -> int:
        return int(round(self.cpu * 1_000_000_000))

    @property
    def disk_bytes(self) -> int:
        return self.disk_mib * 1024 * 1024


@dataclass(frozen=True)
class Policies:
    sizes: Mapping[str, Mapping[str, Size]]
    platform: Mapping[str, Size]

    def size(self, kind: str, name: str) -> Size:
        """The size `name` of `kind`; KeyError when unknown."""
        return self.sizes[kind][name]

    def size_names(self, kind: str) -> list[str]:
        return list(self.sizes.get(kind, {}))


def _number(value: Any, where: str, *, minimum: float, maximum: float, integer: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PolicyError(f"{where}: expected a number, got {value!r}")
    if integer and int(value) != value:
        raise PolicyError(f"{where}: expected a whole number, got {value!r}")
    if not minimum <= value <= maximum:
        raise PolicyError(f"{where}: expected between {minimum:g} and {maximum:g}, got {value!r}")
    return value


def _parse_size(kind: str, name: str, raw: Any, where: str, *, disk: bool = True) -> Size:
    if not isinstance(raw, dict):
        raise PolicyError(f"{where}: expected a mapping with cpu, memory_mib, pids, disk_mib")
    fields = {"cpu", "memory_mib", "pids"} | ({"disk_mib"} if disk else set())
    unknown = set(raw) - fields
    if unknown:
        raise PolicyError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}; "
                          f"expected {', '.join(sorted(fields))}")
    missing = fields - set(raw)
    if missing:
        raise PolicyError(f"{where}: missing field(s) {', '.join(sorted(missing))}")
    return Size(
        kind=kind,
        name=name,
        cpu=float(_number(raw["cpu"], f"{where}.cpu", minimum=0.01, maximum=64, integer=False)),
        memory_mib=int(_number(raw["memory_mib"], f"{where}.memory_mib", minimum=16,
                               maximum=262144, integer=True)),
        pids=int(_number(raw["pids"], f"{where}.pids", minimum=8, maximum=65536, integer=True)),
        disk_mib=int(_number(raw.get("disk_mib", 0), f"{where}.disk_mib", minimum=0 if not disk else 16,
                             maximum=16 * 1024 * 1024, integer=True)),
    )


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PolicyError(f"{path.name}: file is missing from {path.parent}") from None
    except yaml.YAMLError as exc:
        raise PolicyError(f"{path.name}: not valid YAML ({exc})") from None


def parse_sizes(raw: Any, filename: str = "sizes.yaml") -> dict[str, dict[str, Size]]:
    """Validate the sizes document: kind -> size name -> resources."""
    if not isinstance(raw, dict):
        raise PolicyError(f"{filename}: expected a mapping of kind -> sizes")
    sizes: dict[str, dict[str, Size]] = {}
    for kind, table in raw.items():
        if kind not in KINDS:
            raise PolicyError(f"{filename}: unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
        if not isinstance(table, dict) or not table:
            raise PolicyError(f"{filename}: {kind}: expected at least one size (S, M, L, …)")
        sizes[kind] = {}
        for name, spec in table.items():
            if not isinstance(name, str) or not re.fullmatch(r"[A-Z0-9]{1,8}", name):
                raise PolicyError(f"{filename}: {kind}.{name}: size names are 1-8 capitals or digits")
            sizes[kind][name] = _parse_size(kind, name, spec, f"{filename}: {kind}.{name}")
    for kind in KINDS:
        if kind not in sizes:
            raise PolicyError(f"{filename}: kind {kind!r} has no sizes")
    return sizes


def load(directory: Path | str | None = None) -> Policies:
    """Read and validate every policy file in `directory` (default: this package)."""
    base = Path(directory) if directory else POLICIES_DIR
    sizes = parse_sizes(_read_yaml(base / "sizes.yaml"))
    raw_platform = _read_yaml(base / "platform.yaml")
    if not isinstance(raw_platform, dict) or "proxy" not in raw_platform:
        raise PolicyError("platform.yaml: expected a mapping with a 'proxy' entry")
    platform = {name: _parse_size("platform", name, spec, f"platform.yaml: {name}", disk=False)
                for name, spec in raw_platform.items()}
    return Policies(sizes=sizes, platform=platform)


def hostname_problem(hostname: str, domain: str) -> str | None:
    """Why `hostname` cannot be a site of the institution owning `domain`, or None if it can.

    Returns a short code: 'syntax' or 'outside'. The domain itself is allowed.
    """
    if len(hostname) > 253 or not HOSTNAME_RE.match(hostname):
        return "syntax"
    domain = domain.lower().strip(".")
    if hostname != domain and not hostname.endswith("." + domain):
        return "outside"
    return None
