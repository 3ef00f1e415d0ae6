"""The live plan plot of the app: each frame's position on the path and its noise level, as SVG.

Drawn from interp.plan.make_plan before anything is generated, so moving a schedule knob shows its
effect at once. Plain SVG (no plotting library): fast on a CPU and easy to inspect in tests
(every dot carries data-frame / data-position, every bar data-noise).
"""
from __future__ import annotations

from html import escape

from interp.timeline import keyframe_name

W, H = 640, 260            # SVG user units
LEFT, RIGHT, TOP, BOTTOM = 44, 52, 14, 34
POS_COLOUR, NOISE_COLOUR = "#2563eb", "#f59e0b"


def _x(i: int, n: int) -> float:
    return LEFT + (W - LEFT - RIGHT) * (i / max(n - 1, 1))


def _y(v: float) -> float:
    return TOP + (H - TOP - BOTTOM) * (1.0 - v)


def _axes(n: int) -> list:
    parts = [f'<line x1="{LEFT}" y1="{_y(0)}" x2="{W - RIGHT}" y2="{_y(0)}" class="axis"/>',
             f'<line x1="{LEFT}" y1="{_y(0)}" x2="{LEFT}" y2="{_y(1)}" class="axis"/>',
             f'<line x1="{W - RIGHT}" y1="{_y(0)}" x2="{W - RIGHT}" y2="{_y(1)}" class="axis"/>']
    for v in (0.0, 0.25, 0.5, 0.75, 1.0):
        parts.append(f'<line x1="{LEFT}" y1="{_y(v):.1f}" x2="{W - RIGHT}" y2="{_y(v):.1f}" '
                     f'class="grid"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{_y(v) + 4:.1f}" text-anchor="end" '
                     f'style="fill:{POS_COLOUR}">{v:g}</text>')
        parts.append(f'<text x="{W - RIGHT + 6}" y="{_y(v) + 4:.1f}" '
                     f'style="fill:{NOISE_COLOUR}">{v:g}</text>')
    step = max(1, (n - 1) // 16 + 1)
    for i in range(0, n, step):
        parts.append(f'<text x="{_x(i, n):.1f}" y="{H - BOTTOM + 16}" text-anchor="middle">{i}</text>')
    parts.append(f'<text x="{(LEFT + W - RIGHT) / 2}" y="{H - 4}" text-anchor="middle">frame</text>')
    return parts


def plan_svg(plan, num_inference_steps: int) -> str:
    """SVG of a Plan: position t_i per frame (line + dots) and noise fraction (bars)."""
    n = len(plan.nodes)
    bar = max(2.0, min(18.0, (W - LEFT - RIGHT) / max(n, 1) * 0.6))
    parts = _axes(n)
    for node in plan.nodes:
        if node.ddim_index is None:
            continue
        noise = node.ddim_index / num_inference_steps
        x = _x(node.index, n)
        parts.append(f'<rect class="noise" data-frame="{node.index}" data-noise="{noise:.4f}" '
                     f'x="{x - bar / 2:.1f}" y="{_y(noise):.1f}" width="{bar:.1f}" '
                     f'height="{_y(0) - _y(noise):.1f}" fill="{NOISE_COLOUR}" opacity="0.55">'
                     f'<title>frame {node.index}: level {node.level}, DDIM index '
                     f'{node.ddim_index} (t={node.timestep})</title></rect>')
    points = " ".join(f"{_x(nd.index, n):.1f},{_y(nd.position):.1f}" for nd in plan.nodes)
    parts.append(f'<polyline points="{points}" fill="none" stroke="{POS_COLOUR}" stroke-width="2"/>')
    for node in plan.nodes:
        parts.append(f'<circle class="pos" data-frame="{node.index}" '
                     f'data-position="{node.position:.6f}" cx="{_x(node.index, n):.1f}" '
                     f'cy="{_y(node.position):.1f}" r="4" fill="{POS_COLOUR}">'
                     f'<title>frame {node.index}: position {node.position:.4f}</title></circle>')
    legend = (f'<text x="{LEFT + 8}" y="{TOP + 12}" style="fill:{POS_COLOUR}">● position t</text>'
              f'<text x="{LEFT + 110}" y="{TOP + 12}" style="fill:{NOISE_COLOUR}">▮ noise level '
              f'(fraction of {num_inference_steps} DDIM steps)</text>')
    return (f'<svg class="plan-plot" viewBox="0 0 {W} {H}" xmlns="http://www.w3.org/2000/svg" '
            f'role="img" aria-label="frame positions and noise levels">'
            f'<style>.plan-plot text{{font:11px sans-serif;fill:currentColor}}'
            f'.plan-plot .axis{{stroke:currentColor;stroke-width:1}}'
            f'.plan-plot .grid{{stroke:currentColor;stroke-opacity:.12}}</style>'
            + "".join(parts) + legend + "</svg>")


def plan_error(message: str) -> str:
    """What the plot area shows when the knobs do not make a valid plan."""
    return f'<div class="plan-error">Cannot plan these settings: {escape(message)}</div>'


TW, TH = 760, 70                       # the timeline's SVG user units
T_LEFT, T_RIGHT, T_BAR = 14, 14, 40    # margins; the segment bars' top
SEGMENT_COLOURS = ("#6366f1", "#ec4899")


def timeline_svg(where, fps, size, selected) -> str:
    """SVG of a timeline Layout: one bar per segment (its frames and seconds at `fps`), a marker
    per keyframe at its frame, the loop's way back to the first; the working size above."""
    if where is None:
        return ('<div class="timeline-empty">Add two or more images (or pick an example) to '
                'build a timeline.</div>')
    end = where.total if where.loop else where.total - 1
    def x(frame):
        return T_LEFT + (TW - T_LEFT - T_RIGHT) * frame / max(end, 1)
    names = [keyframe_name(k) for k in range(len(where.keyframes))]
    parts = []
    for s, (off, n) in enumerate(zip(where.offsets, where.counts)):
        seconds = (n - 1) / fps
        x0, x1 = x(off), x(off + n - 1)
        parts.append(f'<rect class="segment" data-segment="{s}" data-frames="{n}" '
                     f'data-seconds="{seconds:.3f}" x="{x0:.1f}" y="{T_BAR}" '
                     f'width="{max(x1 - x0, 1):.1f}" height="16" rx="3" '
                     f'fill="{SEGMENT_COLOURS[s % 2]}" opacity="0.8"><title>segment {names[s]} → '
                     f'{names[(s + 1) % len(names)]}: {n} frames, {seconds:.2f} s</title></rect>')
        parts.append(f'<text x="{(x0 + x1) / 2:.1f}" y="{T_BAR + 30}" text-anchor="middle">'
                     f'{n} frames · {seconds:.1f} s</text>')
    marks = list(zip(where.keyframes, names)) + ([(where.total, names[0])] if where.loop else [])
    for k, (frame, name) in enumerate(marks):
        chosen = " selected" if k == selected else ""
        parts.append(f'<g class="keyframe{chosen}" data-keyframe="{k % len(names)}" '
                     f'data-frame="{frame}"><circle cx="{x(frame):.1f}" cy="{T_BAR + 8}" r="9"/>'
                     f'<text x="{x(frame):.1f}" y="{T_BAR + 12}" text-anchor="middle" '
                     f'class="letter">{name}</text></g>')
    seconds = (end) / fps
    head = (f'{" → ".join(names + ([names[0]] if where.loop else []))} · {where.total} frames · '
            f'{seconds:.1f} s at {fps:g} fps · working size {size[0]} × {size[1]}')
    return (f'<svg class="timeline-plot" viewBox="0 0 {TW} {TH}" xmlns="http://www.w3.org/2000/svg"'
            f' role="img" aria-label="timeline"><style>.timeline-plot text{{font:13px sans-serif;'
            f'fill:currentColor}}.timeline-plot .keyframe circle{{fill:#111827;stroke:#fff;'
            f'stroke-width:1.5}}.timeline-plot .keyframe.selected circle{{fill:#f59e0b}}'
            f'.timeline-plot .letter{{fill:#fff;font-weight:700;font-size:11px}}</style>'
            f'<text x="{T_LEFT}" y="18" class="head">{escape(head)}</text>'
            + "".join(parts) + "</svg>")

