#!/usr/bin/env bash
# Issue 14 on one H100 (2026-11-27): FlashAttention-4 from PyPI (flash-attn-4, CuTe DSL kernels, Hopper's included)
# as PyTorch's flash SDPA kernel, FP8, and what the levers cost on the trained world Wan. The wheels are over the
# device's carry limit, so they travel in parts: .gpu/p1 holds ess.tar (diffusers, hydra, torchao, ...: all but FA4)
# and fa.part.aa, .gpu/p2 the rest of the FA4 set (fa.part.ab, .ac), .gpu/p4 this project's wheel; a call installs
# what it has been carried so far (the machine keeps /tmp while it stays warm).
#   bash bench/gpu_fa4_h29.sh probe     # any call: what the machine has; keeps the parts carried so far
#   bash bench/gpu_fa4_h29.sh fa4       # build the random Wan 1.3B and SVD-XT, time them with FA4
#   bash bench/gpu_fa4_h29.sh levers    # the world Wan: bf16 against float32, compile, FA4, FP8 (two processes;
#                                       # A=..., B=... the --variant options of each)
#   bash bench/gpu_fa4_h29.sh fp8       # the Wan 1.3B-size step with FP8 + regional compile + FA4
#                                       # (ATT=sdpa|fa4|both: under which attention; ONLY=1: eager and the FP8
#                                       # variants only)
#   bash bench/gpu_fa4_h29.sh agent     # the image_to_video agent's path on it: defaults against speed=fast's
#   bash bench/gpu_fa4_h29.sh probes    # FA4's tiles at Wan's attention shape; a profile of the FP8 + FA4 step
#   bash bench/gpu_fa4_h29.sh fp8att    # cuDNN's FP8 attention (nvidia-cudnn-frontend, carried in .gpu/p4 beside
#                                       # this project's wheel): its kernel at Wan's shapes, then the Wan step with
#                                       # quantization=fp8_attention (FP8 + regional compile + FP8 attention)
#   bash bench/gpu_fa4_h29.sh svd8r     # the SVD-XT UNet in FP8 compiled by region (gpu_speed.py's svd8r stage;
#                                       # SV=... its --svd-variants); the compile cache stays while the machine does
set -u
OUT=${OUT:-/tmp/o}; K=/tmp/kit; P=/tmp/pk; M=/tmp/mm/models
mkdir -p "$K" "$OUT" "$P"
for d in .gpu/p*; do [ -d "$d" ] && cp --update=none "$d"/* "$K"/; done
export PYTHONPATH=$P:$P/nvidia_cutlass_dsl/dsl_packages:$PWD MORA_MODELS_DIR=$M OUT
install_kit() {
  if [ ! -f "$P/.ess" ] && [ -f "$K/ess.tar" ]; then
    tar xf "$K/ess.tar" -C "$K" && pip install -q --no-deps --no-index --target "$P" "$K"/ess/*.whl \
      > "$OUT/install.log" 2>&1 && touch "$P/.ess"
  fi
  if [ ! -f "$P/.fa4" ] && [ -f "$K/fa.part.aa" ] && [ -f "$K/fa.part.ab" ] && [ -f "$K/fa.part.ac" ]; then
    cat "$K"/fa.part.* | tar xf - -C "$K" && pip install -q --no-deps --no-index --target "$P" "$K"/fa/*.whl \
      >> "$OUT/install.log" 2>&1 && touch "$P/.fa4"  # the image's cuda-bindings 13.3, protobuf and einops stay
  fi
  for w in .gpu/p4/*.whl; do  # this project, carried alone
    [ -f "$w" ] && pip install -q --no-deps --no-index --upgrade --target "$P" "$w" >> "$OUT/install.log" 2>&1
  done
  ls "$P"/.ess "$P"/.fa4 2>&1 | tr '\n' ' '; tail -3 "$OUT/install.log"
}
build() {  # the random-weight models of the published architectures named, in parallel
  for m in "$@"; do
    (python3 -P -c "import pathlib, sys; from mora.nodes.zoo import build
print(build('random', sys.argv[1], pathlib.Path('$M')))" $m > "$OUT/build-$m.log" 2>&1) &
  done
  wait; tail -2 "$OUT"/build-*.log
}
case $1 in
probe)
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; python3 -V; ls -la "$K"
  python3 -c "import torch, torch.nn.attention as a; print(torch.__version__, torch.version.cuda, getattr(a, 'list_flash_attention_impls', lambda: 'no registry')())"
  pip list 2>/dev/null | grep -i -E "cuda|protobuf|einops|typing|nvidia-cu|triton|tvm|dlpack" ;;
fa4)
  install_kit
  build wan_i2v_1_3b svd_xt
  timeout 480 python3 -P bench/gpu_speed.py --stages fa4 --reps 5 > "$OUT/fa4.log" 2>&1; echo "fa4 rc=$?"
  grep -v Warning "$OUT/fa4.log" | tail -25 ;;
levers)
  install_kit
  W=nodes/world/weights/wan_i2v
  timeout 520 python3 -P bench/wan_levers_quality.py --weights $W --device cuda --n ${N:-50} ${A:---variant float32 \
    --variant compile --variant fa4} --json "$OUT/levers-a.json" > "$OUT/levers-a.log" 2>&1 &
  timeout 520 python3 -P bench/wan_levers_quality.py --weights $W --device cuda --n ${N:-50} ${B:---variant fp8 \
    --variant fp8_compile} --json "$OUT/levers-b.json" > "$OUT/levers-b.log" 2>&1 &
  wait; grep -E "^(bf16|float32|compile|fa4|fp8[a-z_]*) |Error|error" "$OUT"/levers-*.log | tail -20 ;;
fp8)
  install_kit
  build wan_i2v_1_3b
  TORCH_LOGS=recompiles timeout ${LIMIT:-575} python3 -P bench/gpu_speed.py --stages fa4 --models ${MODELS:-wan} \
    --fp8 --fp8-attention ${ATT:-both} ${ONLY:+--fp8-only} --reps 5 --tag fp8-${ATT:-both} \
    > "$OUT/fa4-fp8.log" 2>&1
  echo "fp8 rc=$?"; grep -v Warning "$OUT/fa4-fp8.log" | tail -25 ;;
probes)
  install_kit
  build wan_i2v_1_3b
  timeout 150 python3 -P bench/fa4_tiles.py --json "$OUT/fa4-tiles.json" > "$OUT/fa4-tiles.log" 2>&1; echo "tiles rc=$?"
  timeout 400 python3 -P bench/wan_step_profile.py --fp8 --json "$OUT/wan-step-profile.json" > "$OUT/profile.log" 2>&1
  echo "profile rc=$?"; grep -E '"(step_ms|profiled_wall_ms|gpu_kernels_ms)"' "$OUT/wan-step-profile.json" ;;
fp8att)
  install_kit
  build wan_i2v_1_3b
  timeout 150 python3 -P bench/fp8_attention.py --json "$OUT/fp8-attention.json" > "$OUT/fp8-attention.log" 2>&1
  echo "kernel rc=$?"; grep "^{" "$OUT/fp8-attention.log" | tail -14
  TORCH_LOGS=recompiles timeout ${LIMIT:-400} python3 -P bench/gpu_speed.py --stages fa4 --models wan --fp8 \
    --fp8-attention ${ATT:-cudnn_fp8} --fp8-only --reps 5 --tag fp8-${ATT:-cudnn_fp8} > "$OUT/fa4-fp8.log" 2>&1
  echo "step rc=$?"; grep -v Warning "$OUT/fa4-fp8.log" | tail -12 ;;
svd8r)
  install_kit
  build svd_xt
  timeout ${LIMIT:-540} python3 -P bench/gpu_speed.py --stages svd8r --reps 5 ${SV:+--svd-variants $SV} \
    > "$OUT/svd8r.log" 2>&1; echo "svd8r rc=$?"
  grep "^{" "$OUT/svd8r.log" | tail -12; grep -i "error\|Traceback" "$OUT/svd8r.log" | tail -5 ;;
agent)
  install_kit
  timeout ${LIMIT:-560} python3 -P bench/gpu_speed.py --stages agent --agent-variants ${AV:-agent_defaults,speed_fast} \
    > "$OUT/agent.log" 2>&1; echo "agent rc=$?"
  grep "^{" "$OUT/agent.log" | tail -12 ;;
esac
