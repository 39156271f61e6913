#!/usr/bin/env bash
# Coverage-guided fuzzing of Scout's parsers (GGUF, safetensors, tokenizer/config files, request JSON + schemas)
# with SharpFuzz and AFL++, for a bounded time per target. Not part of CI (.ci/run).
#
#   tools/fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]      default: 180 s; gguf safetensors tokenizer request
#
# Installs what it needs (afl++ from Debian, the SharpFuzz.CommandLine dotnet tool), builds and instruments the
# harness in tools/fuzz/out/, writes seeds, runs afl-fuzz per target, then replays every crash and hang it found
# (the replay prints each finding's exception; exit 1 when any input is a finding).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
SECS=${1:-180}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -eq 0 ] && TARGETS=(gguf safetensors tokenizer request)
HERE=$PWD
OUT=$HERE/out
TOOLS=$HERE/.tools

if ! command -v afl-fuzz >/dev/null; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq afl++
fi
if [ ! -x "$TOOLS/sharpfuzz" ]; then
  dotnet tool install SharpFuzz.CommandLine --version 2.3.0 --tool-path "$TOOLS"
fi

# out/bin: plain build (seeding, replaying findings); out/inst: the same with Scout.dll and Scout.Server.dll
# instrumented for AFL (instrumented code only runs under afl-fuzz).
rm -rf "$OUT/bin" "$OUT/inst"
dotnet build Scout.Fuzz/Scout.Fuzz.csproj -c Release -o "$OUT/bin" -nologo -v q
cp -r "$OUT/bin" "$OUT/inst"
for dll in Scout.dll Scout.Server.dll; do "$TOOLS/sharpfuzz" "$OUT/inst/$dll"; done
rm -rf "$OUT/seeds"
dotnet "$OUT/bin/Scout.Fuzz.dll" seed "$OUT/seeds"

export AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_UI=1 AFL_SKIP_BIN_CHECK=1
status=0
for t in "${TARGETS[@]}"; do
  echo "== $t: ${SECS} s"
  rm -rf "$OUT/findings/$t"; mkdir -p "$OUT/findings"
  timeout $((SECS + 60)) afl-fuzz -V "$SECS" -i "$OUT/seeds/$t" -o "$OUT/findings/$t" -t 5000 -m none \
    -- "$(command -v dotnet)" "$OUT/inst/Scout.Fuzz.dll" "$t" > "$OUT/afl-$t.log" 2>&1 || true
  stats="$OUT/findings/$t/default/fuzzer_stats"
  if [ -f "$stats" ]; then
    grep -E '^(execs_done|execs_per_sec|corpus_count|saved_crashes|saved_hangs|bitmap_cvg|run_time)' "$stats" | tr -s ' ' | sed "s/^/  $t: /"
  else
    echo "  $t: afl-fuzz did not start; see $OUT/afl-$t.log"; tail -20 "$OUT/afl-$t.log"; status=1
  fi
  mapfile -t found < <(find "$OUT/findings/$t/default/crashes" "$OUT/findings/$t/default/hangs" -type f ! -name README.txt 2>/dev/null)
  if [ ${#found[@]} -gt 0 ]; then
    echo "  $t: ${#found[@]} finding(s); replaying:"
    dotnet "$OUT/bin/Scout.Fuzz.dll" "$t" "${found[@]}" | head -60 || status=1
  fi
done
exit $status
