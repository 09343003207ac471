"""Why a text got its label: per-token contributions to the decision margin, and an HTML page.

A generative classifier decides by score(c) = log p(x|c) + b_c (Bayes: b_c = log p(c)), and
log p(x|c) is a sum over the text's scored tokens of log p(token | its context, c). So the margin
between the predicted class p and another class o splits exactly into one term per token,
log p(token | context, p) - log p(token | context, o), plus the prior term b_p - b_o:

    sum(terms) + prior_term == score(p) - score(o)

The per-token values come from the scorer's own rows (`Conditioning.token_log_probs`: EOS, label
prefixes and windows as eval scores them), and the log-likelihoods reported here are their sums,
so the identity holds to float64 rounding. Under the per_token rule (scores log p(x|c) / |x|)
each term is divided by |x| and the prior term is 0; under the calibrated rule b_c is the
fitted offset. A discriminative head has no per-token likelihoods, hence nothing to explain.
"""

from __future__ import annotations

import dataclasses
import html
import json
from pathlib import Path
from typing import IO, TYPE_CHECKING, Sequence

import numpy as np

from gencls_jax import fileio
from gencls_jax.data.sources import DataError
from gencls_jax.data.tokenize import Tokenizer
from gencls_jax.workdir import RunError

if TYPE_CHECKING:
    from gencls_jax.classifier import GenerativeClassifier

EOS_SHOWN = "<|endoftext|>"  # how the appended end-of-text token is shown
# The colour scale saturates at this quantile of |term| over the page's scored tokens, so that
# a few extreme tokens do not wash out the rest (the exact value is in every token's title).
COLOUR_QUANTILE = 0.98
TOP_TOKENS = 8  # tokens listed on each side under a text's totals


@dataclasses.dataclass(frozen=True)
class Explanation:
    """One text's decision, token by token. Token i's string is `tokens[i]` (a character that
    byte-level BPE split over several tokens belongs to the last of them, the others are '');
    the last token is the appended EOS when the run appends one. Tokens past a truncated
    text's budget are not scored (`scored` False, term 0, log-probabilities NaN); only the first
    `explain.tail_tokens` of them are kept, and `cut` counts the others, left off."""

    id: str
    text: str  # the text as scored (after cleaning)
    label_names: tuple[str, ...]
    tokens: list[str]
    token_ids: list[int]
    scored: np.ndarray  # bool [n]
    token_log_probs: np.ndarray  # [n, K] log p(token | context, class)
    terms: np.ndarray  # [n] contribution of each token to the margin (predicted - compared)
    log_likelihoods: np.ndarray  # [K] sums of token_log_probs over the scored tokens
    scores: np.ndarray  # [K] decision scores under `rule`
    predicted: str
    compared: str
    rule: str
    prior_term: float  # b_predicted - b_compared (log prior, offset or 0, by rule)
    margin: float  # scores[predicted] - scores[compared]
    truncated: bool
    eos: bool = False  # the last token is the EOS the run appends (scored like the others)
    note: str = ""  # what the reader should know (a fallback rule, an --against that won)
    cut: int = 0  # unscored tokens left off after the last one kept (explain.tail_tokens)

    @property
    def token_sum(self) -> float:
        return float(self.terms.sum())

    @property
    def n_scored(self) -> int:
        return int(self.scored.sum())

    @property
    def posteriors(self) -> np.ndarray:
        from gencls_jax.classifier import posteriors

        return posteriors(self.scores)

    def to_json(self) -> dict:
        """The numbers as JSON (the explain command's jsonl line)."""
        names = self.label_names
        return {
            "id": self.id,
            "text": self.text,
            "predicted": self.predicted,
            "compared": self.compared,
            "rule": self.rule,
            "log_likelihoods": {n: float(v) for n, v in zip(names, self.log_likelihoods)},
            "scores": {n: float(v) for n, v in zip(names, self.scores)},
            "posteriors": {n: float(v) for n, v in zip(names, self.posteriors)},
            "token_sum": self.token_sum,
            "prior_term": self.prior_term,
            "margin": self.margin,
            "n_tokens": self.n_scored,
            "truncated": self.truncated,
            "note": self.note,
            "tokens_cut": self.cut,
            "tokens": [
                {
                    "token": s,
                    "id": int(t),
                    "term": float(self.terms[i]) if self.scored[i] else None,
                    "log_probs": (
                        {n: float(v) for n, v in zip(names, self.token_log_probs[i])}
                        if self.scored[i]
                        else None
                    ),
                }
                for i, (s, t) in enumerate(zip(self.tokens, self.token_ids))
            ],
        }


def token_strings(tokenizer: Tokenizer, ids: Sequence[int]) -> list[str]:
    """Each token's text, concatenating to the decoded text. Byte-level BPE may split a UTF-8
    character over tokens: decoding goes on until the character is complete, and it is
    attributed to the last of its tokens (the earlier ones get '')."""
    if tokenizer.decode_batch is None:
        raise RunError("this run's tokenizer cannot decode tokens, so they cannot be shown")
    ids = [int(t) for t in ids]
    singles = tokenizer.decode_batch([[t] for t in ids])
    out: list[str] = []
    start = None  # first token of a character not yet complete
    for i, s in enumerate(singles):
        if start is None:
            if "\ufffd" not in s:
                out.append(s)
                continue
            start = i
        piece = tokenizer.decode_batch([ids[start : i + 1]])[0]
        if piece.endswith("\ufffd") and i + 1 < len(ids):
            out.append("")  # incomplete: the character's bytes go on in the next token
            continue
        out.append(piece)
        start = None
    return out


def explain_texts(
    clf: "GenerativeClassifier",
    texts: Sequence[str],
    ids: Sequence[str] | None = None,
    where: Sequence[str] | None = None,
    *,
    against: str | None = None,
    rule: str = "bayes",
) -> list[Explanation]:
    """An `Explanation` per text: the predicted class against the runner-up, or against the
    class `against` (a text predicted as `against` is compared with its runner-up, noted).
    `rule` is resolved as predict does (`clf.resolve_rule`). Of a truncated text's unscored
    tokens only the first `explain.tail_tokens` are kept: a 5 MB text read for 256 tokens
    makes a page of a few hundred tokens, not of a million."""
    names = tuple(clf.label_names)
    if not clf.mode.generative:
        raise RunError(
            f"a {clf.mode.name} run has no per-token likelihoods to explain (its head gives "
            "class posteriors only): explain a per_class or label_prefix run"
        )
    if len(names) < 2:
        raise RunError(f"a run with {len(names)} class has no decision to explain")
    if against is not None and against not in names:
        raise DataError(f"--against={against!r} is not a class of this run; classes: {names}")
    rule, why = clf.resolve_rule(rule)
    ds = clf._dataset(texts, ids, where)
    values, targets = clf.mode.token_log_probs(
        clf.params, ds, clf.tokenizer, clf.config, clf.model_config
    )
    eos = clf.tokenizer.eos_id if clf.config.data.append_eos else None
    out = []
    for i in range(len(ds)):
        text_ids = np.asarray(ds.tokens[i], np.int64)
        full = np.concatenate([text_ids, [eos] if eos is not None else []]).astype(np.int64)
        v, n = values[i], len(values[i])
        if n > len(full) or not np.array_equal(targets[i], full[:n]):
            raise RuntimeError(f"text {ds.ids[i]}: the scored tokens are not the text's tokens")
        ll = v.sum(axis=0)
        scores = clf.decision_scores(ll[None, :], np.array([float(n)]), rule)[0]
        p = int(np.argmax(scores))
        notes = [why] if why else []
        if against is not None and names.index(against) != p:
            o = names.index(against)
        else:
            if against is not None:
                notes.append(f"predicted {against!r} itself: compared with the runner-up")
            o = int(np.argmax(np.where(np.arange(len(names)) == p, -np.inf, scores)))
        scale = 1.0 / max(n, 1) if rule == "per_token" else 1.0  # the rule's weight of log p(x|c)
        bias = clf.decision_scores(np.zeros((1, len(names))), np.ones(1), rule)[0]  # b_c
        keep = min(len(full), n + int(clf.config.explain.tail_tokens))
        shown_eos = eos is not None and keep == len(full)
        lp = np.full((keep, len(names)), np.nan)
        lp[:n] = v
        terms = np.zeros(keep)
        terms[:n] = scale * (v[:, p] - v[:, o])
        strings = token_strings(clf.tokenizer, full[: keep - shown_eos]) + (
            [EOS_SHOWN] if shown_eos else []
        )
        out.append(
            Explanation(
                id=str(ds.ids[i]),
                text=ds.texts[i],
                label_names=names,
                tokens=strings,
                token_ids=full[:keep].tolist(),
                scored=np.arange(keep) < n,
                token_log_probs=lp,
                terms=terms,
                log_likelihoods=ll,
                scores=scores,
                predicted=names[p],
                compared=names[o],
                rule=rule,
                prior_term=float(bias[p] - bias[o]),
                margin=float(scores[p] - scores[o]),
                truncated=n < len(full),
                eos=shown_eos,
                note="; ".join(notes),
                cut=len(full) - keep,
            )
        )
    return out


# --- the HTML page ---------------------------------------------------------------------------

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
    sums = (
        f"<table><tr><td>sum of the {e.n_scored} token terms</td>"
        f"<td class=n>{e.token_sum:+.4f}</td></tr>"
        f"<tr><td>{prior_name}</td><td class=n>{e.prior_term:+.4f}</td></tr>"
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
            f"truncated: only the first {e.n_scored} tokens were read (data.long_text), "
            "the rest is struck through"
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


def output_paths(output: str | Path) -> tuple[Path, Path]:
    """(page, jsonl) for `--output`: `x.jsonl` names the jsonl (the page is x.html), anything
    else the page (the jsonl is beside it, .jsonl); the two never share a name."""
    output = Path(output)
    if output.suffix.lower() == ".jsonl":
        return output.with_suffix(".html"), output
    return output, output.with_suffix(".jsonl")


def write_jsonl(explanations: Sequence[Explanation], f: IO[str]) -> None:
    for e in explanations:
        f.write(json.dumps(e.to_json(), ensure_ascii=False) + "\n")


def write_explanations(
    explanations: Sequence[Explanation], output: str | Path, title: str = "", meta: str = ""
) -> tuple[Path, Path]:
    """The HTML page and the same numbers as jsonl, at `output_paths(output)`, each replaced
    whole (an interrupted command leaves the old files); returns (page, jsonl)."""
    page, jsonl = output_paths(output)
    fileio.write_text(page, render_html(explanations, title, meta))
    with fileio.atomic_open(jsonl) as f:
        write_jsonl(explanations, f)
    return page, jsonl


def summary_line(e: Explanation) -> str:
    """One line per text, printed by the explain command."""
    return (
        f"{e.id}: {e.predicted} over {e.compared}, margin {e.margin:+.3f} = tokens "
        f"{e.token_sum:+.3f} + prior {e.prior_term:+.3f} ({e.rule}, {e.n_scored} tokens"
        f"{', truncated' if e.truncated else ''})"
    )
