"""Prompt selection and generation: a causal language model rewrites a short prompt into a detailed one.

`mode=llm` runs the preset's chat model (transformers, through its chat template) with a seeded
sampler, so the same seed and sampling parameters give the same text. `mode=template` is the
plain-template mode: no language model at all, the prompt is put into `template`. Either way a
given `style` cue (digital-world tasks) is guaranteed to be in the result.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from mora.engine.cache.media import read_text, text_blob
from mora.engine.graph.agent import Agent, Param, Port, RunContext
from mora.engine.ports import PortType
from mora.nodes.common import MODEL_PARAMS, quantization_config

log = logging.getLogger("mora.agents")
MAX_PROMPT = 4000
SYSTEM = ("You write prompts for image and video generation models. Rewrite the user's short idea into one "
          "detailed prompt: subject, setting, lighting, camera, motion. Answer with the prompt only.")


def _with_style(text: str, style: str) -> str:
    return text if not style or style.lower() in text.lower() else f"{text}, {style}"


def _load(ctx: RunContext, params: Mapping[str, Any], prefetch: bool = False) -> Any:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mora.nodes.models import get_pipeline, torch_dtype

    def load(location: str, kwargs: dict[str, Any]) -> Any:
        kwargs = {k: v for k, v in kwargs.items() if k != "variant"}
        tokenizer = AutoTokenizer.from_pretrained(location, **kwargs)
        quantized = quantization_config(ctx.model, pipeline=False)
        placed = {"device_map": ctx.device} if quantized else {}  # bitsandbytes models are placed at load, not moved
        model = AutoModelForCausalLM.from_pretrained(location, dtype=torch_dtype(ctx.model["dtype"]), **quantized,
                                                     **placed, **kwargs)
        return tokenizer, (model if quantized else model.to(ctx.device)).eval()

    return get_pipeline(ctx, "causal_lm", load, prefetch=prefetch)


def preload(ctx: RunContext, params: Mapping[str, Any]) -> None:
    if params["mode"] == "llm":  # the template mode loads no model
        _load(ctx, params, prefetch=True)


def run(ctx: RunContext, inputs: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    import torch

    # 1. check inputs
    prompt = read_text(inputs["prompt"]).strip()
    style = read_text(inputs["style"]).strip() if "style" in inputs else ""
    if not prompt:
        raise ValueError("`prompt` is empty: give the idea to rewrite")
    if len(prompt) > MAX_PROMPT:
        raise ValueError(f"`prompt` has {len(prompt)} characters; at most {MAX_PROMPT} are allowed")
    if "{prompt}" not in params["template"]:
        raise ValueError(f"`template` must contain '{{prompt}}' but is {params['template']!r}")
    if params["mode"] == "llm" and params["attention"] == "xformers":
        raise ValueError("`attention` 'xformers' applies to diffusion pipelines; the prompt model runs with sdpa")
    if params["mode"] == "template":  # the plain-template mode: no model, nothing else to do
        return {"text": text_blob(_with_style(params["template"].replace("{prompt}", prompt), style))}
    # 2. get the pipeline
    tokenizer, model = _load(ctx, params)
    # 3. run
    system = SYSTEM + (f" The result must include the style cue: {style}." if style else "")
    messages = [{"role": "system", "content": system}, {"role": "user", "content": prompt}]
    enc = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                        return_dict=True).to(ctx.device)
    sample = params["temperature"] > 0
    devices = [torch.device(ctx.device)] if ctx.device.startswith("cuda") else []
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        torch.manual_seed(ctx.seed)
        out = model.generate(**enc, max_new_tokens=params["max_new_tokens"], do_sample=sample,
                             temperature=params["temperature"] if sample else None,
                             top_p=params["top_p"] if sample else None, pad_token_id=tokenizer.pad_token_id)
    text = tokenizer.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True).strip()
    if not text:
        log.warning("%s: the language model returned no text; keeping the user's prompt", ctx.node_id)
        text = prompt
    # 4. return artifacts
    return {"text": text_blob(_with_style(text, style))}


AGENT = Agent(
    type="prompt_select",
    version=1,
    description="Rewrite a short prompt into a detailed one with a chat language model (or a plain template).",
    run=run,
    preload=preload,
    inputs=(
        Port("prompt", PortType.TEXT, "the user's short prompt"),
        Port("style", PortType.TEXT, "a style cue the result must contain (digital-world tasks)", required=False),
    ),
    outputs=(Port("text", PortType.TEXT, "the detailed prompt"),),
    params=(
        Param("mode", str, "llm", "llm: the language model; template: no model, fill `template`",
              choices=("llm", "template")),
        Param("template", str, "{prompt}, highly detailed, cinematic lighting", "text for template mode"),
        Param("max_new_tokens", int, 96, "most tokens the model may write", min=1, max=1024),
        Param("temperature", float, 0.7, "sampling temperature (0: greedy)", min=0.0, max=2.0),
        Param("top_p", float, 0.9, "nucleus sampling mass", min=0.01, max=1.0),
        *MODEL_PARAMS,
    ),
    model_role="prompt",
    random=True,
    libraries=("torch", "transformers"),
)
