"""replay: resend undelivered ledger events exactly as stored (event_id and event_time kept)."""

from __future__ import annotations

from tools.fixes.kinds.base import LedgerEventKind


class Replay(LedgerEventKind):
    name = "replay"
    summary = "replay (resend undelivered events)"


KIND = Replay()
