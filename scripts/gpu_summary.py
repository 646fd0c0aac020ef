"""Markdown summary of a scripts/gpu_session.sh run: `python3 scripts/gpu_summary.py WORK RESULTS_JSONL`.

WORK is the session's work folder (phases.tsv, logs/*.log) or an unpacked logs.tgz (the same layout). The sections
are in the order BENCHMARKS.md wants them, with the side-by-side table last (it is what the run tool's output tail
shows).
"""
import json
import os
import re
import sys


def read(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def fmt(x, nd=2):
    return "—" if x is None else f"{x:,.{nd}f}"


def ratio(a, b):
    return "—" if a is None or not b else f"{a / b:.2f}"


def main():
    work, results = sys.argv[1], sys.argv[2]
    logs = os.path.join(work, "logs")
    rows = []
    for line in read(results).splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            pass
    out = ["# GPU session", ""]

    env = read(os.path.join(logs, "env.log"))
    keep = [l for l in env.splitlines() if re.match(r"(date|commit|python|diffusers|name,|NVIDIA|ddpm-cuda|sm_90)", l)]
    out += ["## Environment", "", "```", *keep, "```", ""]

    st = read(os.path.join(logs, "selftest.log")).splitlines()
    if st:
        out += ["## Selftest (`ddpm-cuda selftest --device cuda --shapes full`)", "", "```", *st[-400:], "```", ""]

    kt = [l for l in read(os.path.join(logs, "kernels.log")).splitlines() if l.startswith("|") or "skipped" in l]
    if kt:
        out += ["## Kernel microbenchmarks (batch 128, cifar10 shapes; % of 790 TFLOP/s bf16 or 4.3 TB/s)", "", *kt, ""]

    if rows:
        out += ["## Every measurement (results.jsonl)", "", "| bench | mode / precision | batch | img/s | ms/step | note |",
                "|---|---|---:|---:|---:|---|"]
        for r in rows:
            ips = r.get("img_per_s", r.get("img_per_s_1000"))
            note = r.get("error", "")
            if "t1000_s" in r:
                note = (f"{r['steps_lo']}/{r['steps_hi']} steps timed, 1000 extrapolated: {r['t1000_s']} s"
                        if r.get("extrapolated") else f"1000 steps: {r['t1000_s']} s")
            elif "warmup_s" in r and r.get("mode", "").endswith("compile"):
                note = f"warm-up incl. compile {r['warmup_s']} s"
            out.append(f"| {r.get('bench')} | {r.get('mode', r.get('precision', ''))} | {r.get('batch', '')} | "
                       f"{fmt(ips)} | {fmt(r.get('ms_per_step'), 1)} | {note} |")
        out.append("")

    mnist = read(os.path.join(logs, "mnist.log")).splitlines()
    ms = read(os.path.join(logs, "mnistsample.log")).splitlines()
    if mnist or ms:
        out += ["## MNIST run", "", "```", *mnist[-6:], *ms[-3:], "```", ""]

    phases = [l.split("\t") for l in read(os.path.join(work, "phases.tsv")).splitlines() if l.strip()]
    if phases:
        out += ["## Phases", "", "| phase | status | seconds |", "|---|---|---:|"]
        out += [f"| {p[0]} | {p[1]} | {p[2] if len(p) > 2 else ''} |" for p in phases]
        total = sum(float(p[2]) for p in phases if len(p) > 2 and "background" not in p[1] and not p[0].startswith("total"))
        out += [f"| (sum of the foreground phases) | | {total:.1f} |", ""]

    ok = [r for r in rows if "error" not in r]
    torch_train = [r for r in ok if r.get("bench") == "torch_train"]
    best_train = max(torch_train, key=lambda r: r["img_per_s"], default=None)
    out += ["## Side by side: ours vs PyTorch's best (same GPU, same run)", "",
            "| what | ours img/s | PyTorch best img/s (mode) | ratio ours/PyTorch |", "|---|---:|---:|---:|"]
    for r in [r for r in ok if r.get("bench") == "ours_train"]:
        b = best_train or {}
        out.append(f"| train {r.get('preset', 'cifar10')} b{r['batch']} ({r.get('precision', 'f32')}) | {fmt(r['img_per_s'])} | "
                   f"{fmt(b.get('img_per_s'))} ({b.get('mode', '—')}) | {ratio(r['img_per_s'], b.get('img_per_s'))} |")
    for m in torch_train:
        out.append(f"| (PyTorch train {m['mode']}) | | {fmt(m['img_per_s'])} | |")
    ours_s = {r["batch"]: r for r in ok if r.get("bench") == "ours_sample"}
    torch_s = {}
    for r in ok:
        if r.get("bench") == "torch_sample":
            if r["batch"] not in torch_s or r["img_per_s_1000"] > torch_s[r["batch"]]["img_per_s_1000"]:
                torch_s[r["batch"]] = r
    for b in sorted(set(ours_s) | set(torch_s)):
        o, t = ours_s.get(b, {}), torch_s.get(b, {})
        ext = " (extrapolated)" if o.get("extrapolated") or t.get("extrapolated") else ""
        out.append(f"| sample 1000 DDPM steps, batch {b}{ext} | {fmt(o.get('img_per_s_1000'))} | "
                   f"{fmt(t.get('img_per_s_1000'))} ({t.get('mode', '—')}) | "
                   f"{ratio(o.get('img_per_s_1000'), t.get('img_per_s_1000'))} |")
    out.append("")
    print("\n".join(out))


if __name__ == "__main__":
    main()
