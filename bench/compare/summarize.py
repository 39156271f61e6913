#!/usr/bin/env python3
"""Medians, spread and Scout/llama.cpp ratios from bench/compare/run.sh's runs.jsonl (a markdown table on stdout)."""
import json, statistics, sys
from collections import defaultdict

runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
vals = defaultdict(list)      # (file, threads, engine, test) -> [tok/s]
meta = {}
loads = defaultdict(list)
for r in runs:
    key = (r["file"], r["threads"])
    loads[key].append(r["load"])
    rep = r["report"]
    if r["engine"] == "scout":
        if rep.get("PpTokensPerSecond"): vals[key + ("scout", "pp")].append(rep["PpTokensPerSecond"])
        if rep.get("TgTokensPerSecond"): vals[key + ("scout", "tg")].append(rep["TgTokensPerSecond"])
        m = meta.setdefault(key, {})
        m["active"] = rep["ActiveBytesPerToken"]; m["kernels"] = rep["KernelPath"]
        if rep.get("MachineBandwidthGBs"): m.setdefault("bw", []).append(rep["MachineBandwidthGBs"])
        m["pp"] = rep["PromptTokens"]; m["tg"] = rep["GenTokens"]
    else:
        for t in rep:
            test = "pp" if t["n_gen"] == 0 else "tg"
            vals[key + ("llama.cpp", test)].append(t["avg_ts"])

def med(xs): return statistics.median(xs) if xs else float("nan")
def spread(xs): return f"{min(xs):.1f}–{max(xs):.1f}" if xs else "–"

print("| file | threads | n | pp Scout | pp llama.cpp | pp ratio | tg Scout | tg llama.cpp | tg ratio | bound tok/s | Scout % bound | llama.cpp % bound | load |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
for key in sorted(meta):
    f, th = key
    m = meta[key]
    sp, lp = vals[key + ("scout", "pp")], vals[key + ("llama.cpp", "pp")]
    st, lt = vals[key + ("scout", "tg")], vals[key + ("llama.cpp", "tg")]
    bound = (med(m["bw"]) * 1e9 / m["active"]) if m.get("bw") else float("nan")
    print(f"| {f} | {th} | {len(st)} | {med(sp):.1f} ({spread(sp)}) | {med(lp):.1f} ({spread(lp)}) | {med(sp)/med(lp):.2f} | "
          f"{med(st):.1f} ({spread(st)}) | {med(lt):.1f} ({spread(lt)}) | {med(st)/med(lt):.2f} | {bound:.0f} | "
          f"{100*med(st)/bound:.0f} % | {100*med(lt)/bound:.0f} % | {min(loads[key]):.1f}–{max(loads[key]):.1f} |")
