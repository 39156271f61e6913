#!/usr/bin/env bash
# One prepared GPU check for a machine with one NVIDIA GPU (meant to finish in < 8 minutes):
#   1. builds Scout (Release);
#   2. runs the GPU tests on CUDA device 0 instead of ILGPU's CPU accelerator (SCOUT_TEST_GPU=cuda): every device
#      kernel against the CPU backend (DeviceKernelTests), fixture forwards vs Meta's logits in prefill and decode,
#      --gpu-layers / --cpu-moe / --n-cpu-moe placements, the plan's device bytes vs what the backend allocated;
#   3. synthesizes bench-4b Q4_K_M and a larger MoE (BIG_EXPERTS experts x BIG_LAYERS layers, ~20 GiB of Q4_K_M)
#      and runs `scout bench --device cuda` pp512/tg128 (f16 K/V), with and without --cpu-moe (and -ngl half of the
#      big model's layers if time is left), printing tokens/s and the fraction of the GPU's memory-bandwidth bound
#      (GPU_BW_GBS, looked up from the GPU name unless set).
# NOT run by its author: the session that wrote it had no GPU (device status: not drawn), so no line of it has been
# seen to work on CUDA; PTX code generation of the kernels is the first risk (the tests would fail at backend start).
# The whole forward pass runs on the device (activations and K/V stay there), but the kernels are written for
# correctness, not speed: one thread per output element of each product (no shared-memory tiling, no tensor cores),
# one thread per (row, head) in attention, one per row in RMSNorm, and each layer's new K/V rows are copied back to
# the host cache (write-through). Expect low fractions of the bandwidth bound, worst in pp512.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
work="${WORK:-/tmp/scout-gpu-check}"
mkdir -p "$work"
deadline=$((SECONDS + ${BUDGET_S:-450}))
left() { echo $((deadline - SECONDS)); }

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || { echo "error: nvidia-smi failed: no NVIDIA GPU/driver" >&2; exit 1; }
name="$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)"
if [ -z "${GPU_BW_GBS:-}" ]; then
  case "$name" in
    *H200*) GPU_BW_GBS=4800 ;; *H100*PCIe*) GPU_BW_GBS=2000 ;; *H100*) GPU_BW_GBS=3350 ;;
    *A100*80GB*) GPU_BW_GBS=2039 ;; *A100*) GPU_BW_GBS=1555 ;; *L40S*) GPU_BW_GBS=864 ;; *4090*) GPU_BW_GBS=1008 ;;
    *) GPU_BW_GBS=0 ;;
  esac
fi
echo "gpu: $name, bandwidth used for the bound: ${GPU_BW_GBS} GB/s (datasheet; 0 = unknown, set GPU_BW_GBS)"

echo "== build"
dotnet build src/Scout.Cli/Scout.Cli.csproj -c Release -o "$work/cli" -nologo -v q >"$work/build.log" 2>&1 || { tail -30 "$work/build.log"; exit 1; }
scout="$work/cli/Scout.Cli"

echo "== GPU tests on CUDA (fixture logits through the device kernels)"
SCOUT_TEST_GPU=cuda timeout 200 dotnet test tests/Scout.Tests/Scout.Tests.csproj -c Release --filter "FullyQualifiedName~Scout.Tests.Gpu" 2>&1 | grep -E "Passed!|Failed!|Failed |max \|" | head -40

bench() {   # file label extra-flags...
  local file="$1" label="$2"; shift 2
  local budget; budget=$(left)
  if [ "$budget" -lt 30 ]; then echo "| $label | skipped: time budget spent | | | |"; return; fi
  local out
  if ! out="$(timeout "$budget" "$scout" bench -m "$file" --device cuda -p 512 -n 128 -r "${REPS:-2}" --kv-type f16 --json --no-bandwidth "$@" 2>"$work/bench.err")"; then
    echo "| $label | failed or timed out ($(tail -1 "$work/bench.err")) | | | |"; return
  fi
  python3 - "$label" "$GPU_BW_GBS" <<PY
import json, sys
r = json.loads('''$out''')
label, bw = sys.argv[1], float(sys.argv[2])
tg, pp, active = r["TgTokensPerSecond"], r["PpTokensPerSecond"], r["ActiveBytesPerToken"]
driver = r.get("MachineBandwidthGBs")   # scout bench on a GPU: the driver's peak (memory clock x bus width)
if bw <= 0 and driver: bw = driver
bound = bw * 1e9 / active if bw > 0 else float("nan")
print(f"| {label} | {pp:.1f} ± {r['PpStdDev']:.1f} | {tg:.2f} ± {r['TgStdDev']:.2f} | {active/2**20:.0f} MiB | {tg/bound*100 if bw > 0 else float('nan'):.2f}% of {bound:.0f} tok/s (driver peak {driver} GB/s) |")
PY
}

echo "== synthesize"
small="$work/bench-4b-Q4_K_M.gguf"
big="$work/big-moe-Q4_K_M.gguf"
[ -f "$small" ] || timeout "$(left)" "$scout" synth --preset bench-4b --type Q4_K_M -o "$small" >/dev/null || echo "synth bench-4b failed"
[ -f "$big" ] || timeout "$(left)" "$scout" synth --preset bench-4b --layers "${BIG_LAYERS:-40}" --experts "${BIG_EXPERTS:-96}" --type Q4_K_M -o "$big" >/dev/null || echo "synth big model failed or timed out"
ls -la "$small" "$big" 2>/dev/null

echo "| model | pp512 tok/s | tg128 tok/s | active bytes/token | tg vs bandwidth bound |"
echo "| --- | ---: | ---: | ---: | ---: |"
[ -f "$small" ] && bench "$small" "bench-4b Q4_K_M, cuda"
[ -f "$small" ] && bench "$small" "bench-4b Q4_K_M, cuda --cpu-moe" --cpu-moe
[ -f "$big" ] && bench "$big" "big MoE Q4_K_M, cuda"
[ -f "$big" ] && bench "$big" "big MoE Q4_K_M, cuda --cpu-moe" --cpu-moe
half=$(( ${BIG_LAYERS:-40} / 2 ))
[ -f "$big" ] && bench "$big" "big MoE Q4_K_M, cuda -ngl $half" --gpu-layers "$half"
echo "done in $SECONDS s"
