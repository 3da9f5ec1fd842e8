"""Tokenizers built offline: byte-level BPE vocabularies (every text maps to byte symbols).

No hub is reachable, so the tiny and random-weight models get tokenizers made here: the 256
byte symbols plus a model family's special tokens, wrapped in a transformers fast tokenizer
that `save_pretrained`/`from_pretrained` round-trip like any other.
"""
from __future__ import annotations

from typing import Any

CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
"""A ChatML template, the format of Qwen's instruct models."""


def byte_level(specials: list[str], max_length: int, **roles: str) -> Any:
    """A fast tokenizer over byte symbols with the given special tokens first in the vocabulary."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {tok: i for i, tok in enumerate(specials + alphabet)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=roles.get("unk_token")))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=max_length, **roles)


def clip_style(max_length: int = 77) -> Any:
    """A CLIP-shaped tokenizer (start, end and pad tokens; 77 positions) for Stable Diffusion text encoders."""
    return byte_level(["<|startoftext|>", "<|endoftext|>", "<|pad|>"], max_length, bos_token="<|startoftext|>",
                      eos_token="<|endoftext|>", pad_token="<|endoftext|>", unk_token="<|endoftext|>")


def chat(max_length: int = 2048) -> Any:
    """A ChatML tokenizer with a chat template, for the prompt language model."""
    tok = byte_level(["<|endoftext|>", "<|im_start|>", "<|im_end|>"], max_length, eos_token="<|im_end|>",
                     pad_token="<|endoftext|>", unk_token="<|endoftext|>")
    tok.chat_template = CHAT_TEMPLATE
    return tok
