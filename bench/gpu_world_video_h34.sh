#!/bin/bash
# Issue 16, eleventh runs (2026-11-28; bench/README.md "Eleventh runs"): an FLF2V that shares the shipped I2V's text and
# image encoders, frozen (`--frozen-encoders`, as Wan's FLF2V shares Wan's), and spends their 3 MB on a wider, deeper
# transformer: 192 x 7 against 160 x 6. Otherwise the tenth runs' recipe (gpu_world_video_h33.sh: --weigh-things,
# 8.5 + 8.5 minutes compiled, 3 eager). On nvidia-h100-x1, with .gpu/h30 (the wheels) carried.
#   bash bench/gpu_world_video_h34.sh a        # 8.5 minutes from scratch, lr 6e-4
#   bash bench/gpu_world_video_h34.sh b INIT   # 8.5 minutes more from INIT (stage a's folder), lr 3e-4, seed 1
#   bash bench/gpu_world_video_h34.sh c INIT   # the last 3 minutes (eager), lr 1.5e-4, seed 2; then connect on 100
#                                              # held-out scenes at the preset's 14 steps, and the shipped FLF2V's
set -u
S=$1; W=/tmp/w; SHIP=nodes/world/weights; VAE=$SHIP/wan_i2v/vae; mkdir -p $W $OUT/res
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/h30/*.whl
mkdir -p /tmp/mp/mora && ln -sf $PWD/mora/__init__.py /tmp/mp/mora/ && for d in engine nodes conf graphs; do
  ln -sfn $PWD/$d /tmp/mp/mora/$d; done
export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/mp:/tmp/site:$PWD
nvidia-smi --query-gpu=name --format=csv,noheader > $OUT/gpu.txt
full() { rm -rf $2 && cp -rL $1 $2 && rm -rf $2/vae && cp -r $VAE $2/vae; }  # a stage's folder + the VAE
train() { m=$1; shift; python3 -P -m training.world_video $m --vae $VAE --out $W/$m --steps 1000000 \
            --workers 14 --weigh-things --batch 128 --frozen-encoders $SHIP/wan_i2v "$@" > $OUT/train_$S.log 2>&1
          echo "rc=$?" >> $OUT/train_$S.log
          (cd $W && tar cf - --exclude=$m/vae $m | split -b 15M - $OUT/$m.tar.); }
q() { timeout $1 python3 -P bench/world_video_quality.py --device cuda --guidance 2 --weights $2 --json $OUT/res/$3.json \
        --strips $OUT/res/s_$3 "${@:4}" > $OUT/$3.log 2>&1; echo "rc=$?" >> $OUT/$3.log; tail -4 $OUT/$3.log; }
if [ "$S" = a ]; then train flf --max-minutes 8.5 --compile --width 192 --layers 7 --lr 6e-4; fi
if [ "$S" = b ]; then full $2 $W/in; train flf --max-minutes 8.5 --compile --init $W/in --lr 3e-4 --seed 1; fi
if [ "$S" = c ]; then
  full $2 $W/in; train flf --max-minutes 3 --init $W/in --lr 1.5e-4 --seed 2
  mkdir -p $W/new && full $SHIP/wan_i2v $W/new/wan_i2v && full $W/flf $W/new/wan_flf
  q 160 $W/new connect14 --n 100 --only connect --steps 14
  q 150 $SHIP connect14_shipped --n 100 --only connect --steps 14
fi
grep "^{" $OUT/train_$S.log 2>/dev/null | tail -2; tail -1 $OUT/train_$S.log 2>/dev/null; ls -la $OUT
