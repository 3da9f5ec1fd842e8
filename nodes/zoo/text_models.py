"""Prompt language models built in code: `tiny:prompt_lm` for CPU, `random:qwen2_0_5b` for GPU timing.

Both are transformers Qwen2 causal LMs (the family of the recipe-style instruct presets) with
the offline ChatML tokenizer of mora.nodes.zoo.tokenizers, saved as one folder that
`AutoModelForCausalLM` and `AutoTokenizer` load. The random one has Qwen2.5-0.5B's shapes,
151,936-entry vocabulary included (its embedding, tied to the output layer, is over a quarter
of the weights); ids the byte tokenizer cannot spell decode to nothing.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

SPECIAL_IDS = {"pad_token_id": 0, "bos_token_id": None, "eos_token_id": 2}
"""<|endoftext|> pads, <|im_end|> ends a turn; ChatML has no start token."""


def _save(dest: Path, config: Any, dtype: Any = None) -> None:
    import torch
    from transformers import Qwen2ForCausalLM

    from mora.nodes.zoo.tokenizers import chat

    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config)
    if dtype is not None:
        model = model.to(dtype)
    model.generation_config.pad_token_id = config.pad_token_id
    model.generation_config.eos_token_id = config.eos_token_id
    model.generation_config.bos_token_id = None
    model.save_pretrained(dest)
    chat().save_pretrained(dest)


def tiny_config() -> Any:
    from transformers import Qwen2Config

    return Qwen2Config(vocab_size=259, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32768,
                       tie_word_embeddings=True, **SPECIAL_IDS)


def qwen2_0_5b_config() -> Any:
    """Qwen2.5-0.5B's shapes (494 M parameters)."""
    from transformers import Qwen2Config

    return Qwen2Config(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                       num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768,
                       rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
                       tie_word_embeddings=True, **SPECIAL_IDS)


def tiny_prompt_lm(dest: Path) -> None:
    _save(dest, tiny_config())


def random_qwen2_0_5b(dest: Path) -> None:
    import torch

    _save(dest, qwen2_0_5b_config(), torch.bfloat16)


BUILDERS = {("tiny", "prompt_lm"): tiny_prompt_lm, ("random", "qwen2_0_5b"): random_qwen2_0_5b}
