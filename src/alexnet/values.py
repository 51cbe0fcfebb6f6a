"""What a value may be (integer and float ranges, choice sets, patterns such as the device
grammar), declared once: the check of the models, training configs, device resolver and the
command line's argument types. No torch (the CLI reads it at start-up)."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


class Kind:
    """A set of allowed values: `valid` says which in words, `allows` tests one."""

    kind = "value"  # "int" | "float" | "choice" | "text" | "device" ...: what the CLI tests feed
    valid: str

    def allows(self, value: Any) -> bool:
        raise NotImplementedError

    def problem(self, value: Any) -> str | None:
        """None when `value` is allowed, else "<value> is not <valid>"."""
        return None if self.allows(value) else f"{value!r} is not {self.valid}"

    def from_text(self, text: str) -> Any:
        """The value `text` spells, unchecked (ValueError when it spells none)."""
        return text

    def parse(self, text: str) -> Any:
        """The value `text` spells; ValueError (a one-line reason) when it is not allowed."""
        try:
            value = self.from_text(text)
        except ValueError:
            raise ValueError(f"{text!r} is not {self.valid}") from None
        reason = self.problem(value)
        if reason:
            raise ValueError(reason)
        return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class IntRange(Kind):
    """An integer in [lo, hi] (either bound may be None: open)."""

    lo: int | None = None
    hi: int | None = None
    kind = "int"

    @property
    def valid(self) -> str:
        if self.lo is not None and self.hi is not None:
            return f"an integer from {self.lo} to {self.hi}"
        if self.lo is not None:
            return f"an integer >= {self.lo}"
        return f"an integer <= {self.hi}" if self.hi is not None else "an integer"

    def allows(self, value: Any) -> bool:
        ok = _is_int(value)
        return (
            ok and (self.lo is None or value >= self.lo) and (self.hi is None or value <= self.hi)
        )

    from_text = staticmethod(int)


@dataclass(frozen=True)
class FloatRange(Kind):
    """A finite number between lo and hi, each end closed unless `lo_open` / `hi_open`."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    kind = "float"

    @property
    def valid(self) -> str:
        lo, hi = self.lo, self.hi
        if lo is None and hi is None:
            return "a finite number"
        if hi is None:
            return f"a finite number {'>' if self.lo_open else '>='} {lo:g}"
        if lo is None:
            return f"a finite number {'<' if self.hi_open else '<='} {hi:g}"
        left, right = "(" if self.lo_open else "[", ")" if self.hi_open else "]"
        return f"a number in {left}{lo:g}, {hi:g}{right}"

    def allows(self, value: Any) -> bool:
        ok = (_is_int(value) or isinstance(value, float)) and math.isfinite(value)
        if ok and self.lo is not None:
            ok = value > self.lo if self.lo_open else value >= self.lo
        if ok and self.hi is not None:
            ok = value < self.hi if self.hi_open else value <= self.hi
        return ok

    from_text = staticmethod(float)


@dataclass(frozen=True)
class Choice(Kind):
    """One of a fixed set of values (strings, integers, True/False, None)."""

    options: Sequence[Any]
    kind = "choice"

    @property
    def valid(self) -> str:
        return "one of " + ", ".join(str(o) for o in self.options)

    def allows(self, value: Any) -> bool:
        return any(type(value) is type(o) and value == o for o in self.options)  # True is not 1


@dataclass(frozen=True)
class Pattern(Kind):
    """A text that matches a regular expression whole (e.g. a device name)."""

    regex: str
    valid: str  # the allowed texts in words
    kind: str = "text"  # type: ignore[misc]

    def allows(self, value: Any) -> bool:
        return isinstance(value, str) and re.fullmatch(self.regex, value) is not None


POSITIVE_INT = IntRange(1)
NONNEGATIVE_INT = IntRange(0)
POSITIVE = FloatRange(0.0, lo_open=True)
NONNEGATIVE = FloatRange(0.0)
UNIT_INTERVAL_OPEN_TOP = FloatRange(0.0, 1.0, hi_open=True)  # [0, 1): dropout, smoothing, momentum
FACTOR = FloatRange(0.0, 1.0, lo_open=True, hi_open=True)  # (0, 1): a learning-rate divisor
SWITCH = Choice((True, False))  # a feature switched on or off

# The device grammar: what `--device` may name (and each of `--two-devices`' pair).
_ONE_DEVICE = r"cpu|mps|cuda(?::\d+)?"
DEVICE = Pattern(f"auto|{_ONE_DEVICE}", "auto, cpu, cuda, cuda:N or mps", "device")
DEVICE_PAIR = Pattern(
    f"(?:{_ONE_DEVICE}),(?:{_ONE_DEVICE})", "DEV0,DEV1 (each cpu, cuda, cuda:N or mps)", "devices"
)
