#!/bin/bash
# Issue 16, twelfth runs (2026-11-28; bench/README.md "Twelfth runs"): heads of 64 and 96 channels instead of 32.
# Wan's rotary embedding gives each spatial axis a third of a head: heads of 32 leave an axis 5 frequencies, of which
# only two vary across the world's 8 x 8 tokens, and the shipped FLF2V joins every gap under 16 px and none over 32.
# Four models at once, one a GPU, on nvidia-h100-x4 with .gpu/h30 (the wheels) carried; each the tenth runs' recipe
# (--weigh-things, 8.5 + 8.5 minutes compiled, 3 eager), on the shipped VAE and the shipped I2V's frozen encoders:
#   i64 / f64: I2V 192 x 8 / FLF2V 192 x 7 in heads of 64;  i96 / f96: the same in heads of 96.
#   bash bench/gpu_world_video_h35.sh a   # 8.5 minutes from scratch, lr 6e-4
#   bash bench/gpu_world_video_h35.sh b   # 8.5 minutes more from stage a's folders, lr 3e-4, seed 1
#   bash bench/gpu_world_video_h35.sh c   # the last 3 minutes (eager), lr 1.5e-4, seed 2; then on 100 held-out scenes
#                                         # at the preset's 14 steps: image_to_video, text_to_video and extend x8 (20)
#                                         # for each I2V, connect for each FLF2V, all four GPUs at once
#   bash bench/gpu_world_video_h35.sh q   # stage c's measures on stage b's folders, untrained further (/tmp/w/b: from
#                                         # the warm machine, or unpacked from stage b's tars when it went back)
# A stage's folders stay on the warm machine (/tmp/w) for the next call and come back in $OUT as tars.
# What ran, 2026-11-28: a (04:34-04:44 UTC), b on the same warm machine (04:44-04:53); the machine went back before c,
# so c did not run: q ran on a fresh machine (05:06-05:09) with stage b's tars carried (.gpu/h35b) and unpacked first:
#   mkdir -p /tmp/w/b && for t in .gpu/h35b/*.tar.aa; do tar xf $t -C /tmp/w/b; done && bash ... q
# (nodes/world/weights/sd was left behind for the carry's size, so text_to_video was measured on the CPU instead).
set -u
S=$1; SHIP=nodes/world/weights; LIVE=/tmp/w; mkdir -p $OUT/res
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/h30/*.whl
mkdir -p /tmp/mp/mora && ln -sf $PWD/mora/__init__.py /tmp/mp/mora/ && for d in engine nodes conf graphs; do
  ln -sfn $PWD/$d /tmp/mp/mora/$d; done
export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/mp:/tmp/site:$PWD
nvidia-smi --query-gpu=name --format=csv,noheader > $OUT/gpu.txt
RUNS="i64:i2v:64:8:0 f64:flf:64:7:1 i96:i2v:96:8:2 f96:flf:96:7:3"
full() {  # a stage's transformer, the shipped VAE and encoders: a whole pipeline folder
  rm -rf $2 && cp -rL $SHIP/wan_i2v $2 && rm -rf $2/transformer $2/training_log*.json &&
  cp -r $1/transformer $2/transformer; }
train() {  # NAME MODEL HEAD LAYERS GPU STAGE-OPTIONS...
  n=$1 m=$2 h=$3 l=$4 g=$5; shift 5
  CUDA_VISIBLE_DEVICES=$g python3 -P -m training.world_video $m --vae $SHIP/wan_i2v/vae --out /tmp/w/$S/$n \
    --steps 1000000 --workers 14 --weigh-things --batch 128 --frozen-encoders $SHIP/wan_i2v "$@" \
    > $OUT/train_${S}_$n.log 2>&1
  echo "rc=$?" >> $OUT/train_${S}_$n.log
  (cd /tmp/w/$S && tar cf - $n/transformer $n/training_log.json | split -b 15M - $OUT/${S}_$n.tar.); }
for r in $RUNS; do IFS=: read n m h l g <<< "$r"
  if [ "$S" = q ]; then continue
  elif [ "$S" = a ]; then train $n $m $h $l $g --max-minutes 8.5 --compile --width 192 --layers $l --head-dim $h \
                          --lr 6e-4 &
  else full $LIVE/$([ "$S" = b ] && echo a || echo b)/$n /tmp/in_$n
    if [ "$S" = b ]; then train $n $m $h $l $g --max-minutes 8.5 --compile --init /tmp/in_$n --lr 3e-4 --seed 1 &
    else train $n $m $h $l $g --max-minutes 3 --init /tmp/in_$n --lr 1.5e-4 --seed 2 & fi
  fi
done; wait
q() {  # GPU NAME WEIGHTS BENCH-OPTIONS...
  CUDA_VISIBLE_DEVICES=$1 timeout 300 python3 -P bench/world_video_quality.py --device cuda --guidance 2 --steps 14 \
    --weights $3 --json $OUT/res/$2.json --strips $OUT/res/s_$2 "${@:4}" > $OUT/q_$2.log 2>&1
  echo "rc=$?" >> $OUT/q_$2.log; }
if [ "$S" = c ] || [ "$S" = q ]; then
  for r in $RUNS; do IFS=: read n m h l g <<< "$r"
    w=/tmp/q/$n; mkdir -p $w; full /tmp/w/$([ "$S" = c ] && echo c || echo b)/$n $w/$([ $m = i2v ] && echo wan_i2v || echo wan_flf)
    if [ $m = i2v ]; then (q $g $n $w --n 100 --only image_to_video --only text_to_video; \
                           q $g ${n}_extend $w --n 20 --only extend) &
    else q $g $n $w --n 100 --only connect & fi
  done; wait
  for f in $OUT/q_*.log; do echo "== $f"; grep -E '"(direction|kept|joins|monotone|kept_at_end)"|^rc' $f | head -12; done
fi
for f in $OUT/train_${S}_*.log; do echo "== $f"; grep "^{" $f | tail -1; tail -1 $f; done; ls $OUT
