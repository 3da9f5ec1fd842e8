#!/bin/bash
# Issue 16, seventh runs (2026-11-26; bench/README.md "Seventh runs"): bash bench/gpu_world_video_h28.sh 1|2|3 on
# nvidia-h100-x1 (one H100; calls back to back, meant for one warm machine; the world's wheels in .gpu/h28 as
# bench/gpu_world_video_h25.sh; models under /tmp/w, each call's models back in $OUT). Each shipped model goes on from
# its shipped weights (--init) for the minutes its 20 have left: the VAE's decoder 5.4 (14.6 spent), I2V and FLF2V 5.9
# (14.1 spent).
# 1: the decoder alone with --latent-noise (the video models' latents are off by more than the encoder's spread), and
#    I2V, side by side on the GPU; the new decoder's ceiling
# 2: FLF2V; I2V's quality with the shipped and the new decoder (guidance 2: these timed out beside the training, and
#    call 3 measured them)
# 3: the quality bench, every process at once: image_to_video with each decoder and I2V, text_to_video, connect with
#    each decoder, extend (guidance 2, the preset's); its machine was a fresh one, so the trained parts came in the tree
# 4: the SVD-layout model (training.world_svd) from scratch (shipped as nodes/world/weights/svd)
# 5: not run (the device time ran out): the UNet going on, then its quality; stage 4's model was measured by hand
#    instead, with the two world_video_quality.py commands of stage 5 (--weights holding stage 4's svd1 as svd)
export PYTHONUNBUFFERED=1
START=$(date +%s)
[ -d /tmp/site/mora ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/h28/*.whl
export PYTHONPATH=/tmp/site:$PWD
W=/tmp/w; mkdir -p $W $OUT/logs; S=$1; L=$OUT/logs; END=${END:-540}; SHIP=nodes/world/weights
nvidia-smi --query-gpu=index,name,memory.total --format=csv > $L/gpu.txt
t() { echo $(( $(date +%s) - START )); }
run() { log=$1; shift; python3 -P -m "$@" --steps 1000000 > $L/$log.log 2>&1; echo "$log rc=$? at $(t) s" >> $L/rc.txt; }
q() { log=$1; shift; timeout $1 python3 -P "${@:2}" > $L/$log.log 2>&1; echo "$log rc=$? at $(t) s" >> $L/rc.txt; }
pair() { mkdir -p $1 && cp -r $2 $1/wan_i2v && cp -r $3 $1/wan_flf && for p in wan_i2v wan_flf; do rm -rf $1/$p/vae && cp -r $4 $1/$p/vae; done; }
if [ "$S" = 1 ]; then
  run dec training.world_video vae --init $SHIP/wan_i2v/vae --decoder-only --latent-noise ${NOISE:-0.3} --image-share 1 --out $W/dec --max-minutes 5.4 --batch 16 --lr 3e-4 --workers 5 &
  run i2v training.world_video i2v --vae $SHIP/wan_i2v/vae --init $SHIP/wan_i2v --out $W/i2v --max-minutes 5.9 --batch 128 --lr 3e-4 --workers 10 &
  wait
  q ceil_dec 60 bench/world_video_quality.py --only vae --vae $W/dec --n 100 --device cuda --json $OUT/ceil_dec.json --strips $OUT/strips_dec
  cd $W && tar cf - dec i2v | split -b 15M - $OUT/m$S.tar.
elif [ "$S" = 2 ]; then
  run flf training.world_video flf --vae $SHIP/wan_flf/vae --init $SHIP/wan_flf --out $W/flf --max-minutes 5.9 --batch 128 --lr 3e-4 --workers 12 &
  pair $W/newdec $SHIP/wan_i2v $SHIP/wan_flf $W/dec; pair $W/new $W/i2v $SHIP/wan_flf $W/dec; pair $W/newi2v $W/i2v $SHIP/wan_flf $SHIP/wan_i2v/vae
  for k in newi2v new newdec; do q q_$k 100 bench/world_video_quality.py --weights $W/$k --n 100 --device cuda --only image_to_video --guidance 2 --json $OUT/q_$k.json --strips $OUT/s_$k; done
  wait
  cd $W && tar cf - flf | split -b 15M - $OUT/m$S.tar.
elif [ "$S" = 3 ]; then  # inference only, every process at once (small models leave the GPU mostly idle)
  # calls 1-2's machine went back: its models travel in the tree (the trained I2V and FLF2V parts in place of the
  # shipped ones under $SHIP, the new decoder in .gpu/dec, the shipped I2V's parts in .gpu/old_i2v), carried
  mk() { mkdir -p $1; [ -n "$2" ] && cp -r $2 $1/wan_i2v; [ -n "$3" ] && cp -r $3 $1/wan_flf
         for p in wan_i2v wan_flf; do [ -d $1/$p ] && rm -rf $1/$p/vae && cp -r $4 $1/$p/vae; done; }
  mk $W/a .gpu/old_i2v "" .gpu/dec; mk $W/b $SHIP/wan_i2v $SHIP/wan_flf $SHIP/wan_i2v/vae; mk $W/c $SHIP/wan_i2v $SHIP/wan_flf .gpu/dec
  qb() { k=$1; shift; q $k ${LIM:-420} bench/world_video_quality.py --n 100 --device cuda --guidance 2 --json $OUT/$k.json --strips $OUT/s_$k "$@"; }
  qb i2v_old_dec --weights $W/a --only image_to_video &
  qb i2v_new_ship --weights $W/b --only image_to_video --only text_to_video --keyframes $SHIP/sd &
  qb i2v_new_dec --weights $W/c --only image_to_video --only text_to_video --keyframes $SHIP/sd &
  qb con_new_ship --weights $W/b --only connect &
  qb con_new_dec --weights $W/c --only connect &
  qb ext_new_dec --weights $W/c --only extend --n 25 &
  wait
elif [ "$S" = 4 ]; then  # the SVD-layout pair from scratch: its VAE (temporal decoder), then the UNet
  run svd_vae training.world_svd vae --out $W/svd_vae --max-minutes 3 --batch 32 --workers 14
  run svd1 training.world_svd svd --vae $W/svd_vae --out $W/svd1 --max-minutes ${M:-5.6} --batch 128 --workers 14
  cd $W && tar cf - svd_vae svd1 | split -b 15M - $OUT/m$S.tar.
elif [ "$S" = 5 ]; then  # the UNet goes on, then the SVD path's quality (guidance: the agent's own)
  run svd2 training.world_svd svd --vae $W/svd_vae --init $W/svd1 --out $W/svd2 --max-minutes ${M:-7} --batch 128 --workers 14
  mkdir -p $W/fs && cp -r $W/svd2 $W/fs/svd
  q q_svd 150 bench/world_video_quality.py --weights $W/fs --n 100 --device cuda --only svd --json $OUT/q_svd.json --strips $OUT/s_svd &
  q q_extsvd 150 bench/world_video_quality.py --weights $W/fs --n 25 --device cuda --only extend_svd --json $OUT/q_extsvd.json --strips $OUT/s_extsvd &
  wait
  cd $W && tar cf - svd2 | split -b 15M - $OUT/m$S.tar.
fi
cat $L/rc.txt
for f in $L/*.log; do echo "== $f"; grep -v "^{\|float32\|shards\|Loading\|Warning\|warn\|num_frames" $f | tail -n 3 | cut -c1-400; grep "^{" $f | tail -n 1 | cut -c1-600; done
grep -h '"kept"\|frames_kept\|"direction"\|joins' $OUT/*.json
cd $OUT && tar cf r$S.tar --exclude="m$S.tar.*" --exclude="r$S.tar" . && ls | grep -v "^m$S.tar\|^r$S.tar" | xargs rm -rf
ls -la $OUT
