#!/bin/bash
# Issue 16, sixth runs (2026-11-26; bench/README.md "Sixth runs"): bash bench/gpu_world_video_h27.sh 1|2|3 on nvidia-h100-x2
# (three calls on one warm machine; the world's wheels in .gpu/h27 as bench/gpu_world_video_h25.sh; models under /tmp/w,
# and each call's models come back in $OUT). New since the fifth runs: a per-frame VAE's convolutions run as 2-D ones
# (training.world_video.frame_convs) and the given frames' latents come from the clip's own: far cheaper steps.
# 1: two per-frame VAEs from scratch, the better ceiling picks; I2V (GPU 0) and FLF2V (GPU 1) from scratch on it
# 2: both go on (--init); the VAE's decoder goes on beside FLF2V (decoder only: the latents stay valid)
# 3: the last minutes of each, then the quality bench on GPU (ran as `END=475 M=3.2 bash bench/gpu_world_video_h27.sh 3`)
export PYTHONUNBUFFERED=1
START=$(date +%s)
[ -d /tmp/site/mora ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/h27/*.whl
export PYTHONPATH=/tmp/site:$PWD
W=/tmp/w; mkdir -p $W $OUT/logs; S=$1; L=$OUT/logs; END=${END:-500}
nvidia-smi --query-gpu=index,name,memory.total --format=csv > $L/gpu.txt
t() { echo $(( $(date +%s) - START )); }
left() { python3 -c "print(round(($END - $(t)) / 60 - ${1:-0.5}, 2))"; }
run() { gpu=$1; shift; log=$1; shift; CUDA_VISIBLE_DEVICES=$gpu python3 -P -m "$@" --steps 1000000 > $L/$log.log 2>&1; echo "$log rc=$? at $(t) s" >> $L/rc.txt; }
q() { gpu=$1; shift; log=$1; shift; CUDA_VISIBLE_DEVICES=$gpu timeout $1 python3 -P "${@:2}" > $L/$log.log 2>&1; echo "$log rc=$? at $(t) s" >> $L/rc.txt; }
ceil() { q $1 ceil_$2 $3 bench/world_video_quality.py --only vae --vae ${4:-$W/$2} --n 100 --device cuda --json $OUT/ceil_$2.json --strips $OUT/strips_$2; }
vae() { gpu=$1; name=$2; b=$3; lr=$4; m=$5
  run $gpu $name training.world_video vae --temporal 1 --image-share 1 --out $W/$name --max-minutes $m --batch $b --lr $lr --workers 14
  ceil $gpu $name 60; }
if [ "$S" = 1 ]; then
  vae 0 vA 16 1e-3 3.6 & vae 1 vB 32 1e-3 3.6 &
  wait
  BEST=$(python3 -c "
import json, pathlib
r = {p.stem[5:]: json.loads(p.read_text()) for p in pathlib.Path('$OUT').glob('ceil_*.json')}
print(max(r, key=lambda k: (r[k]['vae']['kept'], r[k]['vae']['frames_kept'])))")
  echo "best $BEST at $(t) s" >> $L/rc.txt; cp -r $W/$BEST $W/vae
  M=$(left); echo "transformers get $M min" >> $L/rc.txt
  run 0 i2v1 training.world_video i2v --vae $W/vae --out $W/i2v1 --max-minutes $M --batch 128 --lr 8e-4 --workers 14 &
  run 1 flf1 training.world_video flf --vae $W/vae --out $W/flf1 --max-minutes $M --batch 128 --lr 8e-4 --workers 14 &
  wait
  cd $W && tar cf - vA vB i2v1 flf1 | split -b 15M - $OUT/m$S.tar.
elif [ "$S" = 2 ]; then
  M=$(left)
  run 0 i2v2 training.world_video i2v --vae $W/vae --init $W/i2v1 --out $W/i2v2 --max-minutes $M --batch 128 --lr 8e-4 --workers 14 &
  run 1 flf2 training.world_video flf --vae $W/vae --init $W/flf1 --out $W/flf2 --max-minutes $M --batch 128 --lr 8e-4 --workers 10 &
  run 1 dec2 training.world_video vae --init $W/vae --decoder-only --image-share 1 --out $W/dec2 --max-minutes $M --batch 16 --lr 5e-4 --workers 6 &
  wait
  ceil 0 dec2 60 &
  wait
  cd $W && tar cf - i2v2 flf2 dec2 | split -b 15M - $OUT/m$S.tar.
elif [ "$S" = 3 ]; then
  M=${M:-3.5}
  run 0 i2v3 training.world_video i2v --vae $W/vae --init $W/i2v2 --out $W/i2v3 --max-minutes $M --batch 128 --lr 5e-4 --workers 14 &
  run 1 flf3 training.world_video flf --vae $W/vae --init $W/flf2 --out $W/flf3 --max-minutes $M --batch 128 --lr 5e-4 --workers 10 &
  run 1 dec3 training.world_video vae --init $W/dec2 --decoder-only --image-share 1 --out $W/dec3 --max-minutes $M --batch 16 --lr 3e-4 --workers 6 &
  wait
  mkdir -p $W/f && cp -r $W/i2v3 $W/f/wan_i2v && cp -r $W/flf3 $W/f/wan_flf && for p in wan_i2v wan_flf; do rm -rf $W/f/$p/vae && cp -r $W/dec3 $W/f/$p/vae; done
  B=$(( END - $(t) - 15 ))
  ( q 0 q_i2v $(( B * 62 / 100 )) bench/world_video_quality.py --weights $W/f --n 100 --device cuda --only vae --only image_to_video --only text_to_video --keyframes nodes/world/weights/sd --json $OUT/q_i2v.json --strips $OUT/s_i2v
    q 0 q_g2 $(( END - $(t) - 10 )) bench/world_video_quality.py --weights $W/f --n 100 --device cuda --only image_to_video --guidance 2 --json $OUT/q_g2.json ) &
  ( q 1 q_con $(( B * 62 / 100 )) bench/world_video_quality.py --weights $W/f --n 100 --device cuda --only connect --json $OUT/q_con.json --strips $OUT/s_con
    q 1 q_ext $(( END - $(t) - 10 )) bench/world_video_quality.py --weights $W/f --n 25 --device cuda --only extend --json $OUT/q_ext.json --strips $OUT/s_ext ) &
  wait
  cd $W && tar cf - f | split -b 15M - $OUT/m$S.tar.
fi
cat $L/rc.txt
for f in $L/*.log; do echo "== $f"; grep -v "^{\|float32\|shards\|Loading\|Warning\|warn" $f | tail -n 3 | cut -c1-400; grep "^{" $f | tail -n 1 | cut -c1-600; done
grep -h '"kept"\|frames_kept' $OUT/ceil_*.json
cd $OUT && tar cf r$S.tar --exclude="m$S.tar.*" --exclude="r$S.tar" . && ls | grep -v "^m$S.tar\|^r$S.tar" | xargs rm -rf
ls -la $OUT
