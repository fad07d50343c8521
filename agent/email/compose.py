"""Incident and summary emails: a plain-text part and an HTML alternative, the chart inline.

Both parts say the same thing. The chart is a ``multipart/related`` image the HTML shows through its
``Content-ID``, so it displays without loading anything remote. Everything that can come from
configuration or event data is HTML-escaped. An email links to the incident's Slack thread when there
is one; it never carries a way to approve: approval stays in Slack or the CLI.
"""

from __future__ import annotations

from collections.abc import Mapping
from email.message import EmailMessage
from email.utils import make_msgid
from html import escape
from typing import Any

from agent.summary.model import MARK_LABEL, Summary, counts_line
from agent.summary.text import render_text, split_folded, tally, title, window_label

STATUS_LABEL = {"new": "New incident", "escalated": "Escalated", "resolved": "Resolved"}
APPROVAL_NOTE = ("Approve or reject proposed fixes in Slack (the incident's message; /capi fixes lists "
                 "them), or run a replay from a terminal with capi-agent replay: this email cannot approve "
                 "anything.")
MARK_COLOUR = {"critical": "#c0392b", "warning": "#d68910", "audit_failed": "#7f8c8d",
               "not_judged": "#7f8c8d", "healthy": "#1e8449"}


def _message(*, to: str, subject: str, text: str, html: str, chart_png: bytes | None = None,
             chart_cid: str | None = None) -> EmailMessage:
    message = EmailMessage()
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = make_msgid(domain="capi-agent.local")
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    if chart_png is not None and chart_cid is not None:
        html_part = list(message.iter_parts())[1]  # [text, html] after add_alternative
        html_part.add_related(chart_png, maintype="image", subtype="png", cid=f"<{chart_cid}>",
                              filename="parity.png", disposition="inline")
    return message


def _page(body: str) -> str:
    return ("<!doctype html><html><body style=\"font-family:sans-serif;font-size:14px;color:#222\">"
            f"{body}<p style=\"color:#777;font-size:12px\">{escape(APPROVAL_NOTE)}</p></body></html>")


def summary_email(summary: Summary, *, to: str, links: Mapping[str, str] | None = None,
                  late: bool = False, chart_png: bytes | None = None) -> EmailMessage:
    """One summary (hourly or daily) for one recipient, with its pixels' chart when there is one."""
    links = links or {}
    kind = "Hourly summary" if summary.kind == "hourly" else "Daily digest"
    subject = f"[capi-agent] {kind} {window_label(summary)}: {tally(summary)}"
    text = render_text(summary, links=links)
    if late:
        text += "\n\n(late: sent after capi-agent or the mail server was unavailable)"
    text += f"\n\n{APPROVAL_NOTE}\n"
    rows = []
    shown, folded = split_folded(summary)
    for pixel in shown:
        details = [escape(counts_line(pixel))]
        for incident in pixel.incidents:
            label = escape(f"{incident.title} ({incident.severity})")
            details.append("open incident: " + (f"<a href=\"{escape(links[incident.id])}\">{label}</a>"
                                                if incident.id in links else label))
        details += [escape(f"waiting for approval: {f.kind} {f.id} ({f.total_events:,} events)")
                    for f in pixel.fixes]
        if pixel.note:
            details.append(f"<i>{escape(pixel.note)}</i>")
        rows.append(f"<tr><td style=\"color:{MARK_COLOUR[pixel.mark]};font-weight:bold;vertical-align:top;"
                    f"padding:4px 12px 4px 0\">{escape(MARK_LABEL[pixel.mark])}</td><td style=\"padding:4px 0\">"
                    f"<code>{escape(pixel.pixel_id)}</code> {escape(pixel.name)}<br>{'<br>'.join(details)}"
                    "</td></tr>")
    if folded:
        rows.append(f"<tr><td style=\"color:{MARK_COLOUR['healthy']};font-weight:bold\">healthy</td><td>"
                    f"{len(folded)} pixels: {escape(', '.join(p.pixel_id for p in folded))}</td></tr>")
    late_note = "<p><i>Late: sent after capi-agent or the mail server was unavailable.</i></p>" if late else ""
    cid = make_msgid(domain="capi-agent.local")[1:-1] if chart_png is not None else None
    chart = (f"<p><img src=\"cid:{cid}\" alt=\"Hourly browser, server and last week's event counts of these "
             "pixels\" width=\"720\"></p>") if cid else ""
    html = _page(f"<h2>{escape(title(summary))}</h2><p>{escape(window_label(summary))} · "
                 f"{escape(tally(summary))}</p><table>{''.join(rows)}</table>{chart}{late_note}")
    return _message(to=to, subject=subject, text=text, html=html, chart_png=chart_png, chart_cid=cid)


def incident_email(body: Mapping[str, Any], *, to: str, chart_png: bytes | None,
                   thread_link: str | None = None) -> EmailMessage:
    """One new, escalated or resolved incident (the outbox's incident payload ``message``)."""
    status = STATUS_LABEL.get(body["status"], body["status"])
    subject = f"[capi-agent] {status}: {body['title']} (pixel {body['pixel_id']}, {body['severity']})"
    lines = [f"{status}: {body['title']}", f"pixel {body['pixel_id']} · severity {body['severity']} · "
             f"root cause {body['root_cause']}", "", body["summary"]]
    if body.get("narrative"):
        lines += ["", body["narrative"]]
    if body.get("evidence"):
        lines += ["", "Evidence:", *[f"  - {line}" for line in body["evidence"]]]
    proposals = body.get("proposals") or []
    for proposal in proposals:
        lines += ["", f"Proposed fix {proposal['id']} ({proposal['kind']}): {proposal['summary']}",
                  f"  preview: {proposal['total_events']:,} events in {proposal['requests']:,} request(s)"]
    if thread_link:
        lines += ["", f"In Slack: {thread_link}"]
    if proposals or thread_link:
        lines += ["", APPROVAL_NOTE]
    cid = make_msgid(domain="capi-agent.local")[1:-1] if chart_png is not None else None
    html_parts = [f"<h2>{escape(status)}: {escape(body['title'])}</h2>",
                  f"<p>pixel <code>{escape(body['pixel_id'])}</code> · severity {escape(body['severity'])} · "
                  f"root cause <code>{escape(body['root_cause'])}</code></p>",
                  f"<p>{escape(body['summary'])}</p>"]
    if body.get("narrative"):
        html_parts.append(f"<p>{escape(body['narrative'])}</p>")
    if body.get("evidence"):
        html_parts.append("<ul>" + "".join(f"<li>{escape(line)}</li>" for line in body["evidence"]) + "</ul>")
    if cid is not None:
        html_parts.append(f"<p><img src=\"cid:{cid}\" alt=\"Hourly browser, server and last week's event "
                          "counts\" width=\"720\"></p>")
    for proposal in proposals:
        html_parts.append(f"<p><b>Proposed fix</b> <code>{escape(proposal['id'])}</code> "
                          f"({escape(proposal['kind'])}): {escape(proposal['summary'])}<br>preview: "
                          f"{proposal['total_events']:,} events in {proposal['requests']:,} request(s)</p>")
    if thread_link:
        html_parts.append(f"<p><a href=\"{escape(thread_link)}\">Open the incident in Slack</a></p>")
    return _message(to=to, subject=subject, text="\n".join(lines) + "\n", html=_page("".join(html_parts)),
                    chart_png=chart_png, chart_cid=cid)
