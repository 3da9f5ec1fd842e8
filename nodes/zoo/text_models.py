"""Prompt language models built in code: `tiny:prompt_lm` for CPU, `random:qwen2_0_5b` for GPU timing.

Both are transformers Qwen2 causal LMs (the family of the recipe-style instruct presets) with a
ChatML tokenizer made offline, saved as a folder `AutoModelForCausalLM`/`AutoTokenizer` load.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any


def _save(dest: Path, config: Any, dtype: Any = None) -> None:
    import torch
    from transformers import Qwen2ForCausalLM

    from nodes.zoo.tokenizers import chat

    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config)
    if dtype is not None:
        model = model.to(dtype)
    model.generation_config.pad_token_id = config.pad_token_id
    model.generation_config.eos_token_id = config.eos_token_id
    model.save_pretrained(dest)
    chat().save_pretrained(dest)


def tiny_prompt_lm(dest: Path) -> None:
    from transformers import Qwen2Config

    _save(dest, Qwen2Config(vocab_size=259, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                            tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=0))


def random_qwen2_0_5b(dest: Path) -> None:
    import torch
    from transformers import Qwen2Config

    _save(dest, Qwen2Config(vocab_size=259, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                            num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768,
                            tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=0),
          torch.bfloat16)


BUILDERS = {("tiny", "prompt_lm"): tiny_prompt_lm, ("random", "qwen2_0_5b"): random_qwen2_0_5b}
