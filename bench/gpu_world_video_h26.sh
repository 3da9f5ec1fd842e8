#!/bin/bash
# Issue 16, fifth runs (2026-11-26; bench/README.md "Fifth runs"): bash bench/gpu_world_video_h26.sh 1|2|3
# 1: four GPUs; 2 and 3: two GPUs. The world's wheels in .gpu/h26 (as bench/gpu_world_video_h25.sh); models under
# /tmp/w (2 needs call 1's i2vf, flf (without their vae) and dec in .gpu/h26m; 3 reads call 2's /tmp/w: a warm machine)
export PYTHONUNBUFFERED=1
START=$(date +%s)
[ -d /tmp/site/mora ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/h26/*.whl
export PYTHONPATH=/tmp/site:$PWD
W=/tmp/w; mkdir -p $W $OUT/logs; S=$1; L=$OUT/logs
nvidia-smi --query-gpu=index,name,memory.total --format=csv > $L/gpu.txt
t() { echo $(( $(date +%s) - START )); }
run() { gpu=$1; shift; log=$1; shift; CUDA_VISIBLE_DEVICES=$gpu python3 -P -m "$@" --steps 1000000 --workers 14 > $L/$log.log 2>&1; echo "$log rc=$? at $(t) s" >> $L/rc.txt; }
q() { gpu=$1; shift; log=$1; shift; CUDA_VISIBLE_DEVICES=$gpu timeout $1 python3 -P "${@:2}" > $L/$log.log 2>&1; echo "$log rc=$? at $(t) s" >> $L/rc.txt; }
ceil() { q $1 ceil_$2 $3 bench/world_video_quality.py --only vae --vae ${4:-$W/$2} --n 100 --device cuda --json $OUT/ceil_$2.json --strips $OUT/strips_$2; }
vae() { gpu=$1; name=$2; b=$3; lr=$4; m=$5
  run $gpu $name training.world_video vae --temporal 1 --image-share 1 --out $W/$name --max-minutes $m --batch $b --lr $lr
  grep -q OutOfMemory $L/$name.log && run $gpu $name training.world_video vae --temporal 1 --image-share 1 --out $W/$name --max-minutes $(python3 -c "print($m - 0.7)") --batch $(( b / 2 )) --lr $lr
  ceil $gpu $name 70; }
if [ "$S" = 1 ]; then   # four per-frame VAEs, the best one's ceiling picks; then I2V x2, FLF, decoder on it
  vae 0 pA 32 1e-3 4.7 & vae 1 pB 64 2e-3 4.7 & vae 2 pC 16 1e-3 4.7 & vae 3 pD 32 2e-3 4.7 &
  wait
  BEST=$(python3 -c "
import json, pathlib
r = {p.stem[5:]: json.loads(p.read_text()) for p in pathlib.Path('$OUT').glob('ceil_*.json')}
print(max(r, key=lambda k: (r[k]['vae']['kept'], r[k]['vae']['frames_kept'])))")
  echo "best $BEST at $(t) s" >> $L/rc.txt
  M=$(python3 -c "print(round((545 - $(t)) / 60 - 0.45, 2))")
  echo "transformers get $M min" >> $L/rc.txt
  run 0 i2v training.world_video i2v --vae $W/$BEST --out $W/i2v --max-minutes $M --batch 128 --lr 3e-4 &
  run 3 i2vf training.world_video i2v --vae $W/$BEST --out $W/i2vf --max-minutes $M --batch 128 --lr 8e-4 &
  run 1 flf training.world_video flf --vae $W/$BEST --out $W/flf --max-minutes $M --batch 128 --lr 3e-4 &
  run 2 dec training.world_video vae --init $W/$BEST --decoder-only --image-share 1 --out $W/dec --max-minutes $M --batch 32 --lr 5e-4 &
  wait
  cd $W && tar cf - p? i2v i2vf flf dec | split -b 15M - $OUT/m$S.tar.
elif [ "$S" = 2 ]; then   # I2V, FLF2V on from call 1 on the decoder-trained VAE; the decoder goes on beside FLF
  C=.gpu/h26m; M=${M:-7.9}
  run 0 i2v2 training.world_video i2v --vae $C/dec --init $C/i2vf --out $W/i2v2 --max-minutes $M --batch 128 --lr 8e-4 &
  run 1 flf2 training.world_video flf --vae $C/dec --init $C/flf --out $W/flf2 --max-minutes $M --batch 128 --lr 8e-4 &
  ( ceil 1 dec 60 $C/dec
    run 1 dec2 training.world_video vae --init $C/dec --decoder-only --image-share 1 --out $W/dec2 --max-minutes $(python3 -c "print($M - 0.6)") --batch 16 --lr 5e-4
    ceil 1 dec2 60 $W/dec2 ) &
  wait
  cd $W && tar cf - i2v2 flf2 dec2 | split -b 15M - $OUT/m$S.tar.
elif [ "$S" = 3 ]; then   # the last minutes of each, then the quality bench on GPU
  M=${M:-4.6}
  run 0 i2v3 training.world_video i2v --vae $W/dec2 --init $W/i2v2 --out $W/i2v3 --max-minutes $M --batch 128 --lr 5e-4 &
  run 1 flf3 training.world_video flf --vae $W/dec2 --init $W/flf2 --out $W/flf3 --max-minutes $M --batch 128 --lr 5e-4 &
  run 1 dec3 training.world_video vae --init $W/dec2 --decoder-only --image-share 1 --out $W/dec3 --max-minutes 4.3 --batch 16 --lr 3e-4 &
  wait
  mkdir -p $W/f && cp -r $W/i2v3 $W/f/wan_i2v && cp -r $W/flf3 $W/f/wan_flf && for p in wan_i2v wan_flf; do rm -rf $W/f/$p/vae && cp -r $W/dec3 $W/f/$p/vae; done
  q 0 q_i2v 150 bench/world_video_quality.py --weights $W/f --n 100 --device cuda --only vae --only image_to_video --json $OUT/q_i2v.json --strips $OUT/s_i2v &
  q 1 q_con 150 bench/world_video_quality.py --weights $W/f --n 100 --device cuda --only connect --json $OUT/q_con.json --strips $OUT/s_con &
  wait
  cd $W && tar cf - f | split -b 15M - $OUT/m$S.tar.
fi
cat $L/rc.txt
for f in $L/*.log; do echo "== $f"; grep -v "^{\|float32\|shards\|Loading\|Warning\|warn" $f | tail -n 3 | cut -c1-400; grep "^{" $f | tail -n 1 | cut -c1-600; done
grep -h '"kept"\|frames_kept' $OUT/ceil_*.json
cd $OUT && tar cf r$S.tar --exclude="m$S.tar.*" --exclude="r$S.tar" . && ls | grep -v "^m$S.tar\|^r$S.tar" | xargs rm -rf
ls -la $OUT
