#!/bin/bash
# Issue 14's remaining GPU figures, beside another job's training, on the two GPUs it is given:
#   GPUS="2 3" LIMIT=<seconds> bash .gpu/h23s/speed.sh <call: 2 or 3>     (from the repository root)
# call 2: GPU A the SVD-XT UNet step with the compile guide's levers, then Wan with SageAttention 1.0.6;
#         GPU B the `speed=fast` sweep cold (it fills the compile caches for call 3), then the SVD step with
#         coordinate-descent tuning as well.
# call 3: the 4-seed sweep, basic launcher on GPU A and `speed=fast` on GPU B at the same time, then swapped
#         if at least 130 s are left.
# call 4 (a rerun): Wan with xformers and SageAttention 1.0.6 on GPU A, Wan FP8 + regional compile on GPU B.
# Everything ends within $LIMIT s (each process under `timeout`); logs and JSON go to $OUT/h23s.
# DRY=1: the same plumbing on CPU with the tiny models (a check before GPU time is spent).
set -u
CALL=${1:?call number: 2, 3 or 4}
START=$(date +%s); LIMIT=${LIMIT:-300}
H=${H:-.gpu/h23s}
read -r GA GB <<< "${GPUS:-2 3}"
O=${OUT:-/tmp/out}/h23s; mkdir -p "$O"
STATE=/tmp/h23s-state; mkdir -p $STATE
export PYTHONUNBUFFERED=1 PYTHONSAFEPATH=1 MORA_MODELS_DIR=${MORA_MODELS_DIR:-/tmp/mm/models}
SITE=/tmp/site23; MODEL=random
if [ -n "${DRY:-}" ]; then SITE=/tmp/site23dry; MODEL=tiny; export MORA_BENCH_DEVICE=cpu; fi
export PYTHONPATH=$SITE
left() { echo $(( LIMIT - 8 - ($(date +%s) - START) )); }
say() { echo "[$(date -u +%H:%M:%S) +$(( $(date +%s) - START ))s] $*" | tee -a "$O/speed.log"; }

# on GPU $1, within what is left (or $3 s if less), the command $4..; its output in $O/$2.log
job() {
  local gpu=$1 name=$2 cap=$3; shift 3
  local l; l=$(left); [ "$cap" -gt 0 ] && [ "$cap" -lt "$l" ] && l=$cap
  [ "$l" -lt 30 ] && { say "$name: skipped, $l s left"; return; }
  say "$name on GPU $gpu, up to $l s: $*"
  local t0; t0=$(date +%s)
  CUDA_VISIBLE_DEVICES=$gpu timeout -k 5 "$l" "$@" > "$O/$name.log" 2>&1
  say "$name: rc=$? after $(( $(date +%s) - t0 )) s"
}

STAMP=$(cat $H/*.whl | md5sum | cut -c1-16)   # a new wheel here (a later call on the same machine): install again
[ "$(cat $SITE/.h23s-stamp 2>/dev/null)" = "$STAMP" ] || rm -rf $SITE $SITE-x
if [ ! -d $SITE/mora ]; then
  wheels=$(ls $H/*.whl .gpu/h22/*.whl .gpu/h14/torchao*.whl | grep -v /xformers-)
  dup=$(for w in $wheels; do basename "$w" | cut -d- -f1; done | sort | uniq -d)
  [ -n "$dup" ] && say "the same package twice, keeping the first: $dup"
  keep=""; seen=" "
  for w in $wheels; do p=$(basename "$w" | cut -d- -f1); case "$seen" in *" $p "*) ;; *) keep="$keep $w"; seen="$seen$p ";; esac; done
  [ -n "${DRY:-}" ] && keep=$(for w in $keep; do case "$w" in *-none-any.whl) echo "$w";; esac; done)  # this python
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target $SITE $keep \
    > "$O/pip.log" 2>&1 || { say "pip install failed"; tail -5 "$O/pip.log"; exit 1; }
  echo "$STAMP" > $SITE/.h23s-stamp
fi
# xformers apart: only the Wan attention stage sees it (diffusers imports it whenever it is installed)
if [ ! -d $SITE-x/xformers ] && ls $H/xformers-*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target $SITE-x $H/xformers-*.whl \
    >> "$O/pip.log" 2>&1 || say "xformers install failed"
fi
python3 -P -c "import mora.nodes.speed as s, sys; sys.exit(0 if 'INDUCTOR_FLAGS' in dir(s) else 1)" \
  || { say "not this branch's mora on PYTHONPATH"; exit 1; }
VIDEO=""
python3 -P -c "import av" 2>/dev/null || VIDEO="video_format=frames"   # no PyAV here: frames for both launchers
nvidia-smi --query-gpu=index,name,driver_version,memory.total,memory.used,utilization.gpu --format=csv \
  > "$O/gpu-call$CALL.txt" 2>&1
say "call $CALL, GPUs $GA $GB, limit $LIMIT s, models $MORA_MODELS_DIR, ${VIDEO:-mp4}"

# the random models are built by another process in call 1: wait for them (at most 120 s, then build here)
if [ -z "${DRY:-}" ]; then
  for m in svd_xt sd15 wan_i2v_1_3b; do
    for _ in $(seq 60); do ls -d "$MORA_MODELS_DIR"/random/$m-*/.complete >/dev/null 2>&1 && break; sleep 2; done
  done
  ls -d "$MORA_MODELS_DIR"/random/*/.complete >> "$O/speed.log" 2>&1
fi

S="python3 -P $H/gpu_speed.py"; B="python3 -P $H/gpu_bench.py --stages fast --model $MODEL --extra=$VIDEO"
export OUT=$O
if [ "$CALL" = 2 ]; then
  ( job $GA svd 240 $S --stages svd --reps 5
    PYTHONPATH=$SITE:$SITE-x job $GA wansage 0 $S --stages wansage --reps 5 ) &
  ( job $GB fast-cold 400 $B --launchers fast --tag=-cold
    job $GB svd-cd 0 $S --stages svd --reps 5 --tag=cd \
      --flags-on coordinate_descent_tuning,coordinate_descent_check_all_directions ) &
  wait
elif [ "$CALL" = 4 ]; then   # a rerun after the fixes: SageAttention (lost in call 2), Wan FP8 (failed in call 1)
  PYTHONPATH=$SITE:$SITE-x job $GA wansage 0 $S --stages wansage --reps 5 &
  job $GB wanfp8 0 $S --stages wan --fp8 --reps 5 --tag=fp8 &
  wait
else
  ( job $GA basic-1 ${CAP:-150} $B --launchers basic --tag=-1 ) &
  ( job $GB fast-1 0 $B --launchers fast --tag=-1 ) &   # all the time left: it may still have to compile
  wait
  [ "$(left)" -ge 130 ] || say "no time for the swapped pair"
  [ "$(left)" -ge 130 ] && ( job $GB basic-2 ${CAP:-150} $B --launchers basic --tag=-2 ) &
  [ "$(left)" -ge 130 ] && ( job $GA fast-2 ${CAP:-150} $B --launchers fast --tag=-2 ) &
  wait
fi
cp "$O"/*.json $STATE/ 2>/dev/null
du -sh "$(dirname "$MORA_MODELS_DIR")/compile" >> "$O/speed.log" 2>&1
say "summary:"
for f in "$O"/*.json; do
  [ -f "$f" ] || continue
  echo "== $(basename "$f")"
  python3 -c "
import json, sys
def lean(v):
    return {a: lean(b) for a, b in v.items() if a not in ('nodes', 'engine_nodes', 'node_seconds')} if isinstance(v, dict) else v
for k, v in json.load(open(sys.argv[1])).items():
    print(' ', k, json.dumps(lean(v))[:700])
" "$f"
done
for f in "$O"/*.log; do grep -l "Traceback\|Error" "$f" >/dev/null 2>&1 && { echo "== errors in $(basename "$f"):"; grep -v Warning "$f" | grep -B2 -A2 "Error" | tail -6 | cut -c1-300; }; done
say "done"
