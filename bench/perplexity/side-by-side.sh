#!/usr/bin/env bash
# Scout's `perplexity` and llama.cpp's `llama-perplexity` side by side on the same GGUFs and text (BENCHMARKS.md,
# "Quality measures"). A random-weight Llama 4 with Meta's real 202,048-token vocabulary is written by `scout synth`
# in F16 and quantized to Q4_0 by llama.cpp's llama-quantize; the text is the GPL-3 + Apache-2.0 license texts.
# Usage: bench/perplexity/side-by-side.sh [reps]   (LLAMA_BIN, WORK, CHUNKS override the defaults)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
B="${LLAMA_BIN:-/work/peer/llama.cpp/build/bin}"
W="${WORK:-/tmp/scout-ppl}"
CH="${CHUNKS:-8}"
REPS="${1:-3}"
TOKENIZER="${TOKENIZER:-$root/../shared/fixtures/tokenizer/llama4/tokenizer.model}"
mkdir -p "$W"
dotnet build "$root/src/Scout.Cli/Scout.Cli.csproj" -c Release -o "$W/cli" -nologo -v q >/dev/null
S=(dotnet "$W/cli/Scout.Cli.dll")
cd "$W"
[ -f text.txt ] || cat /usr/share/common-licenses/GPL-3 /usr/share/common-licenses/Apache-2.0 > text.txt
[ -f rv-f16.gguf ] || "${S[@]}" synth --layers 4 --dim 256 --heads 4 --kv-heads 2 --head-dim 64 --experts 4 --expert-ffn 256 \
  --dense-ffn 512 --type F16 --seed 15 --real-vocab "$TOKENIZER" --out rv-f16.gguf >/dev/null
[ -f rv-q4_0.gguf ] || "$B/llama-quantize" rv-f16.gguf rv-q4_0.gguf Q4_0 >/dev/null 2>&1
lscpu | grep -E "Model name|^CPU\(s\)" ; uptime

clock() { local t0 t1; t0=$(date +%s.%N); "$@" > run.out 2>&1; t1=$(date +%s.%N); echo "$t1 - $t0" | bc; }
ppl() { grep -oE "Final estimate: PPL = [0-9.]+ \+/- [0-9.]+" run.out | awk '{print $5, $7}'; }
kld() { grep -E "Mean +KLD|99.0% +KLD|Median +KLD|Same top p|RMS Δp|Mean +Δp" run.out | tr -s ' ' | paste -sd';'; }

for rep in $(seq "$REPS"); do
  for t in f16 q4_0; do
    s=$(clock "$B/llama-perplexity" -m "rv-$t.gguf" -f text.txt -c 512 -b 1024 -t 2 --chunks "$CH"); echo "rep $rep $t llama.cpp wall ${s}s PPL $(ppl)"
    s=$(clock "${S[@]}" perplexity -m "rv-$t.gguf" -f text.txt -c 512 -b 1024 --chunks "$CH"); echo "rep $rep $t scout     wall ${s}s PPL $(ppl)"
  done
done
uptime

# KL divergence of Q4_0 against F16, each engine with its own base, then each with the other's base file.
s=$(clock "$B/llama-perplexity" -m rv-f16.gguf -f text.txt -c 512 -b 1024 -t 2 --chunks "$CH" --kl-divergence-base llama-f16.kld); echo "llama.cpp base F16 wall ${s}s"
s=$(clock "${S[@]}" perplexity -m rv-f16.gguf -f text.txt -c 512 -b 1024 --chunks "$CH" --kl-divergence-base scout-f16.kld); echo "scout base F16 wall ${s}s"
s=$(clock "$B/llama-perplexity" -m rv-q4_0.gguf -c 512 -b 1024 -t 2 --kl-divergence --kl-divergence-base llama-f16.kld); echo "llama.cpp KLD Q4_0 vs llama base wall ${s}s: $(kld)"
s=$(clock "${S[@]}" perplexity -m rv-q4_0.gguf -b 1024 --kl-divergence scout-f16.kld); echo "scout KLD Q4_0 vs scout base wall ${s}s: $(kld)"
s=$(clock "${S[@]}" perplexity -m rv-q4_0.gguf -b 1024 --kl-divergence llama-f16.kld); echo "scout KLD Q4_0 vs llama.cpp base wall ${s}s: $(kld)"
s=$(clock "$B/llama-perplexity" -m rv-q4_0.gguf -c 512 -b 1024 -t 2 --kl-divergence --kl-divergence-base scout-f16.kld); echo "llama.cpp KLD Q4_0 vs scout base wall ${s}s: $(kld)"
rm -f llama-f16.kld scout-f16.kld
uptime
