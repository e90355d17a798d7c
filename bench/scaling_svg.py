#!/usr/bin/env python3
"""Draws the strong-scaling speedup (measured vs ideal) as a small SVG.

Usage: scaling_svg.py SCALING_JSON OUT_SVG   (JSON from dpfleet-scaling-bench --json)
"""
import json
import sys


def main() -> int:
    data = json.load(open(sys.argv[1]))
    rows = data["results"]
    ranks = [r["ranks"] for r in rows]
    speed = [r["speedup"] for r in rows]
    share = [r["allreduce_share"] for r in rows]
    w, h, m = 520, 340, 60
    top = max(max(ranks), max(speed))

    def x(v):
        return m + (v - 1) / max(1, max(ranks) - 1) * (w - 2 * m)

    def y(v):
        return h - m - v / top * (h - 2 * m)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<text x="{w / 2}" y="24" text-anchor="middle" font-size="14">DP-SGD strong scaling '
           f'(N={data["rows"]}, B={data["batch"]}, {data["cores"]} cores)</text>',
           f'<line x1="{m}" y1="{h - m}" x2="{w - m}" y2="{h - m}" stroke="black"/>',
           f'<line x1="{m}" y1="{m}" x2="{m}" y2="{h - m}" stroke="black"/>',
           f'<text x="{w / 2}" y="{h - 20}" text-anchor="middle">ranks (W)</text>',
           f'<text x="18" y="{h / 2}" transform="rotate(-90 18 {h / 2})" text-anchor="middle">speedup vs W=1</text>']
    for r in ranks:
        out.append(f'<text x="{x(r)}" y="{h - m + 16}" text-anchor="middle">{r}</text>')
    for t in range(0, int(top) + 1):
        out.append(f'<text x="{m - 8}" y="{y(t) + 4}" text-anchor="end">{t}</text>')
    ideal = " ".join(f"{x(r)},{y(r)}" for r in ranks)
    meas = " ".join(f"{x(r)},{y(s)}" for r, s in zip(ranks, speed))
    out.append(f'<polyline points="{ideal}" fill="none" stroke="#999" stroke-dasharray="4 4"/>')
    out.append(f'<polyline points="{meas}" fill="none" stroke="#1f77b4" stroke-width="2"/>')
    for r, s, a in zip(ranks, speed, share):
        out.append(f'<circle cx="{x(r)}" cy="{y(s)}" r="3" fill="#1f77b4"/>')
        out.append(f'<text x="{x(r) + 6}" y="{y(s) - 6}">{s:.2f}x ({a * 100:.0f}% all-reduce)</text>')
    out.append(f'<text x="{w - m}" y="{m}" text-anchor="end" fill="#999">dashed: ideal</text>')
    out.append("</svg>")
    open(sys.argv[2], "w").write("\n".join(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
