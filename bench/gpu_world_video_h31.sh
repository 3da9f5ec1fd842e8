#!/bin/bash
# Issue 16, ninth runs (2026-11-27; bench/README.md "Ninth runs"): on nvidia-h100-x4, the world's wheels in .gpu/h30,
# the shipped VAE's latent space (.gpu/h30w/dec: the eighth runs' VAE and decoder, nodes/world/weights/wan_i2v/vae);
# everything under /tmp/w. Carry .gpu/h30 and .gpu/h30w/dec.
#   bash bench/gpu_world_video_h31.sh start   # call 1: starts the whole plan detached (setsid), then waits
#   bash bench/gpu_world_video_h31.sh wait N  # later calls: wait until N s after the start, or the plan's end
#   bash bench/gpu_world_video_h31.sh collect # last call: logs, results and the trained folders into $OUT
# The plan, every model from scratch, --weigh-things, 20 minutes (compile time included), one GPU each:
#   I2V 192 x 8 blocks compiled (GPU 0) and not (GPU 1); FLF2V 160 x 6 compiled (GPU 2) and not (GPU 3). Their sizes
#   fit the 40 MB once the two pipelines share the VAE's file. A compiled run that fails trains uncompiled for the
#   minutes left. Then the quality bench (100 held-out scenes a task, guidance 2, the preset's) on each.
# On 2026-11-27 the x4 machine went back between calls at 500 s (the plan died with it; the step counts then are in
# bench/README.md); what device time was left ran `start1` on nvidia-h100-x1: the two compiled runs side by side on
# the one GPU (20 minutes each, sharing it), then the same quality bench on both.
set -u
S=$1; W=/tmp/w; L=$W/logs; VAE=.gpu/h30w/dec
if [ "$S" = start ] || [ "$S" = start1 ]; then
  P=plan; [ "$S" = start1 ] && P=plan1
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/h30/*.whl
  mkdir -p $L && date +%s > $W/start && nvidia-smi --query-gpu=index,name,memory.total --format=csv > $L/gpu.txt
  setsid nohup bash bench/gpu_world_video_h31.sh $P > $L/plan.log 2>&1 < /dev/null &
  S=wait; set -- wait ${2:-560}
fi
if [ "$S" = plan ] || [ "$S" = plan1 ]; then
  export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site:$PWD
  START=$(cat $W/start); SHIP=nodes/world/weights; M=${M:-20}
  t() { echo $(( $(date +%s) - START )); }
  run() { gpu=$1; log=$2; shift 2; CUDA_VISIBLE_DEVICES=$gpu python3 -P -m training.world_video "$@" --steps 1000000 \
            --workers 14 --weigh-things --batch 128 > $L/$log.log 2>&1; rc=$?; echo "$log rc=$rc at $(t) s" >> $L/rc.txt
          return $rc; }
  left() { python3 -c "print(round($M - ($(t) - 60) / 60, 1))"; }  # the minutes a failed compiled run leaves
  q() { gpu=$1; log=$2; lim=$3; shift 3; CUDA_VISIBLE_DEVICES=$gpu timeout $lim python3 -P bench/world_video_quality.py \
          --n 100 --device cuda --guidance 2 --json $W/res/$log.json --strips $W/res/s_$log "$@" > $L/$log.log 2>&1
        echo "$log rc=$? at $(t) s" >> $L/rc.txt; }
  mkdir -p $W/res
  I="--width 192 --layers 8 --lr 6e-4"; F="--width 160 --layers 6 --lr 7e-4"
  if [ "$S" = plan1 ]; then
    run 0 i2vc i2v --vae $VAE --out $W/i2vc --max-minutes $M $I --compile &
    run 0 flfc flf --vae $VAE --out $W/flfc --max-minutes $M $F --compile &
    wait
    mkdir -p $W/setc && cp -r $W/i2vc $W/setc/wan_i2v && cp -r $W/flfc $W/setc/wan_flf
    q 0 q_i2vc 420 --weights $W/setc --only image_to_video --only text_to_video --keyframes $SHIP/sd &
    q 0 q_conc 420 --weights $W/setc --only connect &
    wait
    echo "plan done at $(t) s" >> $L/rc.txt
    exit 0
  fi
  run 0 i2vc i2v --vae $VAE --out $W/i2vc --max-minutes $M $I --compile || \
    run 0 i2vc i2v --vae $VAE --out $W/i2vc --max-minutes $(left) $I &
  run 1 i2vu i2v --vae $VAE --out $W/i2vu --max-minutes $M $I &
  run 2 flfc flf --vae $VAE --out $W/flfc --max-minutes $M $F --compile || \
    run 2 flfc flf --vae $VAE --out $W/flfc --max-minutes $(left) $F &
  run 3 flfu flf --vae $VAE --out $W/flfu --max-minutes $M $F &
  wait
  mk() { mkdir -p $W/$1 && cp -r $W/$2 $W/$1/wan_i2v && cp -r $W/$3 $W/$1/wan_flf; }
  mk setc i2vc flfc; mk setu i2vu flfu
  q 0 q_i2vc 420 --weights $W/setc --only image_to_video --only text_to_video --keyframes $SHIP/sd &
  q 1 q_i2vu 420 --weights $W/setu --only image_to_video --only text_to_video --keyframes $SHIP/sd &
  q 2 q_conc 420 --weights $W/setc --only connect &
  q 3 q_conu 420 --weights $W/setu --only connect &
  wait
  echo "plan done at $(t) s" >> $L/rc.txt
  exit 0
fi
if [ "$S" = wait ]; then  # the same folders as the eighth runs': their script waits and reports
  bash bench/gpu_world_video_h30.sh wait $2
fi
if [ "$S" = collect ]; then
  cd $W && tar cf - logs res | gzip > $OUT/r.tgz
  tar cf - $(ls -d i2vc i2vu flfc flfu 2>/dev/null) | split -b 15M - $OUT/m.tar.
  grep -h '"kept"\|frames_kept\|"direction"\|joins' res/*.json | head -60; ls -la $OUT
fi
