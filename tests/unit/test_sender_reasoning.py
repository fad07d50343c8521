"""What people read about a sender change: which incidents it is attached to, the narrative's
sentence, the Slack section (escaped), the chat tool and the offline chat's answer."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta

from agent.reasoning.chat_offline import intent_of, offline_answer
from agent.reasoning.context import ChatContext
from agent.reasoning.offline import narrate
from agent.reasoning.toolbox import build_toolbox
from agent.slack.blocks import IncidentMessage, incident_blocks
from tests.unit.test_reasoning_toolbox import scenario
from tools.diagnosis.changes import attach_changes
from tools.diagnosis.types import Incident
from tools.senders.types import SenderChange
from tools.timeutil import parse_iso

ONSET = parse_iso("2026-11-12T14:00:00Z")


def incident(**overrides: object) -> Incident:
    fields: dict = {"id": "i_1", "pixel_id": "1", "root_cause": "server_events_down", "confidence": 0.9,
                    "severity": "critical", "event_names": ["Purchase"], "summary": "Purchase stopped",
                    "fingerprint": "fp", "started_at": ONSET}
    return Incident(**{**fields, **overrides})


def change(at: str, kind: str = "version", event_name: str = "", before: str = "woo-capi 3.2.1",
           after: str = "woo-capi 3.3.0") -> SenderChange:
    return SenderChange(at=parse_iso(at), kind=kind, sender="plugin:woo-capi", before=before, after=after,
                        event_name=event_name)


def test_only_changes_shortly_before_the_onset_and_bearing_on_its_events_are_attached() -> None:
    changes = [change("2026-11-12T07:59:00Z"),  # over 6 h before
               change("2026-11-12T09:30:00Z", "match_keys", "Lead", "em", ""),  # another event
               change("2026-11-12T11:02:00Z", "match_keys", "Purchase", "em, fbp", "fbp"),
               change("2026-11-12T14:02:00Z"),  # in the onset's hour
               change("2026-11-12T15:00:00Z")]  # after it
    [named] = attach_changes([incident()], changes)
    assert [(c["at"], c["kind"]) for c in named.changes] == [("2026-11-12T11:02:00Z", "match_keys"),
                                                            ("2026-11-12T14:02:00Z", "version")]
    [undated] = attach_changes([incident(started_at=None)], changes)
    assert undated.changes == []


def test_the_narrative_says_how_long_after_which_change_it_began() -> None:
    [named] = attach_changes([incident()], [change("2026-11-12T11:02:00Z", "match_keys", "Purchase",
                                                   "em, fbp", "fbp")])
    text = narrate(named, [])
    assert ("It began 2 h 58 min after the match keys of Purchase changed from em, fbp to fbp "
            "(2026-11-12 11:02 UTC): check that change first.") in text
    [same_hour] = attach_changes([incident()], [change("2026-11-12T14:02:00Z")])
    assert "It began within the hour after the sender changed from woo-capi 3.2.1 to 3.3.0" in narrate(same_hour, [])
    assert "changed" not in narrate(incident(), [])


def test_the_slack_section_names_the_change_and_escapes_what_the_sender_wrote() -> None:
    sneaky = change("2026-11-12T14:02:00Z", before="woo-capi 3.2.1", after="<!channel> 3.3.0").as_json()
    message = IncidentMessage(pixel_id="1", root_cause="server_events_down", title="Server events stopped",
                              severity="critical", status="new", summary="Purchase stopped", changes=[sneaky])
    text = json.dumps(incident_blocks(message))
    assert "*Changed just before*" in text and "2026-11-12 14:02 UTC: the sender changed from woo-capi 3.2.1" in text
    assert "<!channel>" not in text and "&lt;!channel&gt;" in text
    quiet = json.dumps(incident_blocks(replace(message, changes=[])))
    assert "Changed just before" not in quiet


def test_the_chat_tool_and_the_offline_chat_answer_what_changed() -> None:
    base = scenario()
    end = base.inputs.window_end
    changes = (SenderChange(at=end - timedelta(hours=20), kind="version", sender="plugin:woo-capi",
                            before="woo-capi 3.2.1", after="woo-capi 3.3.0"),
               SenderChange(at=end - timedelta(days=5), kind="match_keys", sender="plugin:woo-capi",
                            before="em, fbp", after="fbp", event_name="Purchase"))
    inputs = replace(base.inputs, sender_changes=changes)
    box = build_toolbox(inputs, base.findings, base.incidents)
    answer = json.loads(box.execute("sender_changes", {"hours": 24}))
    assert [c["what"] for c in answer["changes"]] == ["the sender changed from woo-capi 3.2.1 to 3.3.0"]
    assert "error" in json.loads(box.execute("sender_changes", {"hours": 0}))

    assert intent_of("What changed yesterday?") == "changes"
    assert intent_of("Why did Purchase break?") == "why"
    context = ChatContext(pixel_id="1", inputs=inputs, findings=base.findings, incidents=base.incidents)
    yesterday = offline_answer("what changed yesterday?", context)
    assert "the sender changed from woo-capi 3.2.1 to 3.3.0" in yesterday and "match keys" not in yesterday
    week = offline_answer("any plugin update this week?", context)
    assert "the match keys of Purchase changed from em, fbp to fbp" in week
    nothing = offline_answer("what changed yesterday?", ChatContext(pixel_id="1", inputs=base.inputs))
    assert "no change of sender" in nothing
