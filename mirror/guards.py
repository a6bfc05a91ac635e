"""Run-safety settings shared by configuration and the planner.

``MaxDelete`` lives below both :mod:`mirror.config` (a field default) and
:mod:`mirror.sync.plan` (the withdrawal guard) so that configuration never imports the
engine (issue #10: the config <-> sync.plan cycle).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from mirror.errors import UsageError

_MAX_DELETE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(%?)\s*$")


@dataclass(frozen=True, slots=True)
class MaxDelete:
    """``--max-delete N`` (a count) or ``P%`` (of the series held in the listed scope)."""

    value: float
    percent: bool

    @classmethod
    def parse(cls, text: str) -> MaxDelete:
        match = _MAX_DELETE_RE.fullmatch(text)
        if not match:
            raise UsageError(f"--max-delete takes N or P% (got {text!r})")
        value, percent = float(match.group(1)), bool(match.group(2))
        if percent and value > 100:
            raise UsageError(f"--max-delete percentage over 100: {text!r}")
        return cls(value, percent)

    def limit(self, held: int) -> int:
        if self.percent:
            return math.floor(held * self.value / 100)
        return int(self.value)

    def __str__(self) -> str:
        return f"{self.value:g}%" if self.percent else f"{int(self.value)}"


DEFAULT_MAX_DELETE = MaxDelete(50.0, True)

__all__ = ["DEFAULT_MAX_DELETE", "MaxDelete"]
