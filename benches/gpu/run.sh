#!/bin/bash
# Everything the kernel work measures, in one call on a lent NVIDIA GPU (H100 or H200), from the repository's root
# there, after benches/gpu/prepare.sh here: the adapter and its measured peak; the engine as it landed
# (.device/gpu-cnn-base) and as it is (.device/gpu-cnn), alternating, at batch 16, 64, 256 and 1024 with per-kernel
# GPU times; the fused classifier head against the four kernels at 256 and 1024; a short training run; and PyTorch's
# forms on the same GPU and data (eager with its defaults, eager in plain f32, the step captured in a CUDA graph,
# torch.compile). About 8 minutes. What comes back: $OUT/summary.txt and $OUT/results.tgz (every JSON and the plots).
# A smoke test anywhere else: OUT=/tmp/out BATCHES=16 DEVICE=cpu bash benches/gpu/run.sh (after copying a binary to
# .device/gpu-cnn).
set -u
BATCHES=${BATCHES:-16,64,256,1024}
DEVICE=${DEVICE:-cuda}
for f in .gl/*.deb; do [ -f "$f" ] && dpkg -x "$f" /; done
ldconfig
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [ -f $icd ]; then
  export VK_DRIVER_FILES=$icd
  export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
fi
NEW=.device/gpu-cnn
BASE=.device/gpu-cnn-base
R=/tmp/results
mkdir -p $R
S=$OUT/summary.txt
say() { echo "== $* ($(date -u +%T))" >>$S; }

say machine
{
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total --format=csv
  $NEW --version
  [ -x $BASE ] && $BASE --version
  $NEW adapters
} >>$S 2>&1
say peak
timeout 60 $NEW peak --backend vulkan >>$S 2>&1
say check
timeout 120 $NEW check --quick --backend vulkan 2>&1 | tail -5 >>$S

# The engine as it landed and as it is, alternating, twice.
for round in 1 2; do
  for which in base new; do
    bin=$NEW
    [ $which = base ] && bin=$BASE
    [ -x $bin ] || continue
    say "bench $which, round $round"
    timeout 120 $bin bench --backend vulkan --batch-sizes $BATCHES --repeats 3 --min-seconds 0.5 --no-check \
      --json --out $R/bench-$which-$round.json >/dev/null 2>$R/bench-$which-$round.log
    grep -E "images/s|^\|" $R/bench-$which-$round.log | head -80 >>$S
  done
done
say "the fused classifier head (default) against the four kernels, batch 256 and 1024"
GPU_CNN_FUSED_HEAD=0 timeout 60 $NEW bench --backend vulkan --batch-sizes 256,1024 --repeats 3 --min-seconds 0.5 \
  --no-check --json --out $R/bench-new-unfused.json >/dev/null 2>$R/bench-new-unfused.log
grep -E "images/s|classifier|softmax|fc2" $R/bench-new-unfused.log | head -30 >>$S

say "train 3 epochs (the study's default run, batch 64)"
timeout 60 $NEW train --backend vulkan --epochs 3 --out-dir $R/train --json >$R/train.json 2>$R/train.log
tail -6 $R/train.log >>$S

say "bench-report"
$NEW bench-report $R/bench-new-1.json $R/bench-new-2.json --plot $R/plots >>$S 2>&1
[ -f $R/bench-base-1.json ] && $NEW bench-report --compare $R/bench-base-1.json $R/bench-new-1.json >>$S 2>&1
[ -f $R/bench-base-2.json ] && $NEW bench-report --compare $R/bench-base-2.json $R/bench-new-2.json >>$S 2>&1

say "PyTorch on the same GPU and data"
PYTHONUNBUFFERED=1 timeout 300 python3 benches/pytorch/torch_cnn.py --device $DEVICE --forms eager,eager-f32,graph,graph-f32,compile \
  --batch-sizes $BATCHES --repeats 3 --seconds 0.5 --json-out $R/torch-forms.json >/dev/null 2>$R/torch-forms.log
grep -vE "^\s*$" $R/torch-forms.log | tail -40 >>$S

say done
tar czf $OUT/results.tgz -C /tmp results
cat $S
