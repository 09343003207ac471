"""Text cleaning before tokenization, and the check that nothing empty is left to train on."""

from __future__ import annotations

import re
from typing import Sequence

from gencls_jax.errors import DataError

_BR = re.compile(r"<br\s*/?>", re.IGNORECASE)


def clean_text(text: str, clean_html: bool) -> str:
    """IMDB marks paragraphs with `<br />`; as text a newline says the same in far fewer tokens."""
    return _BR.sub("\n", text) if clean_html else text


def clean_texts(texts: Sequence[str], where: Sequence[str], clean_html: bool) -> list[str]:
    """Cleaned texts; a text that is empty (or only whitespace) after cleaning is an error naming
    its row."""
    out = []
    for t, w in zip(texts, where):
        c = clean_text(t, clean_html)
        if not c.strip():
            raise DataError(
                f"{w}: text is empty" + (" after cleaning" if clean_html and t.strip() else "")
            )
        out.append(c)
    return out
