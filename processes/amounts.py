"""Money and quantities as the processes compare and show them: to the cent (分), written as people
write them (12 rather than 12.0, 3 rather than 2.999)."""
from __future__ import annotations

from typing import Any

CENT = 0.005  # two amounts closer than half a cent are the same amount


def number(value: Any) -> float | None:
    """A JSON number as a float; None for anything else (booleans included)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def money(value: float) -> float | int:
    """Rounded to the cent; an int when whole."""
    value = round(float(value), 2)
    return int(value) if value.is_integer() else value


def shown(value: float) -> str:
    """An amount or quantity as a sentence writes it."""
    return str(money(value))
