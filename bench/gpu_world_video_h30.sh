#!/bin/bash
# Issue 16, eighth runs (2026-11-27; bench/README.md "Eighth runs"): on nvidia-h100-x4, the world's wheels in .gpu/h30
# (as bench/gpu_world_video_h25.sh, with this tree's Mora wheel); everything under /tmp/w.
#   bash bench/gpu_world_video_h30.sh start   # call 1: starts the whole plan detached (setsid), then waits
#   bash bench/gpu_world_video_h30.sh wait N  # later calls: wait until N s after the start, or the plan's end
#   bash bench/gpu_world_video_h30.sh collect # last call: logs, results and the trained folders into $OUT
# The plan, every model from scratch:
#   A. four per-frame VAEs, each step's frames from as many scenes (--independent-frames), 4 minutes each, one a GPU;
#      each one's ceiling on 100 held-out clips; the best (kept, then frames kept) is the latent space of B
#   B. 13 minutes: its decoder alone on noisy latents (GPU 0); I2V at the shipped size, I2V wider and deeper, FLF2V at
#      the shipped size (GPUs 1-3), on the best VAE's latents
#   C. the quality bench on 100 held-out scenes a task (25 for extend), with B's decoder, guidance 2 (the preset's)
# On 2026-11-27 stage C first failed (mk was given full paths: fixed since) and ran by hand in a third call, the same
# four quality commands with --n 20 for extend and a 300 s limit each.
set -u
S=$1; W=/tmp/w; L=$W/logs
if [ "$S" = start ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/h30/*.whl
  mkdir -p $L && date +%s > $W/start && nvidia-smi --query-gpu=index,name,memory.total --format=csv > $L/gpu.txt
  setsid nohup bash bench/gpu_world_video_h30.sh plan > $L/plan.log 2>&1 < /dev/null &
  S=wait; set -- wait ${2:-560}
fi
if [ "$S" = plan ]; then
  export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site:$PWD
  START=$(cat $W/start); SHIP=nodes/world/weights
  t() { echo $(( $(date +%s) - START )); }
  run() { gpu=$1; log=$2; shift 2; CUDA_VISIBLE_DEVICES=$gpu python3 -P -m "$@" --steps 1000000 --workers 14 \
            > $L/$log.log 2>&1; echo "$log rc=$? at $(t) s" >> $L/rc.txt; }
  q() { gpu=$1; log=$2; lim=$3; shift 3; CUDA_VISIBLE_DEVICES=$gpu timeout $lim python3 -P bench/world_video_quality.py \
          --n 100 --device cuda --guidance 2 --json $W/res/$log.json --strips $W/res/s_$log "$@" > $L/$log.log 2>&1
        echo "$log rc=$? at $(t) s" >> $L/rc.txt; }
  mkdir -p $W/res
  vae() { run $1 $2 training.world_video vae --temporal 1 --independent-frames --out $W/$2 --max-minutes 4 "${@:3}"
          q $1 ceil_$2 90 --only vae --vae $W/$2; }
  vae 0 va --batch 256 --lr 1e-3 & vae 1 vb --batch 256 --lr 2e-3 & vae 2 vc --batch 128 --lr 1e-3 &
  vae 3 vd --batch 256 --lr 1e-3 --decoder-width 64 &
  wait
  BEST=$(python3 -c "
import json, pathlib
r = {p.stem[5:]: json.loads(p.read_text())['vae'] for p in pathlib.Path('$W/res').glob('ceil_*.json')}
print(max(r, key=lambda k: (r[k]['kept'], r[k]['frames_kept'])))")
  echo "best VAE $BEST at $(t) s" >> $L/rc.txt
  M=${M:-13}
  run 0 dec training.world_video vae --init $W/$BEST --decoder-only --independent-frames --latent-noise 0.3 \
      --out $W/dec --max-minutes $M --batch 256 --lr 3e-4 &
  run 1 i2v training.world_video i2v --vae $W/$BEST --out $W/i2v --max-minutes $M --batch 128 --lr 8e-4 &
  run 2 i2vw training.world_video i2v --vae $W/$BEST --out $W/i2vw --max-minutes $M --batch 128 --lr 6e-4 \
      --width 192 --layers 8 &
  run 3 flf training.world_video flf --vae $W/$BEST --out $W/flf --max-minutes $M --batch 128 --lr 8e-4 &
  wait
  mk() { mkdir -p $W/$1 && cp -r $W/$2 $W/$1/wan_i2v && cp -r $W/flf $W/$1/wan_flf
         for p in wan_i2v wan_flf; do rm -rf $W/$1/$p/vae && cp -r $W/dec $W/$1/$p/vae; done; }
  mk set i2v; mk setw i2vw
  q 0 q_i2v 420 --weights $W/set --only image_to_video --only text_to_video --keyframes $SHIP/sd &
  q 1 q_i2vw 420 --weights $W/setw --only image_to_video --only text_to_video --keyframes $SHIP/sd &
  q 2 q_con 420 --weights $W/set --only connect &
  q 3 q_ceil 120 --only vae --vae $W/dec
  q 3 q_ext 330 --weights $W/set --only extend --n 25 &
  wait
  echo "plan done at $(t) s" >> $L/rc.txt
  exit 0
fi
if [ "$S" = wait ]; then  # until $2 s after the start, or the plan's end
  START=$(cat $W/start)
  while [ $(( $(date +%s) - START )) -lt $2 ] && ! grep -q "plan done" $L/rc.txt 2>/dev/null; do sleep 10; done
  echo "at $(( $(date +%s) - START )) s:"; cat $L/rc.txt 2>/dev/null; nvidia-smi --query-gpu=index,utilization.gpu,memory.used --format=csv
  for f in $L/*.log; do echo "== $f"; grep "^{" $f | tail -n 1 | cut -c1-300; grep -i "error\|Traceback" $f | tail -n 3; done
fi
if [ "$S" = collect ]; then
  cd $W && tar cf - logs res | gzip > $OUT/r.tgz
  tar cf - dec i2v i2vw flf $(cat logs/rc.txt | grep -o "best VAE v." | cut -c10-) | split -b 15M - $OUT/m.tar.
  grep -h '"kept"\|frames_kept\|"direction"\|joins' res/*.json | head -60; ls -la $OUT
fi
