"""Build frozen config dataclasses from parsed TOML, collecting every problem with its key path.

A config class is a frozen dataclass whose fields are declared with `setting()`: the default,
a one-line doc, and the constraints (minimum, maximum, choices). `load()` checks types strictly
(a bool is not an int, an int is accepted where a float is), rejects unknown keys, reports
missing required keys, and never does I/O. It raises ConfigError with one Problem per mistake.

Shared by the agent's and the hub's configs: each half's own `configschema` module wraps `load`
so that the error it raises is that half's ConfigError (a subclass of the one here).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import types
import typing
from typing import Any, Callable

REQUIRED = dataclasses.MISSING


@dataclasses.dataclass(frozen=True)
class Problem:
    """One mistake in a config: where (a key path such as devices[1].interval) and what."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ConfigError(Exception):
    """A config is invalid; carries one Problem per mistake (each half subclasses it)."""

    def __init__(self, problems: "list[Problem] | Problem | str", source: str | None = None):
        if isinstance(problems, str):
            problems = [Problem("", problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems = list(problems)
        self.source = source
        super().__init__("; ".join(str(p) for p in self.problems))


def setting(default: Any = REQUIRED, *, doc: str = "", min: float | None = None,
            max: float | None = None, gt: float | None = None,
            choices: tuple[Any, ...] | None = None, check: Callable[[Any], str | None] | None = None,
            example: Any = None) -> Any:
    """Declare one config key: its default (omit for a required key), doc and constraints."""
    meta = {"doc": doc, "min": min, "max": max, "gt": gt, "choices": choices, "check": check,
            "example": example}
    if isinstance(default, (list, dict, set)):
        raise TypeError("use a tuple or a default_factory-free immutable default")
    return dataclasses.field(default=default, metadata=meta)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if tp is bool:
        return "true or false"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if tp is str:
        return "a string"
    if origin is tuple:
        return "an array"
    if dataclasses.is_dataclass(tp):
        return "a table"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp) if a is not type(None))
    return getattr(tp, "__name__", str(tp))


def _got(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return type(value).__name__


_BARE_KEY = re.compile(r"[A-Za-z0-9_\-]+\Z")


def join(path: str, key: str | int) -> str:
    """Join a key path: join('devices[1]', 'interval') == 'devices[1].interval'.

    A key that is not a bare TOML key (empty, or with spaces or dots) is quoted as TOML quotes
    it, so every path names its key unambiguously.
    """
    if isinstance(key, int):
        return f"{path}[{key}]"
    if not isinstance(key, str) or not _BARE_KEY.match(key):
        key = json.dumps(str(key), ensure_ascii=False)
    return f"{path}.{key}" if path else key


class _Invalid(Exception):
    pass


def _convert(tp: Any, value: Any, path: str, problems: list[Problem]) -> Any:
    """Convert one value to a type, appending problems; raise _Invalid if it cannot be used."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _convert(inner[0], value, path, problems)
        for a in inner:
            try:
                return _convert(a, value, path, [])
            except _Invalid:
                continue
        problems.append(Problem(path, f"expected {_type_name(tp)}, got {_got(value)}"))
        raise _Invalid
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, list):
            problems.append(Problem(path, f"expected an array, got {_got(value)}"))
            raise _Invalid
        item_tp = args[0]
        out, bad = [], False
        for i, item in enumerate(value):
            try:
                out.append(_convert(item_tp, item, join(path, i), problems))
            except _Invalid:
                bad = True
        if bad:
            raise _Invalid
        return tuple(out)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            problems.append(Problem(path, f"expected a table, got {_got(value)}"))
            raise _Invalid
        return load(tp, value, path, problems)
    if tp is bool:
        ok = isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok:
            try:
                value = float(value)
            except OverflowError:  # An integer too large for a float.
                value = math.inf
            if not math.isfinite(value):
                problems.append(Problem(path, "must be a finite number"))
                raise _Invalid
    elif tp is str:
        ok = isinstance(value, str)
    elif tp is Any:
        ok = True
    else:
        ok = isinstance(value, tp)
    if not ok:
        problems.append(Problem(path, f"expected {_type_name(tp)}, got {_got(value)}"))
        raise _Invalid
    return value


def _constrain(meta: Any, value: Any, path: str, problems: list[Problem]) -> None:
    if value is None:
        return
    if meta.get("choices") is not None and value not in meta["choices"]:
        allowed = ", ".join(str(c) for c in meta["choices"])
        problems.append(Problem(path, f"must be one of {allowed}, got {value!r}"))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if meta.get("gt") is not None and not value > meta["gt"]:
            problems.append(Problem(path, f"must be > {meta['gt']}"))
        if meta.get("min") is not None and value < meta["min"]:
            problems.append(Problem(path, f"must be >= {meta['min']}"))
        if meta.get("max") is not None and value > meta["max"]:
            problems.append(Problem(path, f"must be <= {meta['max']}"))
    if meta.get("check") is not None:
        why = meta["check"](value)
        if why:
            problems.append(Problem(path, why))


def load(cls: type, data: dict[str, Any], path: str = "",
         problems: list[Problem] | None = None, *, skip: tuple[str, ...] = (),
         error: type[ConfigError] = ConfigError) -> Any:
    """Build a `cls` instance from a dict. With `problems`, append to it; otherwise raise
    `error` (a ConfigError class) with every problem.

    Keys in `skip` are left for the caller (used where a sub-table's type depends on a sibling
    key, as a device's collector table depends on its kind).
    """
    own = problems is None
    problems = [] if own else problems
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs: dict[str, Any] = {}
    start = len(problems)
    for key in data:
        if key not in fields and key not in skip:
            problems.append(Problem(join(path, key), "unknown key"))
    for name, f in fields.items():
        if name in skip:
            continue
        key_path = join(path, name)
        if name not in data:
            if f.default is REQUIRED and f.default_factory is REQUIRED:  # type: ignore[misc]
                problems.append(Problem(key_path, "required"))
            continue
        try:
            value = _convert(hints[name], data[name], key_path, problems)
        except _Invalid:
            continue
        _constrain(f.metadata, value, key_path, problems)
        kwargs[name] = value
    if len(problems) == start:
        built = cls(**kwargs)
        # A class may check keys against each other (a host required only for TCP) with
        # cross_check() -> [(key, message)]; it runs only once every key is valid by itself.
        cross = getattr(built, "cross_check", None)
        problems.extend(Problem(join(path, k), m) for k, m in (cross() if cross else ()))
    if own and problems:
        raise error(problems)
    if len(problems) > start:
        # Build nothing from a table with problems; the caller reports them all.
        return None
    return built


def describe(cls: type, path: str = "") -> list[tuple[str, dataclasses.Field]]:
    """List every key of a config class, depth first, as (key path, field) pairs."""
    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = join(path, f.name)
        tp = hints[f.name]
        out.append((key, f))
        if dataclasses.is_dataclass(tp):
            out.extend(describe(tp, key))
    return out
