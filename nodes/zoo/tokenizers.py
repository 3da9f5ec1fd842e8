"""Tokenizers built offline: byte-level vocabularies, so any text tokenizes without a hub.

The tiny and random-weight models need tokenizers, and no hub is reachable, so they are made
here from the 256 byte symbols (GPT-2/CLIP's `bytes_to_unicode`) plus a model family's special
tokens, with no merges: every byte is one token. `clip` is transformers' own `CLIPTokenizer`
(lower-casing, `</w>` word ends, start and end tokens around every prompt, 77 positions);
`chat` is a ChatML tokenizer with a chat template for the prompt language model.
`clip_words` is the same CLIP layout with BPE merges learned (by the `tokenizers` library's
trainer) from a known vocabulary, so each of its words is one token and a sentence of them a
few positions, while any other text still tokenizes byte by byte. All round-trip through
`save_pretrained`/`from_pretrained` like any other.
"""
from __future__ import annotations

import json
from typing import Any

CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
"""A ChatML template, the format of Qwen's instruct models."""

CLIP_VOCAB_SIZE = 514
"""256 bytes, the same 256 ending a word (`</w>`), then <|startoftext|> and <|endoftext|>."""
CLIP_BOS, CLIP_EOS = 512, 513


def byte_symbols() -> list[str]:
    """The 256 printable stand-ins for bytes, in the order of GPT-2/CLIP's `bytes_to_unicode`."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    rest = [b for b in range(256) if b not in printable]
    return [chr(b) for b in printable] + [chr(256 + i) for i in range(len(rest))]


def clip(max_length: int = 77) -> Any:
    """A `CLIPTokenizer` over single bytes, laid out like CLIP's vocabulary before its merges."""
    from transformers import CLIPTokenizer

    symbols = byte_symbols()
    tokens = symbols + [s + "</w>" for s in symbols] + ["<|startoftext|>", "<|endoftext|>"]
    return CLIPTokenizer(vocab={t: i for i, t in enumerate(tokens)}, merges=[], model_max_length=max_length)


def clip_words(words: dict[str, int], max_length: int = 77) -> Any:
    """A `CLIPTokenizer` whose merges make each of `words` (word -> count) one token."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import CLIPTokenizer

    symbols = byte_symbols()
    base = symbols + [s + "</w>" for s in symbols]
    learner = Tokenizer(models.BPE(end_of_word_suffix="</w>"))
    learner.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    trainer = trainers.BpeTrainer(vocab_size=len(base) + 8 * len(words), initial_alphabet=symbols,
                                  end_of_word_suffix="</w>", show_progress=False)
    corpus = [" ".join([w] * count) for w, count in sorted(words.items())]
    learner.train_from_iterator(corpus, trainer)
    learned = json.loads(learner.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in learned["merges"]]
    tokens = base + ["<|startoftext|>", "<|endoftext|>"] + sorted({"".join(m) for m in merges} - set(base))
    return CLIPTokenizer(vocab={t: i for i, t in enumerate(tokens)}, merges=merges, model_max_length=max_length)


def chat(max_length: int = 32768) -> Any:
    """A ChatML tokenizer (byte-level, special tokens first) with a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    vocab = {t: i for i, t in enumerate(specials + byte_symbols())}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<|endoftext|>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=max_length, eos_token="<|im_end|>",
                                      pad_token="<|endoftext|>", unk_token="<|endoftext|>",
                                      additional_special_tokens=specials[1:])
    wrapped.chat_template = CHAT_TEMPLATE
    return wrapped
