import json
import subprocess
import sys

import pytest

from resources.tiny_tokenizer import (
    BOS_TOKEN,
    EOS_TOKEN,
    TOKENIZER_MAX_LENGTH,
    build_tiny_tokenizer,
    load_tiny_tokenizer,
    text_encoder_token_ids,
)

from harness.offline import offline  # noqa: F401 - the fixture, used by name

PROMPTS = ["a watercolor painting of a red fox in the snow", "portrait of an old sailor with a pipe"]


@pytest.fixture
def tokenizer(tmp_path, offline):
    return build_tiny_tokenizer(tmp_path)


def test_tokenizer_writes_vocab_and_merges(tmp_path, tokenizer):
    vocab = json.loads((tmp_path / "vocab.json").read_text(encoding="utf-8"))
    merges = (tmp_path / "merges.txt").read_text(encoding="utf-8").splitlines()
    assert merges[0] == "#version: 0.2"
    assert len(vocab) == len(tokenizer) == 2 * 256 + len(merges[1:]) + 2
    assert sorted(vocab.values()) == list(range(len(vocab)))


def test_tokenizer_pads_real_prompts_to_77_with_ids_in_range(tokenizer):
    assert tokenizer.model_max_length == TOKENIZER_MAX_LENGTH == 77
    ids = tokenizer(PROMPTS, padding="max_length", max_length=tokenizer.model_max_length, truncation=True).input_ids
    assert [len(row) for row in ids] == [77, 77]
    assert all(0 <= i < len(tokenizer) for row in ids for i in row)
    assert {row[0] for row in ids} == {tokenizer.bos_token_id}


def test_tokenizer_round_trips_prompts_in_fewer_tokens_than_half_the_letters(tokenizer):
    for prompt in PROMPTS:
        ids = tokenizer(prompt).input_ids
        assert tokenizer.decode(ids, skip_special_tokens=True) == prompt
        assert len(ids) - 2 < len(prompt.replace(" ", "")) / 2


def test_loaded_tokenizer_needs_no_files_and_gives_its_special_ids_to_the_text_encoder(tokenizer):
    loaded = load_tiny_tokenizer()
    assert loaded(PROMPTS).input_ids == tokenizer(PROMPTS).input_ids
    assert text_encoder_token_ids(loaded) == {
        "vocab_size": len(tokenizer),
        "bos_token_id": tokenizer.convert_tokens_to_ids(BOS_TOKEN),
        "eos_token_id": tokenizer.convert_tokens_to_ids(EOS_TOKEN),
        "pad_token_id": tokenizer.convert_tokens_to_ids(EOS_TOKEN),
    }


def test_loading_the_tokenizer_imports_no_torch():
    code = "import sys; from resources.tiny_tokenizer import load_tiny_tokenizer; load_tiny_tokenizer(); " \
        "print('torch' in sys.modules, 'diffusers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
