"""Reading a report and writing its figures, for the report writer's tables."""

from __future__ import annotations

import math
import sys
from typing import Any

from .options import GB


def publish(table: str, report: dict[str, Any], out: str | None) -> None:
    """The markdown on stdout and, when asked, the report as JSON in `out` (written whole or not at all)."""
    print(table, flush=True)
    if out:
        from .. import atomic

        atomic.write_json(out, report)
        print(f"wrote {out}", file=sys.stderr)


def get(report: dict[str, Any], *path: str) -> Any:
    """The value at `path` in nested dicts, None where any step is missing (a section that failed or did not run)."""
    value: Any = report
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:,.{digits}g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def gb(value: int | None) -> str:
    return "—" if not value else f"{value / GB:.2f} GB"
