#!/usr/bin/env bash
# One lent GPU machine, one call, about nine minutes: check `fagan demo` / `fagan upscale` on CUDA
# against the CPU, then train three candidate generators side by side on the one GPU:
#   x4_gpu_from_x2   x4 from the shipped x2 weights (the recipe of docs/runs/x4_from_x2, batch 64)
#   x4_gpu_continue  the shipped x4 trained further at half the learning rate (batch 64)
#   x8_gpu_from_x2   x8 from the shipped x2 weights (the recipe of docs/runs/x8_from_x2, batch 64)
# Each run first takes PROBE_STEPS steps; its measured speed then sets its total number of steps so
# that all three end before the budget, and `fagan train --resume` carries it on with the learning
# rate halved at 60% and 85% of the steps. Results go to $OUT as one tar per run.
#
# Shipping rule, fixed before any score was seen: a candidate replaces the shipped file of its scale
# only if its final validation PSNR is above the shipped file's (x4 27.93 dB, x8 21.56 dB) and, against
# it (`fagan evaluate --weights OLD NEW`), both the held-out brains' mean and the five-volume mean of
# PSNR are higher. Of two x4 candidates that both pass, the one with the higher brains' mean ships.
# Round 2 (ROUND=2, written after round 1 ran and before any of its scores was read) keeps the same rule,
# with the shipped x2's validation of 36.89 dB.
#
# Round 3 (ROUND=3, 2026-11-28, rule in docs/runs/x4_gpu_jitter/RULE.md) continues the shipped x4 (item 9)
# three ways with its own recipe (random contrast, intensity jitter) at batch 64. From round 3 on, the
# CUDA checks run beside the probe, and each probe's `fagan train` is timed from writing its release to
# its exit (the data-loader workers on CUDA).
#
# Run on the device machine with: DEVICE=cuda BUDGET=500 bash docs/runs/gpu_h100/train_on_device.sh
# (a dry run on a CPU: DEVICE=cpu BUDGET=200 PROBE_STEPS=4 BATCH=4 OUT=/tmp/out bash ...).
set -u
DEVICE=${DEVICE:-cuda}
BUDGET=${BUDGET:-500}        # seconds from now until every result is in $OUT
PROBE_STEPS=${PROBE_STEPS:-200}
BATCH=${BATCH:-64}
WORKERS=${WORKERS:-4}
T0=$(date +%s)
DEADLINE=$((T0 + BUDGET))
RUNS=/tmp/gpu_runs
mkdir -p "$RUNS" "$OUT"
export PYTHONUNBUFFERED=1
W=src/fagan/weights

common="--device $DEVICE --set data.batch_size=$BATCH --set data.num_workers=$WORKERS --set data.axes=[0,1,2]
 --set data.zoom_range=[0.5,1.0] --set loss.pixel=l1 --set schedule.steps=$PROBE_STEPS
 --set schedule.validate_every=$PROBE_STEPS --set schedule.checkpoint_every=$PROBE_STEPS
 --set schedule.log_every=10 --set schedule.ema_decay=0.995"
declare -A ARGS=(
  [x4_gpu_from_x2]="--config configs/fagan_x4_psnr.yaml --set model.init_weights=$W/fagan_x2.safetensors
    --set data.patch_size=64 --set data.noise_range=[0.0,0.05] --set optim.lr=0.0001"
  [x4_gpu_continue]="--config configs/fagan_x4_psnr.yaml --set model.init_weights=$W/fagan_x4.safetensors
    --set data.patch_size=64 --set data.noise_range=[0.0,0.05] --set optim.lr=0.00005"
  [x8_gpu_from_x2]="--config configs/fagan_x8_psnr.yaml --set model.init_weights=$W/fagan_x2.safetensors
    --set data.patch_size=96 --set optim.lr=0.0001"
)
NAMES="x4_gpu_from_x2 x4_gpu_continue x8_gpu_from_x2"
if [ "${ROUND:-1}" = 2 ]; then
  # Round 2, on what was left of the lease: x2 trained further, and the two continued runs of round 1
  # carried on at half their learning rate (their exports carried in .gpu_init/).
  G=.gpu_init
  ARGS=(
    [x2_gpu_continue]="--config configs/fagan_x2_psnr.yaml --set model.init_weights=$W/fagan_x2.safetensors
      --set data.patch_size=64 --set data.noise_range=[0.0,0.05] --set optim.lr=0.00005"
    [x4_gpu_continue2]="--config configs/fagan_x4_psnr.yaml
      --set model.init_weights=$G/x4_gpu_continue.export.safetensors
      --set data.patch_size=64 --set data.noise_range=[0.0,0.05] --set optim.lr=0.000025"
    [x8_gpu_continue]="--config configs/fagan_x8_psnr.yaml --set model.init_weights=$G/x8_gpu_from_x2.export.safetensors
      --set data.patch_size=96 --set optim.lr=0.00005"
  )
  NAMES="x2_gpu_continue x4_gpu_continue2 x8_gpu_continue"
  DEVICE_CHECKS=no
fi
if [ "${ROUND:-1}" = 3 ]; then
  jitter="--config configs/fagan_x4_psnr.yaml --set model.init_weights=$W/fagan_x4.safetensors
    --set data.noise_range=[0.0,0.05] --set data.contrast_prob=0.5 --set data.gain_range=[0.8,1.4]
    --set data.offset_range=[-0.25,0.05] --set optim.lr=0.00005"
  ARGS=(
    [x4_gpu_jitter_s21]="$jitter --set data.patch_size=64 --set seed=21"
    [x4_gpu_jitter_s22]="$jitter --set data.patch_size=64 --set seed=22"
    [x4_gpu_jitter_p96]="$jitter --set data.patch_size=96 --set seed=23"
  )
  NAMES="x4_gpu_jitter_s21 x4_gpu_jitter_s22 x4_gpu_jitter_p96"
fi

device_checks() {
  echo "== CUDA against CPU ($(date -u +%T))"
  nvidia-smi -L
  python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
  S=src/fagan/data/sample/files
  TIMEFORMAT="demo on cuda: %R s wall"
  time timeout 60 python3 -m fagan demo --device cuda --out /tmp/demo_cuda \
    --scales 2 4 8 2>&1 | grep -v "it/s\|s/it"
  for dev in cuda cpu; do
    TIMEFORMAT="upscale x4 on $dev: %R s wall"
    time timeout 40 python3 -m fagan upscale $S/pydicom_MR_small.dcm \
      -o /tmp/up_$dev.nii.gz --scale 4 --device $dev 2>&1 | grep -v "it/s\|s/it"
  done
  python3 - <<'EOF2'
import nibabel as nib, numpy as np
g, c = (nib.load(f"/tmp/up_{d}.nii.gz") for d in ("cuda", "cpu"))
a, b = g.get_fdata(), c.get_fdata()
span = float(b.max() - b.min())
print("cuda vs cpu: same affine", np.allclose(g.affine, c.affine), "max |diff| / range",
      float(np.abs(a - b).max()) / span, "PSNR", 10 * np.log10(span**2 / max(float(((a - b) ** 2).mean()), 1e-30)))
EOF2
}
checks_pid=""
if [ "$DEVICE" = cuda ] && [ "${DEVICE_CHECKS:-yes}" = yes ]; then
  device_checks >"$RUNS/device_checks.log" 2>&1 &
  checks_pid=$!
fi

echo "== probe: $PROBE_STEPS steps each, side by side ($(date -u +%T))"
pids=""
for n in $NAMES; do
  # shellcheck disable=SC2086
  (python3 -m fagan train ${ARGS[$n]} $common --out "$RUNS/$n" >"$RUNS/$n.probe.log" 2>&1
   date +%s.%N >"$RUNS/$n.probe.exited") &
  pids="$pids $!"
done
wait $pids
for n in $NAMES; do echo "-- $n probe: $(tail -c 300 "$RUNS/$n.probe.log" | tr '\r' '\n' | tail -2)"; done
for n in $NAMES; do  # seconds from the release's write to the process's exit
  [ -f "$RUNS/$n/release.safetensors" ] && [ -f "$RUNS/$n.probe.exited" ] &&
    echo "-- $n exited $(python3 -c "import sys; print(f'{float(sys.argv[1]) - float(sys.argv[2]):.2f}')" \
      "$(cat "$RUNS/$n.probe.exited")" "$(stat -c %.9Y "$RUNS/$n/release.safetensors")") s after writing its release"
done
if [ -n "$checks_pid" ]; then wait "$checks_pid"; echo "== CUDA checks"; cat "$RUNS/device_checks.log"; fi

now=$(date +%s)
echo "== main phase ($(date -u +%T)), $((DEADLINE - now)) s left"
pids=""
for n in $NAMES; do
  [ -f "$RUNS/$n/losses.jsonl" ] || { echo "$n: no probe losses, skipped"; continue; }
  # Steps the run can take in the time left: its probe speed (steps 50 to the end), 10% margin, and 60 s
  # kept for the resume's start-up, the validations and the export.
  plan=$(python3 - "$RUNS/$n/losses.jsonl" $((DEADLINE - now - 60)) "$PROBE_STEPS" <<'EOF'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
seconds, probe = float(sys.argv[2]), int(sys.argv[3])
a = next(r for r in rows if r["step"] >= min(50, probe // 2))
rate = (rows[-1]["step"] - a["step"]) / max(rows[-1]["time"] - a["time"], 1e-6)
steps = probe + max(0, int(rate * 0.9 * seconds))
every = max(probe, (steps // 10) // 50 * 50)
steps = max(probe, steps // every * every)
ema = 0.999 if steps >= 4000 else 0.995
print(f"{rate:.2f} {steps} [{int(steps * 0.6)},{int(steps * 0.85)}] {every} {ema}")
EOF
)
  read -r rate steps milestones every ema <<<"$plan"
  echo "$n: $rate steps/s -> $steps steps, milestones $milestones, validate every $every, EMA $ema"
  python3 -m fagan train --resume "$RUNS/$n" --device "$DEVICE" --set schedule.steps="$steps" \
    --set optim.lr_milestones="$milestones" --set schedule.validate_every="$every" \
    --set schedule.checkpoint_every="$every" --set schedule.ema_decay="$ema" >"$RUNS/$n.main.log" 2>&1 &
  pids="$pids $!"
done

# Stop whatever is still running 35 s before the deadline; the newest checkpoint is exported.
while [ "$(date +%s)" -lt $((DEADLINE - 35)) ] && kill -0 $pids 2>/dev/null; do sleep 2; done
for p in $pids; do kill -TERM "$p" 2>/dev/null && echo "stopped $p at the deadline"; done
wait $pids 2>/dev/null

echo "== export ($(date -u +%T))"
for n in $NAMES; do
  [ -d "$RUNS/$n" ] || continue
  python3 -m fagan train --export "$RUNS/$n" --out "$RUNS/$n.export.safetensors" \
    >"$RUNS/$n.export.log" 2>&1 || echo "$n: export failed: $(tail -1 "$RUNS/$n.export.log")"
  echo "-- $n: $(tail -n 1 "$RUNS/$n/validation.jsonl" 2>/dev/null)"
  (cd "$RUNS" && tar -cf "$OUT/$n.tar" --exclude=checkpoints --exclude=release.safetensors "$n" "$n".*.log "$n".export.safetensors)
done
echo "== done ($(date -u +%T)), $(($(date +%s) - T0)) s"
