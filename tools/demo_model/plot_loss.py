#!/usr/bin/env python3
"""Draws the training loss curve of the demo model as an SVG (standard library only).

usage: python3 tools/demo_model/plot_loss.py TRAIN_LOG.jsonl OUT.svg
TRAIN_LOG.jsonl: one JSON object per line with "step", "loss" (cross-entropy on the assistant tokens) and
"token_acc" (next-token accuracy on them), as tools/demo_model/train.py writes it.
"""
import json
import math
import sys


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
    W, H, L, R, T, B = 720, 360, 64, 64, 24, 44
    steps = [r["step"] for r in rows]
    loss = [max(r["loss"], 1e-4) for r in rows]
    acc = [r.get("token_acc", 0.0) for r in rows]
    x0, x1 = 0, max(steps) or 1
    ylo, yhi = math.floor(math.log10(min(loss))), math.ceil(math.log10(max(loss)))
    if ylo == yhi:
        yhi += 1

    def X(s):
        return L + (W - L - R) * (s - x0) / (x1 - x0)

    def Y(v):  # log scale for the loss
        return T + (H - T - B) * (yhi - math.log10(v)) / (yhi - ylo)

    def Ya(a):  # linear 0..1 for the accuracy, right axis
        return T + (H - T - B) * (1 - a)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>']
    for e in range(ylo, yhi + 1):
        y = Y(10 ** e)
        out.append(f'<line x1="{L}" y1="{y:.1f}" x2="{W - R}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{L - 6}" y="{y + 4:.1f}" text-anchor="end">1e{e}</text>')
    for a in (0.0, 0.5, 1.0):
        out.append(f'<text x="{W - R + 6}" y="{Ya(a) + 4:.1f}" fill="#c60">{a:.1f}</text>')
    for k in range(6):
        s = x0 + (x1 - x0) * k / 5
        out.append(f'<text x="{X(s):.1f}" y="{H - B + 16}" text-anchor="middle">{int(s)}</text>')
    out.append(f'<line x1="{L}" y1="{H - B}" x2="{W - R}" y2="{H - B}" stroke="black"/>')
    out.append(f'<line x1="{L}" y1="{T}" x2="{L}" y2="{H - B}" stroke="black"/>')
    pts = " ".join(f"{X(s):.1f},{Y(v):.1f}" for s, v in zip(steps, loss))
    out.append(f'<polyline fill="none" stroke="#036" stroke-width="1.5" points="{pts}"/>')
    pts = " ".join(f"{X(s):.1f},{Ya(a):.1f}" for s, a in zip(steps, acc))
    out.append(f'<polyline fill="none" stroke="#c60" stroke-width="1" points="{pts}"/>')
    out.append(f'<text x="{(L + W - R) / 2}" y="{H - 8}" text-anchor="middle">training step</text>')
    out.append(f'<text x="{L}" y="{T - 8}" fill="#036">cross-entropy on assistant tokens (log scale)</text>')
    out.append(f'<text x="{W - R}" y="{T - 8}" text-anchor="end" fill="#c60">next-token accuracy</text>')
    out.append("</svg>")
    with open(sys.argv[2], "w") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
