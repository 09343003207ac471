"""The real GPT-2 tokenizer from ../shared loads offline and encodes as GPT-2 does."""

import pytest
from conftest import TOKENIZER_DIR


def test_real_gpt2_tokenizer():
    if not TOKENIZER_DIR.exists():
        pytest.skip(f"{TOKENIZER_DIR} not present")
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(str(TOKENIZER_DIR))
    assert tok("Hello world")["input_ids"] == [15496, 995]
    assert tok.convert_tokens_to_ids("<|endoftext|>") == 50256
    assert len(tok) == 50257
