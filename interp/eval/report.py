"""Writing an Evaluation: results.md (table), results.json (raw numbers), PNG plots, contact sheets."""
from __future__ import annotations

import json
import logging
import math
import re
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image, ImageDraw

from interp.eval.harness import Evaluation

log = logging.getLogger(__name__)

CHECK_COLOURS = ((40, 200, 60), (220, 40, 40))   # pass, fail
COLUMNS = (("ppl", "PPL (sum d)"), ("pdv", "PDV (var d)"),
           ("smoothness", "smoothness (1-Gini)"), ("consistency", "mean d"), ("max", "max d"),
           ("fid", "FID vs inputs"), ("seconds", "s / pair"))
THUMB = 128          # contact-sheet cell size cap (pixels)
PAD = 2


def _fmt(mean: float, std: float) -> str:
    if not math.isfinite(mean):
        return "n/a"
    return f"{mean:.3g} ± {std:.2g}"


def markdown_table(ev: Evaluation) -> str:
    """The per-variant table, mean ± std over pairs (population std)."""
    table = ev.table()
    cols = [(c, c.replace("_", "-")) for c in ev.check_names]
    cols += [(f"{c}_gain", f"{c.replace('_', '-')} gain of CLIP pick") for c in ev.check_names
             if any(f"{c}_gain" in row for row in table.values())]
    cols += [(k, name) for k, name in COLUMNS if any(k in row for row in table.values())]
    lines = ["| variant | " + " | ".join(name for _, name in cols) + " |",
             "|---|" + "---|" * len(cols)]
    for label, row in table.items():
        cells = [_fmt(*row[k]) if k in row else "" for k, _ in cols]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown(ev: Evaluation) -> str:
    """results.md: what was run, the table, and notes on skipped metrics."""
    s = ev.settings
    pairs = sorted({r.pair for r in ev.runs})
    head = [f"# Interpolation quality: {ev.model or 'model'}", "",
            f"{len(pairs)} pairs, {s.frames} frames, {s.num_inference_steps} DDIM steps, "
            f"eta {s.eta}, guidance {s.guidance_scale}, noise {s.noise_min}-{s.noise_max}, "
            f"size {s.size}, seed {s.seed}.",
            f"Adjacent distance d: {ev.distance}. PPL = sum of d (DiffMorpher convention), "
            "PDV = variance of d, smoothness = 1 - Gini(d) (AID); mean ± std over pairs.", ""]
    if "on_manifold" in ev.check_names:
        head += ["on-manifold: share of in-between frames showing exactly one clean shape in a palette "
                 "colour on a palette background; single-shape: the same with any uniform colour "
                 "(interp.toy.detect).", ""]
    notes = ["", "Notes:"] + [f"- {n}" for n in ev.notes]
    return "\n".join(head + [markdown_table(ev)] + notes) + "\n"


def _slug(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")


def contact_sheet(ev: Evaluation, label: str) -> Image.Image:
    """Rows = pairs, columns = frames; under each in-between frame one bar per check (green = pass)."""
    runs = ev.runs_of(label)
    if not runs:
        raise ValueError(f"label={label!r} has no runs")
    return _sheet(runs, ev.check_names)


def comparison_sheet(ev: Evaluation, pairs: int = 2) -> Image.Image:
    """The first `pairs` pairs, each as one row per variant (labelled), with the check bars."""
    names = list(dict.fromkeys(r.pair for r in ev.runs))[:pairs]
    runs = [r for name in names for v in ev.variants for r in ev.runs if r.pair == name
            and r.variant == v.label]
    if not runs:
        raise ValueError("the evaluation has no runs")
    return _sheet(runs, ev.check_names, [f"{r.pair}: {r.variant}" for r in runs])


def _sheet(runs: list, names: list, captions: Optional[list] = None) -> Image.Image:
    w, h = runs[0].frames[0].size
    scale = min(1.0, THUMB / max(w, h))
    cw, ch = max(1, round(w * scale)), max(1, round(h * scale))
    bar = 4 * len(names)
    left = 150 if captions else 0
    cols = max(len(r.frames) for r in runs)
    sheet = Image.new("RGB", (left + cols * (cw + PAD) + PAD, len(runs) * (ch + bar + PAD) + PAD),
                      (40, 40, 40))
    pen = ImageDraw.Draw(sheet)
    for row, run in enumerate(runs):
        y = PAD + row * (ch + bar + PAD)
        if captions:
            pen.text((PAD, y + ch // 2 - 5), captions[row], fill=(230, 230, 230))
        for col, frame in enumerate(run.frames):
            x = left + PAD + col * (cw + PAD)
            sheet.paste(frame.convert("RGB").resize((cw, ch), Image.BOX), (x, y))
            for k, name in enumerate(names if 0 < col < len(run.frames) - 1 else ()):
                fill = CHECK_COLOURS[0] if run.checks[name][col - 1] else CHECK_COLOURS[1]
                pen.rectangle([x, y + ch + 1 + 4 * k, x + cw - 1, y + ch + 3 + 4 * k], fill=fill)
    return sheet


def distance_plot(ev: Evaluation, path: Path) -> Path:
    """Mean adjacent distance per step (± std over pairs) per variant; each check's rate per frame."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = ev.check_names
    fig, axes = plt.subplots(1, 1 + len(names), figsize=(6 + 5 * len(names), 4.2), squeeze=False)
    for v in ev.variants:
        runs = ev.runs_of(v.label)
        d = np.array([r.distances for r in runs])
        x = np.arange(d.shape[1]) + 0.5
        line, = axes[0, 0].plot(x, d.mean(0), marker="o", ms=3, label=v.label)
        axes[0, 0].fill_between(x, d.mean(0) - d.std(0), d.mean(0) + d.std(0), alpha=0.12,
                                color=line.get_color())
        for k, name in enumerate(names, start=1):
            rate = np.array([r.checks[name] for r in runs], dtype=float).mean(0)
            axes[0, k].plot(np.arange(1, len(rate) + 1), rate, marker="o", ms=3, label=v.label)
    axes[0, 0].set(xlabel="step (between frame i and i+1)", ylabel=f"adjacent distance ({ev.distance})",
                   title="per-step distance, mean ± std over pairs")
    axes[0, 0].legend(fontsize=7)
    for k, name in enumerate(names, start=1):
        axes[0, k].set(xlabel="in-between frame", ylabel="share of pairs", ylim=(-0.05, 1.05),
                       title=f"{name.replace('_', '-')} rate per frame")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def json_safe(obj):
    """A copy with NaN / inf floats as None (strict JSON), tuples as lists."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def write_report(ev: Evaluation, out: str | Path) -> dict:
    """Write results.md, results.json, distances.png, comparison.png (two pairs, every variant) and
    contact_<variant>.png (every pair) -> {name: path}."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out / "results.md", "json": out / "results.json"}
    paths["markdown"].write_text(markdown(ev))
    paths["json"].write_text(json.dumps(json_safe(ev.to_json()), indent=1) + "\n")
    paths["distances"] = distance_plot(ev, out / "distances.png")
    paths["comparison"] = out / "comparison.png"
    comparison_sheet(ev).save(paths["comparison"])
    for v in ev.variants:
        path = out / f"contact_{_slug(v.label)}.png"
        contact_sheet(ev, v.label).save(path)
        paths[f"contact {v.label}"] = path
    log.info("wrote %s", ", ".join(str(p) for p in paths.values()))
    return paths
