#!/usr/bin/env bash
# Issue 14's sweep target on one GPU: the 4-seed text_to_video sweep (SD 1.5 + SVD-XT sizes, random weights),
# Hydra's basic launcher against the Mora launcher with `speed=fast` on standing workers (`mora-admin workers
# start`), which keep the models loaded and compiled between commands. Carried: .gpu/pe/ess.tar (diffusers, hydra,
# omegaconf, ... wheels) and .gpu/p4 (this project's wheel). From the repository root:
#   bash bench/gpu_standing.sh 1    # install, build the models, start the workers; a first standing sweep (it
#                                   # loads and compiles, filling the compile caches), then a basic one
#   bash bench/gpu_standing.sh 2    # fresh workers (compiled code from the caches of call 1), a warm-up sweep,
#                                   # then basic / standing / basic / standing, alternating
# LAUNCHERS=... overrides the order of each call's measured sweeps.
set -u
OUT=${OUT:-/tmp/o}; K=/tmp/kit; P=/tmp/pk; M=/tmp/mm/models; W=/tmp/mora-bench/workers
R=$PWD
mkdir -p "$K" "$OUT" "$P"
export PYTHONPATH=$P MORA_MODELS_DIR=$M PYTHONUNBUFFERED=1 OUT
say() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$OUT/standing.log"; }
if [ ! -f "$P/.ess" ]; then
  cp .gpu/pe/ess.tar "$K"/ && tar xf "$K/ess.tar" -C "$K" \
    && pip install -q --no-deps --no-index --target "$P" "$K"/ess/*.whl > "$OUT/install.log" 2>&1 && touch "$P/.ess"
fi
pip install -q --no-deps --no-index --upgrade --target "$P" .gpu/p4/mora_dag-*.whl >> "$OUT/install.log" 2>&1
say "installed: $(ls "$P" | grep -c dist-info) packages"
cd /tmp  # never import the checkout's `mora/` folder in place of the installed package
for m in sd15 svd_xt; do
  (python3 -P -c "import pathlib, sys; from mora.nodes.zoo import build
print(build('random', sys.argv[1], pathlib.Path('$M')))" $m > "$OUT/build-$m.log" 2>&1) &
done
wait; say "models: $(tail -qn1 "$OUT"/build-*.log | tr '\n' ' ')"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >> "$OUT/standing.log"
python3 -P -c "from mora.engine.frontends.admin import entry; entry()" workers stop --dir $W > /dev/null 2>&1
t0=$(date +%s)
python3 -P -c "from mora.engine.frontends.admin import entry; entry()" workers start --dir $W --timeout 300 2>&1 | tee -a "$OUT/standing.log"
say "workers started in $(( $(date +%s) - t0 )) s"
VIDEO=""
python3 -P -c "import av" 2>/dev/null || VIDEO="--extra=video_format=frames"  # no PyAV here: frames for both
B="python3 -P $R/bench/gpu_bench.py --stages fast $VIDEO"
if [ "$1" = 1 ]; then
  timeout 560 $B --launchers ${LAUNCHERS:-standing,basic} --tag=-call1 > "$OUT/bench1.log" 2>&1
else
  timeout 560 $B --launchers ${LAUNCHERS:-standing,basic,standing,basic,standing} --tag=-call2 > "$OUT/bench2.log" 2>&1
fi
say "bench rc=$?"
python3 -P -c "from mora.engine.frontends.admin import entry; entry()" workers status --dir $W 2>&1 | tee -a "$OUT/standing.log"
python3 -P -c "from mora.engine.frontends.admin import entry; entry()" workers stop --dir $W 2>&1 | tee -a "$OUT/standing.log"
cp $W/*.log "$OUT"/ 2>/dev/null
grep "t2v sweep" "$OUT"/bench*.log
python3 - "$OUT" <<'EOF'
import json, pathlib, sys
for f in sorted(pathlib.Path(sys.argv[1]).glob("gpu_results*.json")):
    data = json.loads(f.read_text())
    for row, v in data.get("fast_sweep", {}).items():
        print(row, v["process_s"], v["run_s"], "loads", v["model_loads"])
    for stage, err in data.get("errors", {}).items():
        print("error", stage, err[-800:])
EOF
