#!/bin/bash
# The GPU call behind bench/README.md's speed section: build the random models, then the speed stages, each process within what is left of $LIMIT s.
set -u
START=$(date +%s); LIMIT=${LIMIT:-570}
left() { echo $(( LIMIT - ($(date +%s) - START) )); }
export PYTHONUNBUFFERED=1 MORA_MODELS_DIR=/tmp/mm/models
G=${G:-bench}   # where gpu_speed.py is (the device call used a copy in .gpu/h14)
mkdir -p /tmp/mm/models $OUT/logs
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $OUT/logs/gpu.txt
for m in svd_xt sd15 wan_i2v_1_3b; do
  ( t0=$(date +%s); python3 -P -c "from mora.nodes.zoo import build; from pathlib import Path; build('random', '$m', Path('/tmp/mm/models'))" > $OUT/logs/build-$m.log 2>&1; echo "$m built in $(( $(date +%s) - t0 )) s rc=$?" >> $OUT/logs/builds.txt ) &
  eval "pid_$m=\$!"
done
wait $pid_svd_xt $pid_sd15
echo "svd+sd15 ready at $(( $(date +%s) - START )) s"
for stages in ${STAGES:-svd,t2v again wan}; do
  [ "$stages" = wan ] && wait $pid_wan_i2v_1_3b
  L=$(left); [ $L -lt 20 ] && { echo "no time for $stages"; continue; }
  echo "== $stages (at $(( $(date +%s) - START )) s, $L s left)"
  timeout $L python3 $G/gpu_speed.py --stages $stages --reps 5 ${EXTRA:-} > $OUT/logs/$stages.log 2>&1; echo "rc=$?"
  grep -v Warning $OUT/logs/$stages.log | tail -4 | cut -c1-600
done
cat $OUT/logs/builds.txt
du -sh /tmp/mm/compile 2>/dev/null
cd $OUT && tar czf logs.tgz logs && rm -rf logs
