"""Number fields that refuse a boolean.

Pydantic's lax mode reads ``true`` as 1 and ``false`` as 0 (and 1.0), so a spec's
``repetitions = true`` would be one repetition and ``stag_payoff = true`` a payoff of 1.
``Int`` and ``Float`` refuse a boolean and take every other input the plain ``int`` and
``float`` take (``p = 1`` is still the float 1.0). The records a spec is made of use them,
and so do the transcripts' headers that hold those records.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator
from pydantic_core import PydanticCustomError


def not_bool(value: Any) -> Any:
    """``value`` as it is, unless it is a boolean: then a validation error."""
    if isinstance(value, bool):
        raise PydanticCustomError(
            "number_not_bool",
            "Input should be a number, not the boolean {value}",
            {"value": str(value).lower()},
        )
    return value


Int = Annotated[int, BeforeValidator(not_bool)]
Float = Annotated[float, BeforeValidator(not_bool)]
