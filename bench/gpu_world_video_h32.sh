#!/bin/bash
# Issue 16, ninth runs, staged (2026-11-27; bench/README.md "Ninth runs"): the plan of gpu_world_video_h31.sh twice
# lost its machine between calls, so each call here is whole: it trains (or evaluates) inside one call and returns
# what it made in $OUT. On nvidia-h100-x1, with .gpu/h30 (wheels) and .gpu/h30w/dec (the shipped VAE) carried.
#   bash bench/gpu_world_video_h32.sh a        # I2V 192 x 8, --weigh-things, compiled, 8.5 minutes from scratch
#   bash bench/gpu_world_video_h32.sh b INIT   # 8.5 minutes more from INIT (stage a's folder, VAE added back), seed 1
#   bash bench/gpu_world_video_h32.sh q INIT   # the quality bench on INIT as wan_i2v: image_to_video, text_to_video
set -u
S=$1; W=/tmp/w; VAE=.gpu/h30w/dec; mkdir -p $W $OUT/res
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/h30/*.whl
export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site:$PWD
nvidia-smi --query-gpu=name --format=csv,noheader > $OUT/gpu.txt
full() { rm -rf $W/in && cp -r $1 $W/in && rm -rf $W/in/vae && cp -r $VAE $W/in/vae; }  # a stage's folder + the VAE
train() { python3 -P -m training.world_video i2v --vae $VAE --out $W/i2v --max-minutes 8.5 --steps 1000000 \
            --workers 14 --weigh-things --batch 128 --compile "$@" > $OUT/train_$S.log 2>&1
          echo "rc=$?" >> $OUT/train_$S.log
          cd $W && tar cf - --exclude=i2v/vae i2v | split -b 15M - $OUT/i2v.tar.; }
if [ "$S" = a ]; then train --width 192 --layers 8 --lr 6e-4; fi
if [ "$S" = b ]; then full $2; train --init $W/in --lr 3e-4 --seed 1; fi
if [ "$S" = q ]; then
  full $2; mkdir -p $W/set && rm -rf $W/set/wan_i2v && mv $W/in $W/set/wan_i2v
  timeout 400 python3 -P bench/world_video_quality.py --n 100 --device cuda --guidance 2 --weights $W/set \
    --only image_to_video --only text_to_video --keyframes nodes/world/weights/sd --json $OUT/res/q.json \
    --strips $OUT/res/s > $OUT/q.log 2>&1; echo "rc=$?" >> $OUT/q.log; tail -3 $OUT/q.log
fi
grep "^{" $OUT/train_$S.log 2>/dev/null | tail -2; tail -1 $OUT/train_$S.log 2>/dev/null; ls -la $OUT
