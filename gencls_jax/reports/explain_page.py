"""The explain page: every token of a text shaded by its term of the decision margin.

A self-contained HTML page (inline CSS and JS, no network resource): a legend, each text's
totals, per-class log-likelihoods and posteriors, its strongest tokens, and the exact numbers of
any token on hover. The numbers are `scoring.explain.Explanation`'s.
"""

from __future__ import annotations

import html
from typing import Sequence

import numpy as np

from gencls_jax.scoring.explain import Explanation

# The colour scale saturates at this quantile of |term| over the page's scored tokens, so that
# a few extreme tokens do not wash out the rest (the exact value is in every token's title).
COLOUR_QUANTILE = 0.98
TOP_TOKENS = 8  # tokens listed on each side under a text's totals
FAVOUR_PRED = (33, 102, 172)  # blue: the token favours the predicted class
FAVOUR_OTHER = (230, 97, 1)  # orange: it favours the compared class (a colour-blind-safe pair)
MAX_TINT = 0.7  # the strongest shading (a mix with white), so black text stays legible

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1b1b1b;
 max-width:1000px;margin:0 auto;padding:16px 24px;line-height:1.45;background:#fff}
h1{font-size:22px;margin:4px 0 2px}
h2{font-size:17px;margin:0 0 8px}
.meta{color:#555;font-size:13px;margin:0 0 10px}
.bar{position:sticky;top:0;background:#fff;border-bottom:1px solid #ddd;padding:8px 0 8px;
 z-index:1}
.legend{display:flex;align-items:center;gap:10px;font-size:13px;flex-wrap:wrap}
.scale{width:260px;height:14px;border:1px solid #bbb;border-radius:3px}
#info{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12.5px;color:#222;
 min-height:1.5em;margin-top:6px;white-space:pre-wrap}
section{border:1px solid #ddd;border-radius:8px;padding:12px 16px;margin:16px 0}
.pred{color:rgb(33,102,172)}.cmp{color:rgb(190,80,0)}
table{border-collapse:collapse;font-size:13.5px;margin:4px 18px 8px 0;display:inline-table;
 vertical-align:top}
td,th{padding:2px 8px;text-align:left}
td.n{text-align:right;font-family:ui-monospace,Menlo,Consolas,monospace}
tr.total td{border-top:1px solid #999;font-weight:600}
th{font-weight:600;border-bottom:1px solid #ccc}
.top{font-size:13px;margin:4px 0 10px;color:#333}
.top code{background:#f3f3f3;padding:0 3px;border-radius:3px}
.note{font-size:13px;color:#8a4b00;margin:2px 0 8px}
.text{white-space:pre-wrap;overflow-wrap:anywhere;font-size:15.5px;line-height:1.85;
 border-top:1px solid #eee;padding-top:10px}
.t{border-radius:3px;padding:1px 0}
.t:hover{outline:2px solid #111}
.u{color:#9a9a9a;text-decoration:line-through}
.eos{font-size:11px;border:1px solid #888;border-radius:3px;padding:0 3px;margin-left:3px;
 color:#444}
"""

_JS = """
(function(){var info=document.getElementById('info');
document.addEventListener('mouseover',function(e){var t=e.target.closest('[title]');
if(t&&t.classList.contains('t')){info.textContent=t.getAttribute('title');}});})();
"""


def _mix(rgb: tuple[int, int, int], a: float) -> str:
    r, g, b = (round(255 + (c - 255) * a) for c in rgb)
    return f"#{r:02x}{g:02x}{b:02x}"


def colour(term: float, scale: float) -> str:
    """Background of a token: blue towards the predicted class, orange towards the compared one,
    white at 0, saturating at `scale`."""
    v = float(np.clip(term / scale, -1.0, 1.0)) if scale > 0 else 0.0
    return _mix(FAVOUR_PRED if v >= 0 else FAVOUR_OTHER, abs(v) * MAX_TINT)


def colour_scale(explanations: Sequence[Explanation]) -> float:
    """The |term| at which shading saturates: `COLOUR_QUANTILE` of the page's scored tokens."""
    terms = np.concatenate([np.abs(e.terms[e.scored]) for e in explanations] or [np.zeros(0)])
    return float(np.quantile(terms, COLOUR_QUANTILE)) if terms.size else 0.0


def _shown(s: str) -> str:
    """A token's string for a title: whitespace made visible."""
    return s.replace("\n", "\u21b5").replace("\t", "\u21e5") or "\u2205"


def _groups(e: Explanation) -> list[list[int]]:
    """Token indices shown as one span: tokens with no text of their own (the first bytes of a
    character split over tokens) join the token that completes it."""
    groups, cur = [], []
    for i, s in enumerate(e.tokens):
        cur.append(i)
        if s != "":
            groups.append(cur)
            cur = []
    if cur:
        groups.append(cur)
    return groups


def _title(e: Explanation, idx: list[int]) -> str:
    names = e.label_names
    head = "".join(e.tokens[i] for i in idx)
    where = f"token {idx[0] + 1}" if len(idx) == 1 else f"tokens {idx[0] + 1}-{idx[-1] + 1}"
    if not e.scored[idx].any():
        return f"{_shown(head)!s}  ({where}) not scored: past the text's token budget (truncated)"
    term = float(e.terms[idx].sum())
    lps = e.token_log_probs[idx].sum(axis=0)
    detail = ", ".join(f"{n} {v:.4f}" for n, v in zip(names, lps))
    return (
        f"{_shown(head)}  ({where})  term {term:+.4f} towards "
        f"{e.predicted if term >= 0 else e.compared}  |  log p(token | context, class): {detail}"
    )


def _tokens_html(e: Explanation, scale: float) -> str:
    parts = []
    for idx in _groups(e):
        text = "".join(e.tokens[i] for i in idx)
        title = html.escape(_title(e, idx), quote=True)
        is_eos = e.eos and idx[-1] == len(e.tokens) - 1
        if not e.scored[idx].any():
            parts.append(f'<span class="t u" title="{title}">{html.escape(text)}</span>')
            continue
        bg = colour(float(e.terms[idx].sum()), scale)
        cls = "t eos" if is_eos else "t"
        # a token's leading space stays outside its shading, so words, not gaps, are coloured
        word = text.lstrip()
        lead = text[: len(text) - len(word)] if word and not is_eos else ""
        shown = "end of text" if is_eos else html.escape(word or text)
        parts.append(
            f'{html.escape(lead)}<span class="{cls}" style="background:{bg}" title="{title}">'
            f"{shown}</span>"
        )
    return "".join(parts)


def _top(e: Explanation, sign: int) -> str:
    idx = np.flatnonzero(e.scored & (sign * e.terms > 0))
    idx = idx[np.argsort(-sign * e.terms[idx])][:TOP_TOKENS]
    return ", ".join(
        f"<code>{html.escape(_shown(e.tokens[i]))}</code> {e.terms[i]:+.2f}" for i in idx
    )


def _section(k: int, e: Explanation, scale: float) -> str:
    p, o, esc = e.predicted, e.compared, html.escape
    rows = "".join(
        f"<tr><td>{esc(n)}</td><td class=n>{ll:.3f}</td><td class=n>{s:.3f}</td>"
        f"<td class=n>{q:.4f}</td></tr>"
        for n, ll, s, q in zip(e.label_names, e.log_likelihoods, e.scores, e.posteriors)
    )
    prior_name = {
        "bayes": f"prior term: log p({esc(p)}) &minus; log p({esc(o)})",
        "calibrated": f"offset term: offset({esc(p)}) &minus; offset({esc(o)})",
        "per_token": "prior term (none under the per_token rule)",
    }[e.rule]
    expert = (  # the n-gram expert's share of the margin (scoring/ngram.py), not per token
        f"<tr><td>n-gram expert term</td><td class=n>{e.ngram_term:+.4f}</td></tr>"
        if e.ngram_term
        else ""
    )
    sums = (
        f"<table><tr><td>sum of the {e.n_scored} token terms</td>"
        f"<td class=n>{e.token_sum:+.4f}</td></tr>"
        f"<tr><td>{prior_name}</td><td class=n>{e.prior_term:+.4f}</td></tr>{expert}"
        f"<tr class=total><td>margin: score({esc(p)}) &minus; score({esc(o)})</td>"
        f"<td class=n>{e.margin:+.4f}</td></tr></table>"
    )
    per_class = (
        "<table><tr><th>class</th><th>log p(x | class)</th><th>score</th><th>posterior</th>"
        f"</tr>{rows}</table>"
    )
    notes = [e.note] if e.note else []
    if e.truncated:
        notes.append(
            f"truncated: only the first {e.n_scored} tokens were read (eval.long_text, else "
            "data.long_text), the rest is struck through"
            + (
                f"; its last {e.cut} tokens are left off this page (explain.tail_tokens)"
                if e.cut
                else ""
            )
        )
    note = "".join(f'<p class="note">{esc(n)}</p>' for n in notes)
    top = (
        f'<p class="top">towards <b class="pred">{esc(p)}</b>: {_top(e, 1) or "none"}<br>'
        f'towards <b class="cmp">{esc(o)}</b>: {_top(e, -1) or "none"}</p>'
    )
    return (
        f"<section><h2>{k}. {esc(e.id)}: predicted <span class=pred>{esc(p)}</span>, "
        f"compared with <span class=cmp>{esc(o)}</span></h2>{sums}{per_class}{note}{top}"
        f'<div class="text">{_tokens_html(e, scale)}</div></section>'
    )


def render_html(explanations: Sequence[Explanation], title: str = "", meta: str = "") -> str:
    """A self-contained page (inline CSS and JS, no network resource): each text with every
    token shaded by its term, a legend, the totals, and the exact numbers on hover."""
    scale = colour_scale(explanations)
    grad = ", ".join(colour(x * scale, scale) for x in (-1, -0.5, 0, 0.5, 1))
    legend = (
        '<div class="legend"><span>favours the <b class="cmp">compared</b> class</span>'
        f'<span class="scale" style="background:linear-gradient(to right, {grad})"></span>'
        '<span>favours the <b class="pred">predicted</b> class</span>'
        f"<span>(&minus;{scale:.2f} &hellip; 0 &hellip; +{scale:.2f} nats per token; "
        "the colour saturates beyond)</span></div>"
    )
    body = "".join(_section(k + 1, e, scale) for k, e in enumerate(explanations))
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title or 'Why the classifier decided')}</title>"
        f"<style>{_CSS}</style></head><body>"
        f"<h1>{html.escape(title or 'Why the classifier decided')}</h1>"
        f'<p class="meta">{html.escape(meta)}</p>'
        f'<div class="bar">{legend}<div id="info">Hover over a token for its numbers.</div></div>'
        f"{body}<script>{_JS}</script></body></html>"
    )
