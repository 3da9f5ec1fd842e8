#!/bin/bash
# (kept as run: .gpu/h25/stage.sh N, carried with the wheels, the init VAEs v128/t1/t2/vaeA/vaeB and bench/wan_vae_step.py as .gpu/h25/vae_speed.py)
# usage: bash .gpu/h25/stage.sh N   (4 GPUs; models under /tmp/w; logs to $OUT)
# 1: G0 VAE step timing | G1 vaeA+ batch 128 | G2 vaeA+ batch 256 | G3 fresh batch 128; then the ceiling of each on its GPU
export PYTHONUNBUFFERED=1
START=$(date +%s)
[ -d /tmp/site/mora ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/h25/*.whl
export PYTHONPATH=/tmp/site:$PWD
W=/tmp/w; mkdir -p $W $OUT/logs; S=$1; L=$OUT/logs
nvidia-smi --query-gpu=index,name,memory.total --format=csv > $L/gpu.txt
run() { gpu=$1; shift; log=$1; shift; CUDA_VISIBLE_DEVICES=$gpu python3 -P -m "$@" --steps 1000000 --workers 14 > $L/$log.log 2>&1; echo "$log rc=$? at $(( $(date +%s) - START )) s" >> $L/rc.txt; }
q() { gpu=$1; shift; log=$1; shift; CUDA_VISIBLE_DEVICES=$gpu timeout $1 python3 -P "${@:2}" > $L/$log.log 2>&1; echo "$log rc=$? at $(( $(date +%s) - START )) s" >> $L/rc.txt; }
ceil() { q $1 ceil_$2 $3 bench/world_video_quality.py --only vae --vae $W/$2 --n 100 --device cuda --json $OUT/ceil_$2.json --strips $OUT/strips_$2; }
if [ "$S" = 1 ]; then
  q 0 vae_speed 400 .gpu/h25/vae_speed.py $OUT/vae_speed.json &
  ( run 1 v128 training.world_video vae --init .gpu/h25/vaeA --out $W/v128 --max-minutes 7.4 --batch 128 --lr 5e-4; ceil 1 v128 100 ) &
  ( run 2 v256 training.world_video vae --init .gpu/h25/vaeA --out $W/v256 --max-minutes 7.4 --batch 256 --lr 5e-4
    grep -q OutOfMemory $L/v256.log && run 2 v256 training.world_video vae --init .gpu/h25/vaeA --out $W/v256 --max-minutes 6.5 --batch 96 --lr 3e-4
    ceil 2 v256 100 ) &
  ( run 3 vnew training.world_video vae --out $W/vnew --max-minutes 7.4 --batch 128 --lr 1e-3; ceil 3 vnew 100 ) &
  wait; cd $W && tar cf - v128 v256 vnew | split -b 15M - $OUT/m$S.tar.
elif [ "$S" = 2 ]; then
  ( run 0 t1 training.world_video vae --temporal 1 --out $W/t1 --max-minutes 7.3 --batch 64 --lr 1e-3
    grep -q OutOfMemory $L/t1.log && run 0 t1 training.world_video vae --temporal 1 --out $W/t1 --max-minutes 6.3 --batch 32 --lr 1e-3
    ceil 0 t1 100 ) &
  ( run 1 t2 training.world_video vae --init .gpu/h25/vaeB --out $W/t2 --max-minutes 7.3 --batch 96 --lr 5e-4
    grep -q OutOfMemory $L/t2.log && run 1 t2 training.world_video vae --init .gpu/h25/vaeB --out $W/t2 --max-minutes 6.3 --batch 48 --lr 5e-4
    ceil 1 t2 100 ) &
  ( export MORA_MODELS_DIR=/tmp/mm/models; mkdir -p /tmp/mm/models
    python3 -P -c "from mora.nodes.zoo import build; from pathlib import Path; build('random', 'wan_i2v_1_3b', Path('/tmp/mm/models'))" > $L/build-wan.log 2>&1
    echo "built at $(( $(date +%s) - START )) s" >> $L/rc.txt
    GPUS="2 3" LIMIT=$(( 540 - ($(date +%s) - START) )) bash .gpu/h25s/speed.sh 4 > $L/speed4.log 2>&1 ) &
  wait; cd $W && tar cf - t1 t2 | split -b 15M - $OUT/m$S.tar.
elif [ "$S" = 3 ]; then   # single frames first (--image-share), then clips
  M=6.6
  ( run 0 i1 training.world_video vae --temporal 1 --image-share 0.6 --out $W/i1 --max-minutes $M --batch 96 --lr 1e-3
    grep -q OutOfMemory $L/i1.log && run 0 i1 training.world_video vae --temporal 1 --image-share 0.6 --out $W/i1 --max-minutes 5.6 --batch 48 --lr 1e-3
    ceil 0 i1 60 ) &
  ( run 1 i4 training.world_video vae --init .gpu/h25/v128 --image-share 0.5 --out $W/i4 --max-minutes $M --batch 128 --lr 5e-4; ceil 1 i4 60 ) &
  ( run 2 i2 training.world_video vae --init .gpu/h25/t2 --image-share 0.5 --out $W/i2 --max-minutes $M --batch 96 --lr 5e-4; ceil 2 i2 60 ) &
  ( run 3 i1b training.world_video vae --init .gpu/h25/t1 --image-share 0.5 --out $W/i1b --max-minutes $M --batch 64 --lr 5e-4; ceil 3 i1b 60 ) &
  wait; cd $W && tar cf - i1 i4 i2 i1b | split -b 15M - $OUT/m$S.tar.
fi
cat $L/rc.txt
for f in $L/*.log; do echo "== $f"; grep -v "^{\|float32\|shards\|Loading\|Warning\|warn" $f | tail -n 3 | cut -c1-400; grep "^{" $f | tail -n 1 | cut -c1-600; done
grep -h '"kept"\|frames_kept' $OUT/ceil_*.json
cd $OUT && tar cf r$S.tar --exclude="m$S.tar.*" --exclude="r$S.tar" . && ls | grep -v "^m$S.tar\|^r$S.tar" | xargs rm -rf
ls -la $OUT
