"""Text written by an LLM (or echoed from event data) made safe to post in Slack.

Slack turns ``<!channel>``, ``<@U123>``, ``<#C123>`` and ``<http://x|label>`` into mentions and links;
an event name or a model's answer could carry them to page a whole channel or dress up a phishing
link. They are removed here, raw PII is masked, and the text is capped.
"""

from __future__ import annotations

import re

from agent.llm.guard import scrub

# <!channel>, <!here>, <!everyone>, <!subteam^S123|@team>, <!date^...>, <@U123>, <@W123|name>, <#C123|general>
_SPECIAL = re.compile(r"<\s*[!@#][^<>]{0,200}>")
# <http://evil.example|click to approve> -> the label only; <https://x> -> the address as plain text.
_LINK_WITH_LABEL = re.compile(r"<\s*(?:https?|mailto|slack|tel):[^<>|]{0,2000}\|([^<>]{0,500})>",
                              re.IGNORECASE)
_LINK = re.compile(r"<\s*((?:https?|mailto|slack|tel):[^<>|]{0,2000})>", re.IGNORECASE)
# Plain "@channel" / "@here" / "@everyone" notify people when a client posts with link_names.
_BROADCAST = re.compile(r"@(channel|here|everyone)\b", re.IGNORECASE)
_SPACES = re.compile(r"[ \t]+")


def slack_safe(text: str, *, limit: int = 1200) -> str:
    """Returns ``text`` with Slack mentions, broadcasts and link markup removed, raw PII masked,
    angle brackets dropped, and at most ``limit`` characters (cut on a word, marked with "…")."""
    text = _SPECIAL.sub("", text)
    text = _LINK_WITH_LABEL.sub(lambda m: m.group(1), text)
    text = _LINK.sub(lambda m: m.group(1), text)
    text = _BROADCAST.sub(lambda m: m.group(1), text)
    text = text.replace("<", "").replace(">", "")
    text = scrub(text)
    text = "\n".join(_SPACES.sub(" ", line).strip() for line in text.strip().splitlines())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    if " " in cut[limit // 2:]:
        cut = cut[: cut.rfind(" ")]
    return cut.rstrip(" ,;:") + "…"
