"""Speed levers on one GPU (issue #14): compile, attention kernels, FP8, against eager bf16 and raw diffusers.

Stages (each writes its figures into $OUT/gpu_speed-<stages>.json as soon as it ends):

  svd    SVD-XT UNet step, 14 frames 576x1024, CFG batch 2: eager, compiled through Mora (whole module,
         default mode, with the levers of diffusers' compile guide: fused qkv, channels-last, inductor's
         INDUCTOR_FLAGS, less --flags-off, plus --flags-on; compile time = first compiled call), the output's
         relative error against eager bf16
  svd8   the same UNet in FP8 (torchao rowwise dynamic, Mora's `quantization=fp8`) + compiled, against eager bf16
  svd8r  the same FP8 UNet compiled by region (each down, mid and up block its own graph, `--regions`), whose
         compilation fits a device call where the whole FP8 UNet's did not; also FP8 eager, and bf16 compiled by the
         same regions (to separate FP8's part from the regions'), each against eager bf16
  wan    Wan 2.1 1.3B-size transformer (random:wan_i2v_1_3b), 480x832, 81 frames, one CFG step (two
         forwards): eager, regional compile, + SDPA forced to cuDNN, optionally FP8 + regional compile
  wansage  the Wan transformer's attention through xformers 0.0.35 (diffusers' `xformers` backend), eager; its
         self-attention through SageAttention 1.0.6 (the Triton-only release, the one
         on PyPI; diffusers' `sage` backend needs >= 2.1.1, built from CUDA sources, not on PyPI): eager and
         regional compile (the kernel left out of the graph), against eager bf16 and regional compile with SDPA
  fa4    FlashAttention-4 (the flash-attn-4 package's CuTe kernels, Mora's `attention=sdpa_fa4`: PyTorch's flash
         SDPA kernel replaced for the call) on the Wan step (eager; regional compile; with --fp8 also FP8 +
         regional compile, under the attention --fp8-attention names: SDPA, FA4, or cuDNN's FP8 attention, which is
         `quantization=fp8_attention`) and on the SVD UNet step (eager; whole compile), each against eager SDPA
         (bf16) in the same process, with its relative error against it
  agent  the image_to_video agent's own path (`mora.nodes.image_to_video.generate`, inside the agents' `speedup`) on
         random:wan_i2v_1_3b, 81 frames 480x832: its defaults (eager, sdpa) against `speed=fast`'s settings
         (compile auto, attention auto), seconds per denoising step read at the agent's progress callback
  again  the SVD UNet compiled in a *second* process, from the on-disk caches the first one filled
         (run it as a separate invocation after `svd`): time to the first compiled call
  t2v    text_to_video through the engine with `compile=on` (models resident and compiled warm after one
         discarded run) against bench/raw_text_to_video.py's generate() (raw diffusers, eager, loading
         its pipelines each run as a script does), alternating, `--reps` times

The models are the `random` preset's (published architectures, random weights; a step costs the
same whatever the weights), built beforehand under MORA_MODELS_DIR. CUDA-event-free timing:
torch.cuda.synchronize around perf_counter. torch.compile in its default mode (not max-autotune).

    MORA_MODELS_DIR=/tmp/m OUT=/tmp/o python bench/gpu_speed.py --stages svd,t2v   # then again, wan [--fp8], svd8
"""
from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

OUT = Path(os.environ.get("OUT", "/tmp/bench-out"))
WORK = Path("/tmp/mora-speed")
ROOT = Path.cwd()  # the repository root (the script may be run from a copy elsewhere)


def timed(fn: Any) -> tuple[Any, float]:
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = fn()
    torch.cuda.synchronize()
    return out, time.perf_counter() - t0


def step_ms(fn: Any, reps: int) -> float:
    for _ in range(2):
        timed(fn)
    return round(statistics.median(timed(fn)[1] for _ in range(reps)) * 1000, 1)


def rel_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    return round(((out.float() - ref.float()).norm() / ref.float().norm()).item(), 5)


def folder(name: str) -> Path:
    from mora.nodes.models import models_dir
    from mora.nodes.zoo import build

    return build("random", name, models_dir())


def compiled(module: Any, fp8: bool = False) -> tuple[Any, str]:
    """Mora's own compile (and FP8) path on a bare module, as the agents apply them to a pipeline's denoiser."""
    from mora.nodes.speed import compile_denoisers, quantize_fp8

    holder = SimpleNamespace(unet=module) if not hasattr(module, "blocks") else SimpleNamespace(transformer=module)
    if fp8:
        quantize_fp8(holder, {"quantization": "fp8"})
    how = compile_denoisers(SimpleNamespace(node_id="bench"), holder)
    return module, how[0]


def inductor_flags(args: argparse.Namespace) -> dict[str, Any]:
    """Mora's inductor flags, less those named in --flags-off, plus --flags-on set true (ablations); return them."""
    from mora.nodes import speed

    for name in filter(None, args.flags_off.split(",")):
        del speed.INDUCTOR_FLAGS[name]
    speed.INDUCTOR_FLAGS.update(dict.fromkeys(filter(None, args.flags_on.split(",")), True))
    return dict(speed.INDUCTOR_FLAGS)


def svd_unet() -> tuple[Any, dict[str, torch.Tensor]]:
    from diffusers import UNetSpatioTemporalConditionModel

    unet = UNetSpatioTemporalConditionModel.from_pretrained(folder("svd_xt") / "unet", dtype=torch.bfloat16)
    unet = unet.to("cuda").eval()
    g = torch.Generator("cuda").manual_seed(0)
    kw: dict[str, Any] = {"device": "cuda", "dtype": torch.bfloat16, "generator": g}
    inputs = {"sample": torch.randn(2, 14, 8, 72, 128, **kw), "timestep": torch.tensor(500.0, device="cuda"),
              "encoder_hidden_states": torch.randn(2, 1, 1024, **kw),
              "added_time_ids": torch.tensor([[6.0, 127.0, 0.02]] * 2, device="cuda", dtype=torch.bfloat16)}
    return unet, inputs


def stage_svd(args: argparse.Namespace) -> dict[str, Any]:
    flags = inductor_flags(args)
    unet, inputs = svd_unet()
    with torch.no_grad():
        ref = unet(**inputs).sample
        eager = step_ms(lambda: unet(**inputs), args.reps)
        unet, how = compiled(unet)
        first, compile_s = timed(lambda: unet(**inputs).sample)
        fast = step_ms(lambda: unet(**inputs), args.reps)
        result = {"eager_ms": eager, "compiled_ms": fast, "compile": how, "compile_s": round(compile_s, 1),
                  "compiled_rel_error": rel_error(first, ref), "speedup": round(eager / fast, 3),
                  "inductor_flags": flags}
    return result


def stage_svd8(args: argparse.Namespace) -> dict[str, Any]:
    """FP8 (torchao rowwise dynamic) + compile, against eager bf16 on the same inputs."""
    unet, inputs = svd_unet()
    with torch.no_grad():
        ref = unet(**inputs).sample
        eager = step_ms(lambda: unet(**inputs), args.reps)
        print(json.dumps({"svd8": {"eager_ms": eager}}), flush=True)  # the compile may outlast the call
        unet, how = compiled(unet, fp8=True)
        started = time.time()
        print(json.dumps({"svd8": {"compile": how, "compile_started": started}}), flush=True)
        out, compile_s = timed(lambda: unet(**inputs).sample)
        fp8_ms = step_ms(lambda: unet(**inputs), args.reps)
    return {"eager_ms": eager, "fp8_compiled_ms": fp8_ms, "compile": how, "fp8_compile_s": round(compile_s, 1),
            "fp8_rel_error": rel_error(out, ref), "fp8_speedup": round(eager / fp8_ms, 3)}


def unet_regions(unet: Any) -> list[Any]:
    """The SVD UNet's top-level blocks: each compiles as one graph (the glue between them stays eager)."""
    return [*unet.down_blocks, unet.mid_block, *unet.up_blocks]


def compiled_by_region(unet: Any, fp8: bool) -> str:
    """Mora's levers (and FP8), then each region compiled on its own; what was done."""
    from mora.nodes.speed import _levers, quantize_fp8, use_compile_cache

    use_compile_cache()
    if fp8:
        quantize_fp8(SimpleNamespace(unet=unet), {"quantization": "fp8"})
    levers = _levers(unet)
    for block in unet_regions(unet):
        block.compile()
    return "+".join(["regions", *(["fp8"] if fp8 else []), *levers])


def stage_svd8r(args: argparse.Namespace) -> dict[str, Any]:
    """FP8 + compile by region, FP8 eager and bf16 by region, each against eager bf16 on the same inputs (a fresh
    UNet each); the figures are printed as each variant ends (a call may stop the compile)."""
    result: dict[str, Any] = {}

    def note(**kw: Any) -> None:
        result.update(kw)
        print(json.dumps({"svd8r": kw}), flush=True)

    unet, inputs = svd_unet()
    with torch.no_grad():
        ref = unet(**inputs).sample
        note(eager_ms=step_ms(lambda: unet(**inputs), args.reps))
    unet = None  # freed before each variant loads its own
    for variant in filter(None, args.svd_variants.split(",")):
        torch._dynamo.reset()
        note(**svd_variant(variant, ref, result["eager_ms"], args.reps, note))
    return result


def svd_variant(variant: str, ref: torch.Tensor, eager_ms: float, reps: int, note: Any) -> dict[str, Any]:
    """One svd8r variant on a fresh UNet: how it was made, its step, first call, error and speedup."""
    unet, inputs = svd_unet()
    with torch.no_grad():
        if variant == "fp8_eager":
            from mora.nodes.speed import quantize_fp8

            quantize_fp8(SimpleNamespace(unet=unet), {"quantization": "fp8"})
            how = "fp8 eager"
        else:
            how = compiled_by_region(unet, variant.startswith("fp8"))
        note(**{f"{variant}_how": how, f"{variant}_started": time.time()})
        out, first_s = timed(lambda: unet(**inputs).sample)
        ms = step_ms(lambda: unet(**inputs), reps)
    return {f"{variant}_ms": ms, f"{variant}_first_call_s": round(first_s, 1), f"{variant}_rel_error": rel_error(out, ref),
            f"{variant}_speedup": round(eager_ms / ms, 3)}


def stage_again(args: argparse.Namespace) -> dict[str, Any]:
    from mora.nodes.speed import compile_cache_dir

    unet, inputs = svd_unet()
    with torch.no_grad():
        unet, how = compiled(unet)
        _, compile_s = timed(lambda: unet(**inputs))
        ms = step_ms(lambda: unet(**inputs), args.reps)
    return {"compile": how, "compile_s_second_process": round(compile_s, 1), "compiled_ms": ms,
            "cache_dir": str(compile_cache_dir())}


def wan_transformer() -> tuple[Any, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    from diffusers import WanTransformer3DModel

    model = WanTransformer3DModel.from_pretrained(folder("wan_i2v_1_3b") / "transformer", dtype=torch.bfloat16)
    model = model.to("cuda").eval()
    g = torch.Generator("cuda").manual_seed(0)
    kw: dict[str, Any] = {"device": "cuda", "dtype": torch.bfloat16, "generator": g}
    x = torch.randn(1, 36, 21, 60, 104, **kw)  # 81 frames 480x832: 21 x 60 x 104 latents, 16 + 20 channels
    image = torch.randn(1, 257, 1280, **kw)
    t = torch.tensor([500.0], device="cuda")
    cond = {"hidden_states": x, "timestep": t, "encoder_hidden_states": torch.randn(1, 512, 4096, **kw),
            "encoder_hidden_states_image": image, "return_dict": False}
    uncond = {**cond, "encoder_hidden_states": torch.randn(1, 512, 4096, **kw)}
    return model, cond, uncond


def stage_wan(args: argparse.Namespace) -> dict[str, Any]:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    model, cond, uncond = wan_transformer()

    def cfg_step_two() -> torch.Tensor:  # what the pipeline does: two forwards per step
        c, u = model(**cond)[0], model(**uncond)[0]
        return u + 5.0 * (c - u)

    with torch.no_grad():
        ref = cfg_step_two()
        eager = step_ms(cfg_step_two, args.reps)
        weights_gb = torch.cuda.memory_allocated() / 2**30
        model, how = compiled(model)  # fusing q/k/v: diffusers' separate projections kept as views, no second copy
        weights_fused_gb = torch.cuda.memory_allocated() / 2**30
        first, compile_s = timed(cfg_step_two)
        regional = step_ms(cfg_step_two, args.reps)
        result = {"eager_step_ms": eager, "regional_step_ms": regional, "compile": how,
                  "allocated_gb_before_compile": round(weights_gb, 3), "allocated_gb_fused": round(weights_fused_gb, 3),
                  "compile_s": round(compile_s, 1), "regional_rel_error": rel_error(first, ref),
                  "regional_speedup": round(eager / regional, 3)}
        print(json.dumps({"wan": result}), flush=True)
        for name, backend in (("cudnn", SDPBackend.CUDNN_ATTENTION), ("flash", SDPBackend.FLASH_ATTENTION)):
            try:
                with sdpa_kernel(backend):
                    out, _ = timed(cfg_step_two)
                    ms = step_ms(cfg_step_two, args.reps)
                result[f"regional_sdpa_{name}_step_ms"] = ms
                result[f"regional_sdpa_{name}_speedup"] = round(eager / ms, 3)
                result[f"regional_sdpa_{name}_rel_error"] = rel_error(out, ref)
            except RuntimeError as e:
                result[f"regional_sdpa_{name}"] = f"failed: {str(e)[:200]}"
            print(json.dumps({"wan": result}), flush=True)
        if args.fp8:
            del model
            torch.cuda.empty_cache()
            model, cond, uncond = wan_transformer()
            model, _ = compiled(model, fp8=True)
            out, fp8_compile_s = timed(cfg_step_two)
            fp8 = step_ms(cfg_step_two, args.reps)
            result.update({"fp8_regional_step_ms": fp8, "fp8_compile_s": round(fp8_compile_s, 1),
                           "fp8_rel_error": rel_error(out, ref), "fp8_regional_speedup": round(eager / fp8, 3)})
    return result


def uncached() -> contextlib.AbstractContextManager[None]:
    """Inductor's and AOTAutograd's on-disk caches off for a compile inside this block."""
    import torch._inductor.config as inductor

    return inductor.patch(force_disable_caches=True)


FP8_ATTENTION = {"sdpa": ("sdpa",), "fa4": ("fa4",), "both": ("sdpa", "fa4"), "cudnn_fp8": ("cudnn_fp8",),
                 "fa4_and_cudnn_fp8": ("fa4", "cudnn_fp8")}
"""--fp8-attention: the attention the FP8 model is timed under (each an FP8 compile of minutes): PyTorch's SDPA, FA4,
or cuDNN's FP8 attention (`quantization=fp8_attention`: the whole model in FP8)."""


def fp8_attention_calls(step: Any) -> dict[str, int]:
    """One step under `quantization=fp8_attention`'s kernel, counting its calls: in FP8, and in the inputs' dtype
    (fewer keys than `MIN_KEYS`)."""
    from mora.nodes import fp8_attention

    calls = {"fp8": 0, "in_dtype": 0}
    kernel = fp8_attention._flash_attn_fwd

    def counted(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, **kwargs: Any) -> Any:
        calls["fp8" if k.shape[1] >= fp8_attention.MIN_KEYS else "in_dtype"] += 1
        return kernel(q, k, v, **kwargs)

    fp8_attention._flash_attn_fwd = counted  # torch's registry looks the module's function up at each call
    try:
        with fp8_attention.active("cuda"):
            step()
    finally:
        fp8_attention._flash_attn_fwd = kernel
    return calls


def stage_fa4(args: argparse.Namespace) -> dict[str, Any]:
    from mora.nodes.flash_attention_4 import active

    def flash_attention_4() -> Any:
        return active("cuda")

    def fp8_attention_kernel(name: str) -> Any:
        from mora.nodes import fp8_attention

        return {"fa4": flash_attention_4, "cudnn_fp8": lambda: fp8_attention.active("cuda")}.get(
            name, contextlib.nullcontext)()

    result: dict[str, Any] = {}

    def record(key: str, value: Any) -> None:
        result[key] = value
        print(json.dumps({"fa4": {key: value}}), flush=True)

    def bf16_variants(prefix: str, step: Any, model: Any, ref: torch.Tensor, eager: float) -> None:
        """FA4 eager, compiled, compiled under FA4 (the model compiled in place)."""
        with flash_attention_4():
            out, first_s = timed(lambda: step(model))
            record(f"{prefix}_fa4_first_call_s", round(first_s, 1))
            record(f"{prefix}_fa4_ms", step_ms(lambda: step(model), args.reps))
        record(f"{prefix}_fa4_rel_error", rel_error(out, ref))
        record(f"{prefix}_fa4_speedup", round(eager / result[f"{prefix}_fa4_ms"], 3))
        model, how = compiled(model)
        record(f"{prefix}_compile", how)
        out, compile_s = timed(lambda: step(model))
        record(f"{prefix}_compile_s", round(compile_s, 1))
        record(f"{prefix}_compiled_ms", step_ms(lambda: step(model), args.reps))
        record(f"{prefix}_compiled_rel_error", rel_error(out, ref))
        # Traced again inside the FA4 block, as Mora's agents trace it (their first call), with the compile caches
        # off: their keys do not hold SDPA's kernel order, so a cached graph would bring back the other kernel.
        torch._dynamo.reset()
        with flash_attention_4(), uncached():
            out, compile_s = timed(lambda: step(model))
            record(f"{prefix}_compiled_fa4_compile_s", round(compile_s, 1))
            record(f"{prefix}_compiled_fa4_ms", step_ms(lambda: step(model), args.reps))
        record(f"{prefix}_compiled_fa4_rel_error", rel_error(out, ref))
        record(f"{prefix}_compiled_fa4_speedup", round(eager / result[f"{prefix}_compiled_fa4_ms"], 3))

    def variants(prefix: str, step: Any, model: Any, fp8_model: Any = None) -> None:
        with torch.no_grad():
            ref = step(model)
            eager = step_ms(lambda: step(model), args.reps)
            record(f"{prefix}_eager_ms", eager)
            if not args.fp8_only:
                bf16_variants(prefix, step, model, ref, eager)
            for attention in FP8_ATTENTION[args.fp8_attention] if fp8_model is not None else ():
                torch._dynamo.reset()  # each FP8 model traced anew: dynamo reuses a class's compiled blocks
                del model
                torch.cuda.empty_cache()
                model, how = compiled(fp8_model(), fp8=True)
                tag = f"{prefix}_fp8_compiled{'' if attention == 'sdpa' else '_' + attention}"
                record(f"{tag}_compile", how)
                with fp8_attention_kernel(attention), uncached():
                    out, compile_s = timed(lambda m=model: step(m))
                    record(f"{tag}_compile_s", round(compile_s, 1))
                    record(f"{tag}_ms", step_ms(lambda m=model: step(m), args.reps))
                record(f"{tag}_rel_error", rel_error(out, ref))
                record(f"{tag}_speedup", round(eager / result[f"{tag}_ms"], 3))
                if attention == "cudnn_fp8":  # that the compiled step reaches the FP8 kernel, and how often
                    record(f"{tag}_attention_calls_per_step", fp8_attention_calls(lambda m=model: step(m)))

    if "wan" in args.models:
        model, cond, uncond = wan_transformer()

        def cfg_step_two(m: Any) -> torch.Tensor:  # what the pipeline does: two forwards per step
            c, u = m(**cond)[0], m(**uncond)[0]
            return u + 5.0 * (c - u)

        variants("wan", cfg_step_two, model, (lambda: wan_transformer()[0]) if args.fp8 else None)
        del model
        torch.cuda.empty_cache()
    if "svd" in args.models:
        unet, inputs = svd_unet()  # (compiled twice: minutes)
        variants("svd", lambda m: m(**inputs).sample, unet)
    return result


@contextlib.contextmanager
def kernel_calls() -> Any:
    """Count, in the block, the calls reaching Mora's replacements of PyTorch's flash kernel (FA4, cuDNN FP8): whether a
    (compiled) model's attention went where its node asked, from the first call on."""
    from mora.nodes import flash_attention_4, fp8_attention

    calls = {"fa4": 0, "cudnn_fp8_module": 0}
    originals = {}
    for name, module in (("fa4", flash_attention_4), ("cudnn_fp8_module", fp8_attention)):
        kernel = originals[name] = module._flash_attn_fwd

        def counted(*a: Any, kernel: Any = kernel, name: str = name, **kw: Any) -> Any:
            calls[name] += 1
            return kernel(*a, **kw)
        module._flash_attn_fwd = counted  # torch's registry looks the module's function up at each call
    try:
        yield calls
    finally:
        flash_attention_4._flash_attn_fwd = originals["fa4"]
        fp8_attention._flash_attn_fwd = originals["cudnn_fp8_module"]


def stage_agent(args: argparse.Namespace) -> dict[str, Any]:
    sys.path.append(str(ROOT / "bench"))
    import world_video_quality as q
    from diffusers import DiffusionPipeline
    from PIL import Image

    from mora.nodes.image_to_video import AGENT, generate
    from mora.nodes.video_latent import family

    stamps: list[float] = []

    class Timed(q.Context):
        def progress(self, total: int, description: str) -> Any:
            def advance(n: int = 1) -> None:
                torch.cuda.synchronize()
                stamps.append(time.perf_counter())
            return advance

    ref = {"source": "random", "name": "wan_i2v_1_3b", "dtype": "bfloat16"}
    pipe = DiffusionPipeline.from_pretrained(folder("wan_i2v_1_3b"), dtype=torch.bfloat16).to("cuda")
    pipe.set_progress_bar_config(disable=True)
    image = Image.new("RGB", (832, 480), (120, 80, 40))
    result: dict[str, Any] = {}
    fast = {"compile": "auto", "attention": "auto"}
    variants = {"agent_defaults": ({}, ref), "speed_fast": (fast, ref), "fp8_fast": (fast, {**ref, "quantization": "fp8"}),
                "fp8_attention_fast": (fast, {**ref, "quantization": "fp8_attention"})}
    for name in args.agent_variants.split(","):
        given, model = variants[name]
        if model.get("quantization", "none") != "none":  # as load_pipeline does, in place: FP8 variants go last
            from mora.nodes.speed import check_fp8, quantize_fp8

            check_fp8(model["quantization"])
            if not getattr(pipe, "_bench_fp8", False):
                quantize_fp8(pipe, model)
                pipe._bench_fp8 = True
        params = AGENT.resolve_params({"width": 832, "height": 480, "frames": 81, "steps": args.agent_steps, **given})
        runs = []
        for _ in range(3):
            stamps.clear()
            with torch.no_grad(), kernel_calls() as calls:
                _, seconds = timed(lambda p=params, m=model: generate(Timed(m, 0, "cuda"), pipe, family(pipe, m), image,
                                                                      None, "a red kite", p, (832, 480)))
            steps = [b - a for a, b in itertools.pairwise(stamps)]
            runs.append({"seconds": round(seconds, 2), "step_ms_median": round(statistics.median(steps) * 1000, 1),
                         "flash_replacement_calls": calls})
            print(json.dumps({"agent": {name: runs[-1]}}), flush=True)
        result[name] = runs
    best = {name: min(r["step_ms_median"] for r in runs[1:]) for name, runs in result.items()}
    for name in best.keys() - {"agent_defaults"} if "agent_defaults" in best else ():
        result[f"{name}_step_speedup"] = round(best["agent_defaults"] / best[name], 3)
    return result


def sage_sdpa(sdpa: Any) -> Any:
    """F.scaled_dot_product_attention with self-attention (queries as long as keys, no mask) through sageattn."""
    from sageattention import sageattn

    @torch.compiler.disable  # a Triton kernel launched from Python: a graph break, not traced
    def sage(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: Any) -> torch.Tensor:
        return sageattn(q, k.contiguous(), v, tensor_layout="HND", is_causal=False, sm_scale=scale)

    def attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attn_mask: Any = None,
                  dropout_p: float = 0.0, is_causal: bool = False, scale: Any = None, **kw: Any) -> torch.Tensor:
        if attn_mask is None and not is_causal and not kw.get("enable_gqa") and query.shape == key.shape:
            return sage(query, key, value, scale)
        return sdpa(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal, scale=scale,
                    **kw)

    return attention


def stage_wansage(args: argparse.Namespace) -> dict[str, Any]:
    import importlib.metadata

    import torch.nn.functional as F
    from diffusers.models.attention_dispatch import AttentionBackendName, _AttentionBackendRegistry

    sdpa = F.scaled_dot_product_attention
    result: dict[str, Any] = {"sageattention": importlib.metadata.version("sageattention")}

    def cfg_step_two() -> torch.Tensor:
        c, u = model(**cond)[0], model(**uncond)[0]
        return u + 5.0 * (c - u)

    def report() -> None:
        print(json.dumps({"wansage": result}), flush=True)

    model, cond, uncond = wan_transformer()
    try:
        with torch.no_grad():
            ref = cfg_step_two()
            result["eager_step_ms"] = eager = step_ms(cfg_step_two, args.reps)
            try:  # xformers 0.0.35, the binary wheel on PyPI, through diffusers' dispatcher (FA3 needs flash_attn_3)
                model.set_attention_backend("xformers")
                out, _ = timed(cfg_step_two)
                result["xformers_eager_step_ms"] = ms = step_ms(cfg_step_two, args.reps)
                result.update(xformers_eager_rel_error=rel_error(out, ref), xformers_eager_speedup=round(eager / ms, 3))
            except Exception as e:  # noqa: BLE001 - the kernel's failure is a finding; the sage figures still come
                result["xformers"] = f"failed: {type(e).__name__}: {str(e)[:300]}"
            finally:
                model.reset_attention_backend()
                _AttentionBackendRegistry.set_active_backend(AttentionBackendName.NATIVE)  # set_ sets it globally
            report()
            F.scaled_dot_product_attention = sage_sdpa(sdpa)
            out, _ = timed(cfg_step_two)
            result["sage_eager_step_ms"] = ms = step_ms(cfg_step_two, args.reps)
            result.update(sage_eager_rel_error=rel_error(out, ref), sage_eager_speedup=round(eager / ms, 3))
            report()
            model, how = compiled(model)
            out, compile_s = timed(cfg_step_two)
            result["sage_regional_step_ms"] = ms = step_ms(cfg_step_two, args.reps)
            result.update(compile=how, sage_regional_compile_s=round(compile_s, 1),
                          sage_regional_rel_error=rel_error(out, ref), sage_regional_speedup=round(eager / ms, 3))
            report()
            F.scaled_dot_product_attention = sdpa
            del model
            torch.cuda.empty_cache()
            torch._dynamo.reset()
            model, cond, uncond = wan_transformer()
            model, _ = compiled(model)
            out, compile_s = timed(cfg_step_two)
            result["regional_step_ms"] = ms = step_ms(cfg_step_two, args.reps)
            result.update(regional_compile_s=round(compile_s, 1), regional_rel_error=rel_error(out, ref),
                          regional_speedup=round(eager / ms, 3))
    finally:
        F.scaled_dot_product_attention = sdpa
    return result


def stage_t2v(args: argparse.Namespace) -> dict[str, Any]:
    import yaml

    sys.path.insert(0, str(ROOT / "bench"))
    from raw_text_to_video import generate

    from mora.engine.cache.store import Store
    from mora.engine.execution.executors.inprocess import InProcessExecutor
    from mora.engine.frontends.api import graph_path, load_plan, run

    preset = yaml.safe_load((ROOT / "conf/model/random.yaml").read_text())
    preset["compile"] = "on"
    t2i, i2v = folder("sd15"), folder("svd_xt")

    def engine(tag: str, seed: int) -> tuple[float, dict[str, float]]:
        plan = load_plan(graph_path("text_to_video", None), {"seed": seed}, ["video", "keyframe"],
                         defaults=preset["inputs"])
        fresh = f"{tag}-{time.time_ns()}"
        outcome, seconds = timed(lambda: run(plan, store=Store(WORK / f"cache-{fresh}"), preset=preset,
                                             run_dir=WORK / f"run-{fresh}", runtime={}, quiet=True,
                                             executor=InProcessExecutor("cuda")))
        assert not any(n["cached"] for n in outcome.manifest["nodes"].values()), "a fresh cache had a hit"
        return seconds, {k: round(v["seconds"], 2) for k, v in outcome.manifest["nodes"].items()}

    def raw(tag: str, seed: int) -> tuple[float, dict[str, float]]:
        timings, seconds = timed(lambda: generate(str(t2i), str(i2v), WORK / f"raw-{tag}-{time.time_ns()}", seed))
        return seconds, {k: round(v, 2) for k, v in timings.items()}

    warm_s, warm_nodes = engine("warm", 99)  # loads and compiles both denoisers: paid once per worker
    raw("warm", 99)
    rows = []
    for rep in range(args.reps_t2v):
        raw_s, raw_detail = raw(f"r{rep}", rep)
        eng_s, eng_detail = engine(f"e{rep}", rep)
        rows.append({"raw_s": round(raw_s, 2), "engine_s": round(eng_s, 2), "speedup": round(raw_s / eng_s, 3),
                     "raw": raw_detail, "engine_nodes": eng_detail})
        print(json.dumps(rows[-1]), flush=True)
    return {"engine_first_run_s": round(warm_s, 1), "engine_first_run_nodes": warm_nodes, "runs": rows,
            "median_speedup": round(statistics.median(r["speedup"] for r in rows), 3)}


STAGES = {"svd": stage_svd, "svd8": stage_svd8, "svd8r": stage_svd8r, "wan": stage_wan, "again": stage_again, "t2v": stage_t2v,
          "wansage": stage_wansage, "fa4": stage_fa4,
          "agent": stage_agent}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--stages", default="svd,wan")
    ap.add_argument("--reps", type=int, default=10, help="timed steps per variant (median)")
    ap.add_argument("--reps-t2v", type=int, default=2)
    ap.add_argument("--fp8", action="store_true", help="also FP8 (torchao) + compile")
    ap.add_argument("--fp8-attention", choices=sorted(FP8_ATTENTION), default="both",
                    help="fa4 --fp8: the FP8 model's attention (PyTorch's SDPA, FA4, cuDNN's FP8, or several)")
    ap.add_argument("--fp8-only", action="store_true", help="fa4: time eager, then only the FP8 variants")
    ap.add_argument("--agent-steps", type=int, default=6, help="agent: denoising steps a run")
    ap.add_argument("--agent-variants", default="agent_defaults,speed_fast",
                    help="agent: of agent_defaults, speed_fast, fp8_fast, fp8_attention_fast (quantization=fp8 or "
                         "fp8_attention with speed=fast's settings; they quantize the pipeline, so last)")
    ap.add_argument("--svd-variants", default="fp8_regions,fp8_eager,bf16_regions",
                    help="svd8r: of fp8_regions, fp8_eager, bf16_regions, in order")
    ap.add_argument("--models", default="wan,svd", help="fa4: which steps to time (wan, svd)")
    ap.add_argument("--tag", default="", help="added to the JSON file's name")
    ap.add_argument("--flags-off", default="", help="svd: INDUCTOR_FLAGS names to leave at inductor's default")
    ap.add_argument("--flags-on", default="", help="svd: more inductor flags to set true")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    WORK.mkdir(parents=True, exist_ok=True)
    import diffusers

    results: dict[str, Any] = {"device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
                               "torch": torch.__version__,
                               "diffusers": diffusers.__version__,
                               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "argv": sys.argv[1:]}
    name = OUT / f"gpu_speed-{args.stages.replace(',', '-')}{'-' + args.tag if args.tag else ''}.json"
    for stage in args.stages.split(","):
        started = time.perf_counter()
        try:
            results[stage] = STAGES[stage](args)
        except Exception as e:  # noqa: BLE001 - keep what the other stages measured
            results[stage] = {"error": f"{type(e).__name__}: {str(e)[:2000]}"}
        results[stage]["stage_s"] = round(time.perf_counter() - started, 1)
        name.write_text(json.dumps(results, indent=2))
        print(json.dumps({stage: results[stage]}), flush=True)


if __name__ == "__main__":
    main()
