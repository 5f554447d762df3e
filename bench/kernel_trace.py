#!/usr/bin/env python3
"""Sums a kernel trace (bench/trace/kernel_trace.cpp) over a program's last steps.

A step starts at each launch of the marker kernel (a name substring, default: tune's embedding kernel, the first
of a training step). Prints the mean step time, the time some kernel ran, the gaps between kernels, and each
kernel's total time and launches per step, largest first.

  python3 bench/kernel_trace.py TRACE.tsv [--steps 8] [--marker embedding] [--top 40]
"""
import argparse
import collections
import re


def short_name(name):
    """A mangled C++ kernel's function name (the `<length><identifier>` that ends in `kernel`); others as given."""
    for m in re.finditer(r"(?=(\d+))", name):  # every digit run and its suffixes: hashes precede lengths
        at = m.start() + len(m.group(1))
        ident = name[at:at + int(m.group(1))]
        if ident.endswith("kernel") and re.fullmatch(r"[A-Za-z_]\w*", ident):
            return ident
    return name[:70]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("trace")
    ap.add_argument("--steps", type=int, default=8, help="the last N steps")
    ap.add_argument("--marker", default="embedding", help="substring of the kernel that starts a step")
    ap.add_argument("--top", type=int, default=40)
    args = ap.parse_args()
    kernels = []
    with open(args.trace) as f:
        for line in f:
            p = line.rstrip("\n").split("\t")
            if p[0] == "K":
                kernels.append((int(p[1]), int(p[2]), p[4], p[6]))
    kernels.sort()
    starts = [i for i, k in enumerate(kernels) if args.marker in k[3]]
    if len(starts) < args.steps:
        raise SystemExit(f"{args.trace}: {len(starts)} steps (marker {args.marker!r}), fewer than --steps {args.steps}")
    ks = kernels[starts[-args.steps]:]
    n = args.steps
    busy, last, gaps = 0, ks[0][0], 0
    for s, e, _, _ in ks:
        if s > last:
            gaps += s - last
        if e > last:
            busy += e - max(s, last)
            last = e
    print(f"steps {n}: {(ks[-1][1] - ks[0][0]) / n / 1e6:.2f} ms each, kernels running {busy / n / 1e6:.2f} ms, "
          f"gaps {gaps / n / 1e6:.2f} ms, {len(ks) / n:.0f} kernels")
    total, count = collections.Counter(), collections.Counter()
    for s, e, grid, name in ks:
        key = short_name(name) + f" [{grid}]"
        total[key] += e - s
        count[key] += 1
    for key, t in total.most_common(args.top):
        print(f"{t / n / 1e6:9.3f} ms {count[key] / n:6.1f}x  {key}")


if __name__ == "__main__":
    main()
