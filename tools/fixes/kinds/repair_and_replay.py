"""repair_and_replay: resend the events Meta rejected over one parameter, with only that parameter
repaired or dropped (``tools/fixes/repair.py``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import model_validator

from tools.fixes.kinds.base import LedgerEventKind
from tools.fixes.repair import repair_parameter
from tools.fixes.types import PARAMETER_SUBCODES, FixParams


class RepairParams(FixParams):
    """``parameter``: the user_data field Meta rejected (fbc by default); ``subcode``: Meta's subcode
    for it (default from the parameter)."""

    @model_validator(mode="after")
    def _default_parameter(self) -> RepairParams:
        if not self.parameter:
            self.parameter = "fbc"
        return self

    def expected_subcode(self) -> int | None:
        return self.subcode if self.subcode is not None else PARAMETER_SUBCODES.get(self.parameter or "")


class RepairAndReplay(LedgerEventKind):
    name = "repair_and_replay"
    summary = "repair_and_replay (repair a malformed parameter, then resend)"
    params_model = RepairParams
    out_of_scope = LedgerEventKind.out_of_scope | {"not_rejected_for_parameter"}
    changes_events = True

    def row_skip(self, row: Mapping[str, Any], params: FixParams) -> str | None:
        subcode = params.expected_subcode() if isinstance(params, RepairParams) else None
        if row["last_error_code"] != 100 or row["last_error_subcode"] != subcode:
            return "not_rejected_for_parameter"
        return None

    def transform(self, params: FixParams, payload: Mapping[str, Any], *, country: str
                  ) -> tuple[dict[str, Any], dict[str, str]]:
        parameter = params.parameter or "fbc"
        event, action = repair_parameter(payload, parameter)
        return event, ({} if action == "kept" else {parameter: action})


KIND = RepairAndReplay()
