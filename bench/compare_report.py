"""The text tables of bench/compare.py: throughput of every contender, fastnn's ratio to each
peer and to the best one, the targets (issues: PASS/MISS), the noise flag of each measurement,
and fastnn's GFLOP/s as a fraction of the machine's measured FMA peak (bench/fma_peak.py).
"""
from baselines import cases

TRAIN_TARGETS = {("nielsen", "torch"): 10, ("nielsen", "numpy"): 3, ("mlp", "torch"): 3,
                 ("mlp", "numpy"): 1.5, ("lenet", "torch"): 2, ("spiral", "torch"): 20}
BEST_PEER_TARGET = 1.5  # training: fastnn >= 1.5x the best peer, every workload
INFER_TARGETS = {("lenet", 1, "torch"): 3, ("lenet", 1000, "torch"): 2,
                 ("lenet", 1, "onnxruntime"): 1.5, ("lenet", 64, "onnxruntime"): 1.5,
                 ("lenet", 1000, "onnxruntime"): 1.5}
STEP_PEAK_TARGET = 0.6  # LeNet's training step: >= 60% of the measured FMA peak
NOISY = 0.05  # other processes' CPU share above which a measurement is flagged
OVERHEAD_TARGET_US = 20


def noise_note(share):
    return f"others used {share:.0%} of the CPUs" + ("  NOISY: numbers unreliable" if share > NOISY else "")


def verdict(ratio, target):
    return "" if target is None else f"{'PASS' if ratio >= target else 'MISS'} (>= {target}x)"


def peak_note(gflops, peaks, target=None):
    """'X GFLOP/s = Y% of the 512-bit FMA peak (Z GFLOP/s)', or why there is no peak."""
    if not peaks or "note" in peaks:
        return f"{gflops:.1f} GFLOP/s ({(peaks or {}).get('note', 'no FMA peak measured')})"
    width = max(int(w) for w in peaks if w.isdigit())
    frac = gflops / peaks[str(width)]
    text = f"{gflops:.1f} GFLOP/s = {frac:.0%} of the {width}-bit FMA peak ({peaks[str(width)]:.0f} GFLOP/s)"
    if "256" in peaks and width != 256:
        text += f", {gflops / peaks['256']:.0%} of the 256-bit one"
    if target is not None:
        text += f"  {'PASS' if frac >= target else 'MISS'} (>= {target:.0%})"
    if peaks.get("others_cpu", 0) > NOISY:  # a disturbed peak is too low: every fraction too high
        text += f"  [peak: {noise_note(peaks['others_cpu'])}]"
    return text


def _train_lines(r, head):
    """fastnn.fit (what users run: shuffling, gathering, the loop) against every peer, with the
    targets; the bare train_step loop ("fastnn") against the best peer, for reference."""
    rates = r["samples_per_s"]
    peers = [w for w in rates if not w.startswith("fastnn")]
    user = "fastnn.fit" if "fastnn.fit" in rates else "fastnn"
    lines = []
    for peer in peers:
        ratio = rates[user] / rates[peer]
        lines.append(f"{head}   train {user}/{peer:8} {ratio:7.2f}x  "
                     f"{verdict(ratio, TRAIN_TARGETS.get((r['workload'], peer)))}")
    if peers:
        best = max(peers, key=rates.get)
        for who in dict.fromkeys((user, "fastnn")):
            ratio = rates[who] / rates[best]
            target = BEST_PEER_TARGET if who == user else None
            lines.append(f"{head}   train {who}/best peer ({best}) {ratio:.2f}x  {verdict(ratio, target)}")
    if "step_flops" in r:
        gflops = r["step_flops"] / r["step_us"][user] / 1e3
        target = STEP_PEAK_TARGET if r["workload"] == "lenet" else None
        lines.append(f"{head}   train {user} step: {peak_note(gflops, r.get('fma_peak'), target)}")
    return lines


def _infer_line(r, head, b, d):
    peers = [w for w in d if not w.startswith("fastnn")]
    ratios = "  ".join(f"fastnn/{p} {d['fastnn'] / d[p]:6.2f}x" for p in peers)
    verdicts = "  ".join(f"vs {p}: {verdict(d['fastnn'] / d[p], INFER_TARGETS[(r['workload'], b, p)])}"
                         for p in peers if (r["workload"], b, p) in INFER_TARGETS)
    return (f"{head} infer b={b:<4} " + ", ".join(f"{w} {v:,.0f}" for w, v in d.items())
            + f" img/s  {ratios}  {verdicts}  [{noise_note(r['others_cpu_infer'][b])}]")


def _rss_lines(r, head):
    lines = []
    for who, m in r.get("rss_mb", {}).items():
        if "error" in m:
            lines.append(f"{head} RSS {who}: failed {m['error']}")
        else:
            lines.append(f"{head} RSS {who:6} growth over python+numpy+data ({m['base_mb']:.0f} MB): "
                         f"train +{m['train_peak_mb'] - m['base_mb']:.0f} MB, "
                         f"+infer b=1000 +{m['infer1000_peak_mb'] - m['base_mb']:.0f} MB "
                         f"(process peaks {m['train_peak_mb']:.0f} / {m['infer1000_peak_mb']:.0f} MB)")
    return lines


def table(r):
    head = f"{r['workload']:8} t={r['threads']}"
    lines = list(r.get("peer_notes", []))
    lines.append(f"{head} train (batch {r['batch']}, {r['steps']} steps): " + ", ".join(
        f"{w} {v:,.0f} samples/s = {r['step_us'][w]:,.1f} us/step" for w, v in r["samples_per_s"].items())
        + f"  [{noise_note(r['others_cpu_train'])}]")
    lines += _train_lines(r, head)
    lines += [_infer_line(r, head, b, d) for b, d in r["infer_images_per_s"].items()]
    return "\n".join(lines + _rss_lines(r, head))


def kernel_table(threads, k, peaks=None):
    lines = [f"kernel   t={threads} [{noise_note(k['others_cpu'])}]"]
    for case, d in k.items():
        if case == "others_cpu":
            continue
        ratios = "  ".join(f"{p}/fastnn {d[p] / d['fastnn']:5.2f}x" for p in d if p != "fastnn")
        line = (f"kernel   t={threads} {case} fwd+bwd: " + ", ".join(f"{w} {v:,.0f} us" for w, v in d.items())
                + f"  (speed-up {ratios})")
        flops = cases.kernel_flops(case)
        if flops:  # convolutions: fastnn against the CPU's limit, not only against its peers
            line += f"\n         fastnn {case}: {peak_note(flops / d['fastnn'] / 1e3, peaks)}"
        lines.append(line)
    return "\n".join(lines)


def overhead_table(o):
    kern = ", ".join(f"{k} {v:.1f}" for k, v in o["per_kernel_us"].items())
    meth = ", ".join(f"{k} {v:.1f}" for k, v in o["per_method_us"].items())
    return (f"overhead t={o['threads']} {o['workload']} train_step {o['train_step_us']:.1f} us, raw kernel calls "
            f"{o['raw_kernels_us']:.1f} us -> Python overhead {o['overhead_us']:.1f} us "
            f"{'PASS' if o['overhead_us'] <= OVERHEAD_TARGET_US else 'MISS'} (<= {OVERHEAD_TARGET_US} us)  "
            f"[{noise_note(o['others_cpu'])}]\n"
            f"           each kernel alone (us): {kern}\n           each model method (us): {meth}")
