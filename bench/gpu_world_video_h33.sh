#!/bin/bash
# Issue 16, tenth runs (2026-11-27/28; bench/README.md "Tenth runs"): the ninth runs' recipe (gpu_world_video_h32.sh:
# --weigh-things, compiled, two whole 8.5-minute calls) for the FLF2V, then connect and extend with the new pair.
# On nvidia-h100-x1, with .gpu/h30 (the wheels) carried; the VAE is the shipped one (nodes/world/weights/wan_i2v/vae).
#   bash bench/gpu_world_video_h33.sh a        # FLF2V 160 x 6, --weigh-things, compiled, 8.5 minutes from scratch
#   bash bench/gpu_world_video_h33.sh b INIT   # 8.5 minutes more from INIT (stage a's folder, the VAE added back), seed 1
#   bash bench/gpu_world_video_h33.sh c INIT   # the last 3 of the model's 20 minutes from INIT (stage b's), eager (compiling
#                                              # takes 50 s of 3 minutes), seed 2; then connect on it at 20 and 14 steps
#   bash bench/gpu_world_video_h33.sh i        # the shipped I2V's last 3 of its 20 minutes (eager, seed 2), then
#                                              # image_to_video and text_to_video at 14 steps on it and on the shipped one
#   bash bench/gpu_world_video_h33.sh q INIT   # connect, 100 held-out scenes, with INIT as wan_flf and with the shipped
#                                              # one (the baseline, same call); then extend x8 on 20 with the shipped I2V
set -u
S=$1; W=/tmp/w; SHIP=nodes/world/weights; VAE=$SHIP/wan_i2v/vae; mkdir -p $W $OUT/res
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/h30/*.whl
# the package build maps engine/, nodes/, conf/, graphs/ into `mora`; here links do (no wheel of 60 MB of weights)
mkdir -p /tmp/mp/mora && ln -sf $PWD/mora/__init__.py /tmp/mp/mora/ && for d in engine nodes conf graphs; do
  ln -sfn $PWD/$d /tmp/mp/mora/$d; done
export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/mp:/tmp/site:$PWD
nvidia-smi --query-gpu=name --format=csv,noheader > $OUT/gpu.txt
full() { rm -rf $2 && cp -r $1 $2 && rm -rf $2/vae && cp -r $VAE $2/vae; }  # a stage's folder + the VAE
train() { m=$1; shift; python3 -P -m training.world_video $m --vae $VAE --out $W/$m --steps 1000000 \
            --workers 14 --weigh-things --batch 128 "$@" > $OUT/train_$S.log 2>&1
          echo "rc=$?" >> $OUT/train_$S.log
          (cd $W && tar cf - --exclude=$m/vae $m | split -b 15M - $OUT/$m.tar.); }
q() { timeout $1 python3 -P bench/world_video_quality.py --device cuda --guidance 2 --weights $2 --json $OUT/res/$3.json \
        --strips $OUT/res/s_$3 "${@:4}" > $OUT/$3.log 2>&1; echo "rc=$?" >> $OUT/$3.log; tail -4 $OUT/$3.log; }
if [ "$S" = a ]; then train flf --max-minutes 8.5 --compile --width 160 --layers 6 --lr 7e-4; fi
if [ "$S" = b ]; then full $2 $W/in; train flf --max-minutes 8.5 --compile --init $W/in --lr 3.5e-4 --seed 1; fi
if [ "$S" = c ]; then
  full $2 $W/in; train flf --max-minutes 3 --init $W/in --lr 2e-4 --seed 2
  mkdir -p $W/new && full $SHIP/wan_i2v $W/new/wan_i2v && full $W/flf $W/new/wan_flf
  q 170 $W/new connect20 --n 100 --only connect
  q 150 $W/new connect14 --n 100 --only connect --steps 14
fi
if [ "$S" = i ]; then
  full $SHIP/wan_i2v $W/in; train i2v --max-minutes 3 --init $W/in --lr 1.5e-4 --seed 2
  mkdir -p $W/new && full $W/i2v $W/new/wan_i2v
  for m in new:$W/new ship:$SHIP; do
    q 170 ${m#*:} i2v_${m%%:*} --n 100 --only image_to_video --only text_to_video --steps 14 --keyframes $SHIP/sd; done
fi
if [ "$S" = e ]; then  # extend x8 on 20 scenes with I2V $2 at 14 steps, then connect with the shipped FLF2V
  mkdir -p $W/new && full $2 $W/new/wan_i2v
  q 150 $W/new extend14 --n 20 --only extend --steps 14
  q 120 $SHIP connect14_shipped --n 100 --only connect --steps 14
fi
if [ "$S" = q ]; then
  mkdir -p $W/new && full $SHIP/wan_i2v $W/new/wan_i2v && full $2 $W/new/wan_flf
  q 170 $W/new connect_new --n 100 --only connect
  q 120 $SHIP connect_shipped --n 100 --only connect
  q 170 $W/new extend --n 20 --only extend
fi
grep "^{" $OUT/train_$S.log 2>/dev/null | tail -2; tail -1 $OUT/train_$S.log 2>/dev/null; ls -la $OUT
