"""The small model's tokenizer: byte-level BPE whose merges are learnt from the navigation prompts."""
import pytest

from policy.streamvln.config import PromptConfig
from policy.streamvln.prompt import PromptBuilder, prompt_texts
from policy.streamvln.tiny import ACTION_TOKENS, build_corpus_tokenizer, build_tiny_tokenizer
from policy.streamvln.train import TurnSequences, VLNTrainConfig
from sim.nav import make_episode


@pytest.fixture(scope="module")
def instructions():
    return [make_episode(s).instruction for s in range(40)]


@pytest.fixture(scope="module")
def corpus_tok(instructions):
    return build_corpus_tokenizer(prompt_texts(PromptConfig(), instructions), vocab_size=640)


@pytest.mark.slow
def test_prompts_shrink_and_words_become_tokens(corpus_tok, instructions):
    held_out = make_episode(100003).instruction
    bytes_prefix = len(TurnSequences(build_tiny_tokenizer()).prefix(held_out))
    bpe_prefix = len(TurnSequences(corpus_tok).prefix(held_out))
    assert bpe_prefix * 3 < bytes_prefix, (bpe_prefix, bytes_prefix)
    # colour and object words of the templates are whole tokens, so the decoder reads "blue" not b-l-u-e
    for word in (" blue", " lamp", " door", " left"):
        assert any(word in i for i in instructions), word   # in the corpus, so the check below means something
        assert len(corpus_tok(word, add_special_tokens=False)["input_ids"]) == 1, word


def test_every_string_stays_tokenisable_and_the_markers_are_single_tokens(corpus_tok):
    for text in ("Stop by the crimson armchair near the zebra.", "Geh zur Tür, dann links: 3 m → Ziel ✓"):
        ids = corpus_tok(text, add_special_tokens=False)["input_ids"]
        assert corpus_tok.decode(ids) == text
    prompt = PromptBuilder(corpus_tok, PromptConfig())   # refuses a tokenizer that splits a chat marker
    assert prompt.im_end_id != prompt.im_start_id
    for sym in ACTION_TOKENS:
        assert len(corpus_tok(sym, add_special_tokens=False)["input_ids"]) == 1, sym
    seqs = TurnSequences(corpus_tok)
    assert corpus_tok.decode(seqs.answer([1, 1, 2, 0])) == "\u2191\u2191\u2190STOP<|im_end|>"


def test_vocab_size_is_checked():
    with pytest.raises(ValueError, match="vocab_size"):
        VLNTrainConfig(vocab_size=100)
    assert VLNTrainConfig(vocab_size=0).vocab_size == 0   # bytes only
    with pytest.raises(ValueError, match="vocab_size"):
        build_corpus_tokenizer(["a b c"], vocab_size=200)
