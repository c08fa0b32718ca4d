"""Checks of single config values, each raising ``ConfigError`` with one line that names the key,
the value and what is allowed, e.g. ``train.batch_size='abc': expected an integer >= 1``.

A check is ``check(key, value)``; ``allowed`` on it says what it accepts (for lists of them).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING as MISSING_FIELD
from dataclasses import fields
from typing import Any

from elurepro.errors import ConfigError

Check = Callable[[str, Any], None]


def show(value: Any) -> str:
    """A value as the user would write it on the command line (strings quoted)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, default=str).replace('"', "'")
    return repr(value)


def bad(key: str, value: Any, allowed: str) -> ConfigError:
    """The one line for a value that is not allowed."""
    return ConfigError(f"{key}={show(value)}: expected {allowed}")


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:  # an int too large for a float
        return False


def _or_null(allowed: str, null: str | None) -> str:
    return allowed + (f", or null ({null})" if null else "")


def integer(low: int = 0, null: str | None = None) -> Check:
    """An int >= ``low``; ``null`` says what null means where it is allowed."""
    allowed = _or_null(f"an integer >= {low}", null)

    def check(key: str, value: Any) -> None:
        if value is None and null:
            return
        if not is_int(value) or value < low:
            raise bad(key, value, allowed)

    return check


def number(
    low: float = 0.0, low_open: bool = False, high: float | None = None, null: str | None = None
) -> Check:
    """A finite number in ``[low, high)`` (``(low, high)`` with ``low_open``)."""
    if high is not None:
        allowed = f"a number in {'(' if low_open else '['}{low:g}, {high:g})"
    else:
        allowed = f"a number {'>' if low_open else '>='} {low:g}"
    allowed = _or_null(allowed, null)

    def check(key: str, value: Any) -> None:
        if value is None and null:
            return
        ok = _is_number(value) and (value > low if low_open else value >= low)
        if not ok or (high is not None and value >= high):
            raise bad(key, value, allowed)

    return check


POSITIVE = number(0.0, low_open=True)
PROBABILITY = number(0.0, high=1.0)  # dropout rates, momentum: [0, 1)


def boolean(key: str, value: Any) -> None:
    if not isinstance(value, bool):  # not 1 or 'yes', which OmegaConf would take for true
        raise bad(key, value, "true or false")


def choice(*options: str) -> Check:
    def check(key: str, value: Any) -> None:
        if value not in options:
            raise bad(key, value, f"one of {', '.join(options)}")

    return check


def text(null: str | None = None, pattern: str | None = None, what: str = "") -> Check:
    allowed = _or_null(what or "a non-empty string", null)

    def check(key: str, value: Any) -> None:
        if value is None and null:
            return
        if not isinstance(value, str) or not value.strip():
            raise bad(key, value, allowed)
        if pattern is not None and not re.fullmatch(pattern, value):
            raise bad(key, value, allowed)

    return check


def items(
    item: Check,
    what: str,
    min_len: int = 0,
    length: int | None = None,
    null: str | None = None,
    distinct: bool = False,
) -> Check:
    """A list whose every element passes ``item`` (checked as ``key[i]``)."""
    allowed = f"a list of {what}"
    if length is not None:
        allowed = f"a list of {length} {what}"
    elif min_len == 1:
        allowed = f"a non-empty list of {what}"
    elif min_len:
        allowed = f"a list of at least {min_len} {what}"
    allowed = _or_null(allowed, null)

    def check(key: str, value: Any) -> None:
        if value is None and null:
            return
        if not isinstance(value, list):
            raise bad(key, value, allowed)
        if len(value) < min_len or (length is not None and len(value) != length):
            raise bad(key, value, allowed)
        for i, element in enumerate(value):
            item(f"{key}[{i}]", element)
        if distinct and len({json.dumps(v, sort_keys=True) for v in value}) != len(value):
            raise bad(key, value, f"{allowed}, without repeats")

    return check


def anything(key: str, value: Any) -> None:
    """No check of its own: what the element is gets checked elsewhere."""


def device(key: str, value: Any) -> None:
    if not isinstance(value, str) or not re.fullmatch(r"auto|cpu|cuda(:\d+)?", value):
        raise bad(key, value, "auto, cpu, cuda or cuda:<index>")


def worker(key: str, value: Any) -> None:
    if value is None or (is_int(value) and value >= 0):
        return
    if isinstance(value, str) and value.strip():
        return
    raise bad(key, value, "null, an integer >= 0 or a label")


def activation(key: str, value: Any) -> None:
    from elurepro.activations import parse_activation

    if not (isinstance(value, str) or isinstance(value, Mapping)):
        raise bad(key, value, "an activation name or {name: <unit or module:attribute>, ...}")
    try:
        parse_activation(value)
    except ConfigError as err:
        raise ConfigError(f"{key}={show(value)}: {err}") from None


def gains_by_unit(key: str, value: Any) -> None:
    """A mapping of unit names to initialisation gains (U3), or null for none."""
    if value is None:
        return
    if not isinstance(value, Mapping):
        raise bad(key, value, "null or a mapping {unit name: gain > 0}, e.g. {relu: 1.6}")
    for unit, gain in value.items():
        activation(f"{key}.{unit}", unit)
        POSITIVE(f"{key}.{unit}", gain)


def check_section(
    name: str, values: Any, schema: type, extra: Sequence[str] = (), required: bool = True
) -> None:
    """``values`` (a mapping) against the dataclass ``schema``: every key known (or in
    ``extra``), each passing its field's check; a field without a default must be present
    (all of them where ``required``)."""
    known = {f.name: f for f in fields(schema)}
    if not isinstance(values, Mapping):
        raise bad(name, values, f"a section with keys {', '.join(known)}")
    unknown = [k for k in values if k not in known and k not in extra]
    if unknown:
        raise ConfigError(
            f"{name}.{unknown[0]}: not a key of {name} (known: {', '.join([*known, *extra])})"
        )
    for key, f in known.items():
        needed = f.default_factory is MISSING_FIELD and f.default in (MISSING_FIELD, "???")
        optional = not required and not needed
        if key not in values and not optional:
            raise ConfigError(f"{name}.{key} is missing")
    for key, value in values.items():
        if key in known:
            known[key].metadata["check"](f"{name}.{key}", value)


def section(schema: type) -> Check:
    """A check of a mapping against a dataclass whose fields with defaults may be left out."""

    def check(key: str, value: Any) -> None:
        check_section(key, value, schema, required=False)

    return check
