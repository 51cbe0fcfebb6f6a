"""JSON for people and programs: floats rounded to what was measured (`--json` outputs, the
server's answers), so 0.07230000000000003 prints as 0.0723."""

from __future__ import annotations

import json
import math
from typing import Any


def rounded(obj: Any, digits: int = 6) -> Any:
    """`obj` with every float rounded to `digits` significant digits (0.07230000000000003 ->
    0.0723): JSON output shows what was measured, not float noise."""
    if isinstance(obj, float):
        return float(f"{obj:.{digits}g}") if math.isfinite(obj) else obj
    if isinstance(obj, dict):
        return {k: rounded(v, digits) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [rounded(v, digits) for v in obj]
    return obj


def json_line(obj: Any) -> str:
    """One JSON object on one line, floats rounded (see `rounded`)."""
    return json.dumps(rounded(obj))
