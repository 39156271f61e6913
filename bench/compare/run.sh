#!/usr/bin/env bash
# Side-by-side Scout vs llama.cpp (llama-bench) on the same GGUF, same threads, engines alternating round by round.
# usage: bench/compare/run.sh OUTDIR ROUNDS THREADS PROMPT GEN FILE...
# Writes one JSON line per run to OUTDIR/runs.jsonl (engine, file, threads, round, pp/tg tokens/s, load, time);
# summarize with bench/compare/summarize.py OUTDIR/runs.jsonl.
set -euo pipefail
out="$1"; rounds="$2"; threads="$3"; prompt="$4"; gen="$5"; shift 5
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
llama="${LLAMA_BENCH:-/work/peer/llama.cpp/build/bin/llama-bench}"
mkdir -p "$out"
"$root/scout" --help >/dev/null 2>&1 || true   # build once
for f in "$@"; do
  for r in $(seq 1 "$rounds"); do
    load=$(cut -d' ' -f1 /proc/loadavg)
    bw=--no-bandwidth; [ "$r" = 1 ] && bw=
    s=$("$root/scout" bench -m "$f" -t "$threads" -p "$prompt" -n "$gen" -r 1 --json $bw 2>/dev/null | tr -d '\n')
    echo "{\"engine\":\"scout\",\"file\":\"$(basename "$f")\",\"threads\":$threads,\"round\":$r,\"load\":$load,\"time\":\"$(date -u +%H:%M:%S)\",\"report\":$s}" >> "$out/runs.jsonl"
    load=$(cut -d' ' -f1 /proc/loadavg)
    l=$("$llama" -m "$f" -t "$threads" -p "$prompt" -n "$gen" -r 1 -o json 2>/dev/null | tr -d '\n')
    echo "{\"engine\":\"llama.cpp\",\"file\":\"$(basename "$f")\",\"threads\":$threads,\"round\":$r,\"load\":$load,\"time\":\"$(date -u +%H:%M:%S)\",\"report\":$l}" >> "$out/runs.jsonl"
  done
done
