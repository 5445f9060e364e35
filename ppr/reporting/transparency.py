"""Render a user's transparency page (the dict of :func:`ppr.experiments.transparency.gather`).

Three forms of the same content: :func:`to_markdown`, :func:`to_html` (one self-contained page:
inline CSS and an inline SVG chart of the user's ε after each release; no script, no external
asset, so it opens from a file without a server) and the dict itself as JSON. Every string that
comes from the run is escaped.
"""

from __future__ import annotations

import html
import math
from typing import Any

CHART_W, CHART_H, PAD = 640, 220, 44


def human_bytes(n: float | None) -> str:
    """``1536 -> '1.5 KB'`` (decimal units)."""
    if n is None:
        return "unknown"
    for unit in ("bytes", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000.0
    return f"{n:.1f} GB"


def fmt_eps(x: float | None) -> str:
    return "∞ (no formal guarantee)" if x is None else f"{x:.3g}"


def _label(row: dict[str, Any]) -> str:
    title = row.get("title")
    return f"{title} ({row['item']})" if title else f"item {row['item']}"


def _rounds_text(rounds: list[int]) -> str:
    if not rounds:
        return "none"
    return ", ".join(str(r) for r in rounds)


def settings_lines(s: dict[str, Any]) -> list[str]:
    """The user's settings in plain words."""
    cap = s.get("epsilon_cap")
    out = [
        "Helps train the shared model: " + ("yes" if s["train"] else "no (opted out)"),
        "Lets the server refine recommendations: " + ("yes" if s["refine"] else "no (opted out)"),
        "Personal privacy cap (ε): " + ("none" if cap is None else f"{cap:g}"),
    ]
    if s.get("deleted"):
        out.append(f"Data deleted from this device after round {s['delete_after_round']}")
    elif s.get("delete_after_round"):
        out.append(f"Asked to delete the data after round {s['delete_after_round']}")
    stopped = s.get("stopped")
    if stopped:
        out.append(f"Stopped taking part before {stopped['before']} ({stopped['reason']})")
    return out


def privacy_sentence(p: dict[str, Any]) -> str:
    """One plain sentence on the user's ε, δ and the noise."""
    if not p["private"]:
        return (
            "This run was not differentially private: there is no formal limit on what "
            "the released model reveals about you."
        )
    secret = (
        "The random noise was secret (drawn from the operating system and never stored)."
        if p["noise_secret"]
        else f"The noise was NOT secret ({p['noise']}): an experiment mode."
    )
    return (
        f"Everything released about you is covered by ε = {fmt_eps(p['epsilon'])} "
        f"with δ = {p['delta']:g} ({p['source']}). Smaller ε means more private; "
        f"the run's overall ε is {fmt_eps(p['run_epsilon'])}. {secret}"
    )


def _contrib_text(ex: dict[str, Any]) -> str:
    denom = ex["score"] if ex["score"] else 1.0
    parts = [f"{_label(c)} {100 * c['share'] / denom:.0f}%" for c in ex["contributions"]]
    if ex.get("others"):
        parts.append(f"other items {100 * ex['others'] / denom:.0f}%")
    text = "; ".join(parts)
    if ex.get("prior"):  # the run's private popularity term, outside the shares
        text += f"; plus {ex['prior']:+.2f} for being popular with everyone (a private total)"
    return text


# -- Markdown ------------------------------------------------------------------------------------


def to_markdown(page: dict[str, Any]) -> str:
    """The page as Markdown."""
    d, m, p = page["device"], page["messages"], page["privacy"]
    lines = [f"# Transparency for user {page['user']}", ""]
    lines += ["## Your privacy", "", privacy_sentence(p), ""]
    for pt in p.get("curve", []):
        lines.append(f"- after {pt['release']}: ε = {fmt_eps(pt['epsilon'])}")
    lines += ["", "## What left your device", ""]
    if not m["known"]:
        lines.append("Not recorded for this run (no device log).")
    else:
        lines += ["| message | sent | size | encrypted |", "|---|---|---|---|"]
        for k in m["kinds"]:
            enc = "yes" if k["encrypted"] else "no"
            lines.append(f"| {k['text']} | {k['messages']}× | {human_bytes(k['bytes'])} | {enc} |")
        if not m["kinds"]:
            lines.append("| nothing | 0 | 0 bytes | - |")
        lines += [
            "",
            f"Rounds taken part in (known only to your device): {_rounds_text(m['rounds'])}",
        ]
    lines += ["", "## What your device holds", ""]
    lines.append(f"- model version {d['model_version']} ({d['n_items']} items, {d['dim']} factors)")
    lines.append(f"- stored model and index: {human_bytes(d.get('device_bytes'))}")
    lines.append(f"- your own items: {d['own_items']}")
    lines += ["", "## Your settings", ""] + [f"- {x}" for x in settings_lines(page["settings"])]
    lines += ["", "## Why these recommendations", ""]
    recs = page["recommendations"]
    if not recs["available"]:
        lines.append(f"None: {recs['why']}.")
    for i, r in enumerate(recs["items"], 1):
        lines.append(f"{i}. **{_label(r)}**: because of {_contrib_text(r['explanation'])}")
    return "\n".join(lines) + "\n"


# -- HTML ----------------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f4f6f8;
color:#1d2330}
main{max-width:900px;margin:0 auto;padding:24px}
h1{font-size:1.6em;margin:0 0 4px} .sub{color:#5b6475;margin:0 0 18px}
section{background:#fff;border-radius:10px;padding:16px 20px;margin:0 0 16px;
box-shadow:0 1px 3px rgba(0,0,0,.08)}
h2{font-size:1.15em;margin:0 0 10px}
.big{font-size:2.2em;font-weight:700;color:#1a5fb4} .muted{color:#5b6475;font-size:.92em}
table{border-collapse:collapse;width:100%} td,th{text-align:left;padding:6px 8px;
border-bottom:1px solid #e3e6ea} th{color:#5b6475;font-weight:600}
.yes{color:#26734d;font-weight:600} .no{color:#a51d2d;font-weight:600}
ol li{margin:0 0 8px} svg text{font-size:11px;fill:#5b6475}
"""


def _points(curve: list[dict[str, Any]], cap: float | None) -> tuple[list, float]:
    eps = [c["epsilon"] for c in curve if c["epsilon"] is not None]
    top = max([*eps, cap or 0.0, 1e-9])
    return [(i, c["epsilon"]) for i, c in enumerate(curve) if c["epsilon"] is not None], top


def svg_chart(curve: list[dict[str, Any]], cap: float | None = None) -> str:
    """Inline SVG: the user's ε after each release (and the personal cap as a dashed line)."""
    if not curve:
        return '<p class="muted">No release was charged to this device.</p>'
    pts, top = _points(curve, cap)
    n = max(len(curve) - 1, 1)

    def xy(i: float, e: float) -> tuple[float, float]:
        x = PAD + (CHART_W - 2 * PAD) * i / n
        return x, CHART_H - PAD + (-(CHART_H - 2 * PAD) * e / (1.1 * top))

    coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(i, e) for i, e in pts))
    parts = [
        f'<svg role="img" aria-label="epsilon spent after each release" width="{CHART_W}" '
        f'height="{CHART_H}" viewBox="0 0 {CHART_W} {CHART_H}" xmlns="http://www.w3.org/2000/svg">',
        f'<line x1="{PAD}" y1="{CHART_H - PAD}" x2="{CHART_W - PAD}" y2="{CHART_H - PAD}" '
        'stroke="#9aa3b0"/>',
        f'<line x1="{PAD}" y1="{PAD / 2}" x2="{PAD}" y2="{CHART_H - PAD}" stroke="#9aa3b0"/>',
        f'<polyline fill="none" stroke="#1a5fb4" stroke-width="2.5" points="{coords}"/>',
    ]
    for i, e in pts:
        x, y = xy(i, e)
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="#1a5fb4"/>')
    if cap is not None and math.isfinite(cap):
        _, y = xy(0, cap)
        parts.append(
            f'<line x1="{PAD}" y1="{y:.1f}" x2="{CHART_W - PAD}" y2="{y:.1f}" stroke="#a51d2d" '
            f'stroke-dasharray="6 4"/><text x="{CHART_W - PAD}" y="{y - 4:.1f}" '
            f'text-anchor="end">your cap ε = {cap:g}</text>'
        )
    _, y_top = xy(0, top)
    parts.append(f'<text x="{PAD - 6}" y="{y_top + 4:.1f}" text-anchor="end">{top:.3g}</text>')
    parts.append(f'<text x="{PAD - 6}" y="{CHART_H - PAD + 4}" text-anchor="end">0</text>')
    parts.append(f'<text x="{PAD + 6}" y="{PAD / 2 + 10}">ε spent</text>')
    for i in sorted({0, len(curve) - 1}):
        x, _ = xy(i, 0)
        lbl = html.escape(str(curve[i]["release"]))
        parts.append(
            f'<text x="{x:.1f}" y="{CHART_H - PAD + 18}" text-anchor="middle">{lbl}</text>'
        )
    parts.append(
        f'<text x="{CHART_W / 2}" y="{CHART_H - 6}" text-anchor="middle">release (time →)</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


def _html_messages(m: dict[str, Any]) -> str:
    if not m["known"]:
        return '<p class="muted">Not recorded for this run (no device log).</p>'
    rows = (
        "".join(
            f"<tr><td>{html.escape(k['text'])}</td><td>{k['messages']}</td>"
            f"<td>{human_bytes(k['bytes'])}</td>"
            f'<td class="{"yes" if k["encrypted"] else "no"}">'
            f"{'encrypted' if k['encrypted'] else 'not encrypted'}</td></tr>"
            for k in m["kinds"]
        )
        or '<tr><td colspan="4">Nothing left this device.</td></tr>'
    )
    head = "<tr><th>message</th><th>times sent</th><th>total size</th><th>protection</th></tr>"
    rounds = html.escape(_rounds_text(m["rounds"]))
    return (
        f'<table id="messages">{head}{rows}</table>'
        f'<p>Rounds this device took part in: <b id="rounds">{rounds}</b><br>'
        '<span class="muted">Only your device knows this list: the server records only that '
        "you were eligible, which keeps the protection of random sampling.</span></p>"
    )


def _html_recs(recs: dict[str, Any]) -> str:
    if not recs["available"]:
        return f"<p>No recommendations: {html.escape(recs['why'])}.</p>"
    items = "".join(
        f'<li><b>{html.escape(_label(r))}</b><br><span class="muted">because you have: '
        f"{html.escape(_contrib_text(r['explanation']))}</span></li>"
        for r in recs["items"]
    )
    return (
        f'<ol id="recommendations">{items}</ol><p class="muted">Each percentage is the share of '
        "the item's score that comes from one of your own items (computed on your device; the "
        "shares add up to the score).</p>"
    )


def to_html(page: dict[str, Any]) -> str:
    """One self-contained HTML page (module docstring)."""
    d, m, p, s = page["device"], page["messages"], page["privacy"], page["settings"]
    e = html.escape
    eps = fmt_eps(p["epsilon"])
    holds = (
        f"<li>Model version <b>{e(str(d['model_version']))}</b> ({d['n_items']} items)</li>"
        f"<li>Stored model and search index: <b>{human_bytes(d.get('device_bytes'))}</b></li>"
        f"<li>Your own items (never sent as such): <b>{d['own_items']}</b></li>"
    )
    settings = "".join(f"<li>{e(x)}</li>" for x in settings_lines(s))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Your privacy and recommendations: user {e(page["user"])}</title>
<style>{_CSS}</style></head>
<body><main>
<h1>Your privacy and your recommendations</h1>
<p class="sub">User {e(page["user"])} · run {e(page["run_name"])}</p>
<section id="privacy"><h2>How much of your privacy was spent</h2>
<div class="big">ε = <span id="epsilon">{e(eps)}</span></div>
<p>{e(privacy_sentence(p))}</p>
{svg_chart(p.get("curve", []), s.get("epsilon_cap"))}
</section>
<section><h2>What left your device</h2>{_html_messages(m)}</section>
<section><h2>Why we recommend these</h2>{_html_recs(page["recommendations"])}</section>
<section><h2>What your device holds</h2><ul>{holds}</ul></section>
<section><h2>Your settings</h2><ul id="settings">{settings}</ul></section>
</main></body></html>
"""
