"""repair_and_replay: remove or repair only the one parameter Meta rejected a batch over.

Promises: a valid value is never altered; every other field of the event is left exactly as stored.
A repair is made only where it cannot change meaning (surrounding whitespace); anything else that is
malformed (e.g. an fbc whose creation time is in seconds: multiplying by 1000 would invent a time)
is dropped instead.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any, Literal

from tools.meta.userdata import is_valid_fbc, is_valid_fbp

RepairAction = Literal["kept", "repaired", "dropped"]
VALIDATORS: dict[str, Callable[[str], bool]] = {"fbc": is_valid_fbc, "fbp": is_valid_fbp}


def _repair_value(value: Any, valid: Callable[[str], bool]) -> tuple[Any, RepairAction]:
    if isinstance(value, str) and valid(value):
        return value, "kept"
    if isinstance(value, str) and valid(value.strip()):
        return value.strip(), "repaired"
    return None, "dropped"


def repair_parameter(payload: Mapping[str, Any], parameter: str) -> tuple[dict[str, Any], RepairAction]:
    """The event with ``user_data[parameter]`` kept (valid), repaired or dropped; a new dict.

    List values are handled item by item (the field is dropped when no item survives); the action
    reported is the strongest applied (dropped > repaired > kept).
    """
    valid = VALIDATORS.get(parameter)
    if valid is None:
        raise ValueError(f"no safe repair is known for {parameter!r}")
    event = copy.deepcopy(dict(payload))
    user_data = event.get("user_data")
    if not isinstance(user_data, dict) or parameter not in user_data:
        return event, "kept"
    value = user_data[parameter]
    if isinstance(value, list):
        results = [_repair_value(item, valid) for item in value]
        kept = [item for item, action in results if action != "dropped"]
        actions = {action for _, action in results}
        action: RepairAction = ("dropped" if "dropped" in actions
                                else "repaired" if "repaired" in actions else "kept")
        if action == "kept":
            return event, "kept"
        new_value: Any = kept or None
    else:
        new_value, action = _repair_value(value, valid)
        if action == "kept":
            return event, "kept"
    if new_value is None:
        del user_data[parameter]
    else:
        user_data[parameter] = new_value
    return event, action
