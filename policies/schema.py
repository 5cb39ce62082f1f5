"""Read and check YAML rule files so every error names the file, the field path and the fix."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterable

import yaml

from policies.model import PolicyError

_MISSING = object()


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key written twice (PyYAML silently keeps the last one)."""

    def construct_mapping(self, node, deep=False):  # noqa: D401 - PyYAML hook
        seen: set[Any] = set()
        for key_node, _value in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path) -> Any:
    """Parse one policy file; a missing or unreadable file is a PolicyError naming it."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PolicyError(f"{path.name}: file is missing from {path.parent}") from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise PolicyError(f"{path.name}: not valid YAML ({exc})") from None


def _show(value: Any) -> str:
    if value is None:
        return "nothing"
    return repr(value) if isinstance(value, str) else str(value)


class Checker:
    """Field checks for one file; `path` is the dotted field path (plans.ministry.cpu)."""

    def __init__(self, filename: str):
        self.filename = filename

    def fail(self, path: str, expected: str, got: Any = _MISSING) -> PolicyError:
        where = f"{self.filename}: {path}: " if path else f"{self.filename}: "
        tail = "" if got is _MISSING else f", got {_show(got)}"
        return PolicyError(f"{where}{expected}{tail}")

    def mapping(self, path: str, value: Any, *, required: Iterable[str] = (),
                optional: Iterable[str] = (), what: str = "field") -> dict:
        """A mapping with exactly the known keys; unknown keys and missing ones are named."""
        required, optional = list(required), list(optional)
        if not isinstance(value, dict):
            keys = ", ".join(required + optional)
            expected = f"expected a mapping with {keys}" if keys else "expected a mapping"
            raise self.fail(path, expected, value)
        known = required + optional
        for key in value:
            if known and key not in known:
                raise self.fail(_join(path, key),
                                f"unknown {what}; expected one of {', '.join(known)}")
        for key in required:
            if key not in value:
                raise self.fail(_join(path, key), "missing")
        return value

    def whole(self, path: str, value: Any, *, minimum: int = 0, maximum: int | None = None) -> int:
        expected = f"expected a whole number >= {minimum}"
        if maximum is not None:
            expected = f"expected a whole number between {minimum} and {maximum}"
        if (isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value
                or value < minimum or (maximum is not None and value > maximum)):
            raise self.fail(path, expected, value)
        return int(value)

    def number(self, path: str, value: Any, *, minimum: float = 0, maximum: float | None = None,
               decimals: int = 3) -> float:
        expected = f"expected a number >= {minimum:g}"
        if maximum is not None:
            expected = f"expected a number between {minimum:g} and {maximum:g}"
        expected += f" with at most {decimals} decimals"
        if (isinstance(value, bool) or not isinstance(value, (int, float)) or value != value
                or value < minimum or (maximum is not None and value > maximum)
                or round(value, decimals) != value):
            raise self.fail(path, expected, value)
        return float(value)

    def boolean(self, path: str, value: Any) -> bool:
        if not isinstance(value, bool):
            raise self.fail(path, "expected true or false", value)
        return value

    def text(self, path: str, value: Any, *, pattern: str | None = None,
             expected: str = "expected a non-empty text") -> str:
        if not isinstance(value, str) or not value.strip() or (
                pattern is not None and not re.fullmatch(pattern, value)):
            raise self.fail(path, expected, value)
        return value

    def texts(self, path: str, value: Any, *, pattern: str | None = None,
              item: str = "a text", allowed: Iterable[str] | None = None,
              allow_empty: bool = False) -> tuple[str, ...]:
        """A list of distinct strings, each one `item` (matching `pattern`) or among `allowed`."""
        choices = list(allowed) if allowed is not None else None
        if not isinstance(value, list) or (not value and not allow_empty):
            what = f"one or more of {', '.join(choices)}" if choices else f"{item} per line"
            raise self.fail(path, f"expected a list: {what}", value)
        out: list[str] = []
        for index, entry in enumerate(value):
            where = f"{path}[{index}]"
            if choices is not None and entry not in choices:
                raise self.fail(where, f"expected one of {', '.join(choices)}", entry)
            self.text(where, entry, pattern=pattern, expected=f"expected {item}")
            if entry in out:
                raise self.fail(where, "listed twice", entry)
            out.append(entry)
        return tuple(out)

    def regex(self, path: str, value: Any) -> re.Pattern:
        source = self.text(path, value, expected="expected a regular expression")
        try:
            return re.compile(source)
        except re.error as exc:
            raise self.fail(path, f"not a valid regular expression ({exc})", value) from None


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)
