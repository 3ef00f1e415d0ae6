"""Quality harness: the method against the paper's baselines and a pixel alpha blend, on many pairs.

For each pair and each variant (a scheme, and for the method a candidate count K), the sequence is
rendered with ONE Interpolator (one bundle, one frame store) and measured with interp.metrics
(adjacent distances -> PPL, PDV, smoothness, consistency, max) and, when checks are given (toy
pairs), the share of in-between frames passing each (on-manifold, single clean shape). Baselines:
method.md section 8; the alpha blend is computed from the prepared inputs in pixel space at the plan's
positions (the ghosting reference).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence

import numpy as np
from PIL import Image

from interp import metrics
from interp.events import CancelToken
from interp.images import load_image, prepare_pair
from interp.plan import curve_positions
from interp.settings import AttentionMode, Scheme, Settings

log = logging.getLogger(__name__)

ALPHA_BLEND = "alpha_blend"
SCHEMES: tuple = tuple(s.value for s in Scheme) + (ALPHA_BLEND,)
METRICS = ("ppl", "pdv", "smoothness", "consistency", "max")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


@dataclass(frozen=True)
class Pair:
    """One evaluation pair: two images and (optionally) their prompts."""
    name: str
    image_a: Image.Image
    image_b: Image.Image
    prompt_a: str = ""
    prompt_b: str = ""


@dataclass(frozen=True)
class Variant:
    """One column of the results: a scheme and, for the method, its candidates per frame (0 =
    settings) and its endpoint-attention mode (None = settings)."""
    label: str
    scheme: str
    candidates: int = 0
    attention: Optional[str] = None


@dataclass
class Run:
    """One variant on one pair: frames, distances, per-sequence metrics, check verdicts, cost."""
    variant: str
    pair: str
    frames: list
    distances: list
    metrics: dict
    checks: dict = field(default_factory=dict)   # check name -> one bool per in-between frame
    seconds: float = 0.0
    unet_rows: int = 0
    # check name -> per in-between frame with several candidates: (did CLIP's pick pass, share of
    # its candidates that pass). Their difference is what ranking gained over a random pick.
    picks: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"variant": self.variant, "pair": self.pair, "distances": self.distances,
                "metrics": self.metrics, "checks": self.checks, "picks": self.picks,
                "seconds": self.seconds, "unet_rows": self.unet_rows}

    def ranking_gain(self, check: str) -> Optional[float]:
        """Share of ranked frames whose pick passes `check` minus the mean share of their candidates
        that pass (0: ranking did no better than a random pick); None without ranked frames."""
        picks = self.picks.get(check) or []
        return float(np.mean([p - chance for p, chance in picks])) if picks else None


@dataclass
class Evaluation:
    """All runs, with what produced them and notes on skipped metrics."""
    runs: list
    variants: list
    settings: Settings
    model: str = ""
    distance: str = "lab"
    notes: list = field(default_factory=list)
    extra: dict = field(default_factory=dict)   # per-variant extra numbers (e.g. FID)

    def runs_of(self, label: str) -> list:
        return [r for r in self.runs if r.variant == label]

    @property
    def check_names(self) -> list:
        return list(self.runs[0].checks) if self.runs else []

    def table(self) -> dict:
        """{variant label: {name: (mean, std) over pairs}}: check rates, METRICS, seconds, extras."""
        out = {}
        for v in self.variants:
            runs = self.runs_of(v.label)
            row = {c: metrics.mean_std([float(np.mean(r.checks[c])) for r in runs])
                   for c in self.check_names}
            for c in self.check_names:
                gains = [g for r in runs if (g := r.ranking_gain(c)) is not None]
                if gains:
                    row[f"{c}_gain"] = metrics.mean_std(gains)
            row.update({m: metrics.mean_std([r.metrics[m] for r in runs]) for m in METRICS})
            row["seconds"] = metrics.mean_std([r.seconds for r in runs])
            row.update({k: (val, 0.0) for k, val in self.extra.get(v.label, {}).items()})
            out[v.label] = row
        return out

    def to_json(self) -> dict:
        return {"model": self.model, "distance": self.distance, "notes": list(self.notes),
                "settings": self.settings.to_dict(),
                "variants": [v.__dict__ for v in self.variants],
                "table": {k: {m: list(ms) for m, ms in row.items()} for k, row in self.table().items()},
                "runs": [r.to_json() for r in self.runs]}


# ------------------------------------------------------------------------------ pairs and variants

def toy_pairs(n: int, seed: int = 0, size: int = 64, same_colour: bool = False) -> list:
    """n held-out toy pairs (disjoint from training), prompts = the shapes' captions; same_colour:
    shape morphs only (see toy.data.held_out_pairs)."""
    from interp.toy import data
    pairs = data.held_out_pairs(n, seed, same_colour=same_colour)
    return [Pair(f"toy{i:02d}", data.draw(a, size), data.draw(b, size), data.caption(a),
                 data.caption(b)) for i, (a, b) in enumerate(pairs)]


def folder_pairs(directory: str | Path) -> list:
    """Pairs from files <name>_a.<ext> and <name>_b.<ext> in `directory` (any image format PIL reads).

    An optional <name>.txt holds the prompt: one line (shared) or two lines (prompt of A, of B).
    """
    root = Path(directory)
    if not root.is_dir():
        raise ValueError(f"pairs={str(root)!r} is not a directory")
    files = {p.stem: p for p in sorted(root.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
    names = sorted(s[:-2] for s in files if s.endswith("_a") and s[:-2] + "_b" in files)
    if not names:
        raise ValueError(f"pairs={str(root)!r} holds no <name>_a.* / <name>_b.* image pairs")
    pairs = []
    for name in names:
        text = root / f"{name}.txt"
        lines = [ln.strip() for ln in text.read_text().splitlines() if ln.strip()] if text.is_file() else []
        prompt_a = lines[0] if lines else ""
        prompt_b = lines[1] if len(lines) > 1 else prompt_a
        pairs.append(Pair(name, load_image(files[name + "_a"]), load_image(files[name + "_b"]),
                          prompt_a, prompt_b))
    return pairs


def make_variants(schemes: Sequence[str], candidates: Sequence[int] = (0,),
                  attention: Sequence[str] = ()) -> list:
    """One Variant per scheme; the method once per candidate count ("method K=4" when several) and
    per endpoint-attention mode ("method attn=extend" when several)."""
    unknown = [s for s in schemes if s not in SCHEMES]
    if unknown or not schemes:
        raise ValueError(f"schemes={list(schemes)!r} is not allowed: choose from {list(SCHEMES)}")
    if not candidates or any(not isinstance(k, int) or k < 0 for k in candidates):
        raise ValueError(f"candidates={list(candidates)!r} is not allowed: integers >= 0")
    modes = [AttentionMode(m).value for m in attention] or [None]
    out = []
    for s in schemes:
        if s != Scheme.METHOD.value:
            out.append(Variant(s, s))
            continue
        for k in candidates:
            for mode in modes:
                label = " ".join(["method"] + ([f"K={k}"] if len(candidates) > 1 else [])
                                 + ([f"attn={mode}"] if len(modes) > 1 else []))
                out.append(Variant(label, s, k, mode))
    return out


# ------------------------------------------------------------------------------ running

def alpha_blend_frames(image_a: Image.Image, image_b: Image.Image, positions: Sequence[float]) -> list:
    """Pixel-space (1 - t) A + t B at each position: the ghosting baseline."""
    return [Image.blend(image_a, image_b, float(t)) for t in positions]


def pair_settings(settings: Settings, pair: Pair, variant: Variant) -> Settings:
    """The run's settings for one pair and variant: the pair's prompts, the scheme, K."""
    changes: dict = {"scheme": Scheme(variant.scheme)}
    if pair.prompt_a:
        changes.update(prompt=pair.prompt_a, prompt_b=pair.prompt_b or pair.prompt_a)
    if variant.candidates:
        changes["candidates"] = variant.candidates
    if variant.attention is not None:
        changes["attention"] = AttentionMode(variant.attention)
    return settings.replace(**changes)


def render_variant(engine, pair: Pair, variant: Variant, settings: Settings,
                   cancel: Optional[CancelToken] = None) -> tuple:
    """(frames, UNet rows, [(candidates, chosen index)] of the in-between frames) of one variant on
    one pair."""
    if variant.scheme == ALPHA_BLEND:
        a, b = prepare_pair(pair.image_a, pair.image_b, settings, engine.bundle.native_size)
        positions = curve_positions(settings.frames, settings.curve, settings.curve_alpha,
                                    settings.curve_beta, settings.curve_points)
        frames = alpha_blend_frames(a, b, positions)
        return frames, 0, [([f], 0) for f in frames[1:-1]]
    result = engine.render(pair.image_a, pair.image_b, pair_settings(settings, pair, variant),
                           cancel=cancel)
    candidates = [(list(f.images), f.chosen) for f in result.frames[1:-1]]
    return result.images, result.counts.get("rows", {}).get("unet", 0), candidates


def measure(variant: str, pair: str, frames: list, distance: metrics.Distance,
            checks: Optional[Mapping[str, Callable]] = None, seconds: float = 0.0,
            unet_rows: int = 0, candidates: Sequence = ()) -> Run:
    """Distances and metrics of one finished sequence, each check's verdict on its in-betweens, and
    for frames with several candidates whether the chosen one passes against how many do.

    candidates: (images, chosen index) per in-between frame, images[chosen] being that frame; each
    check runs once per candidate."""
    d = metrics.adjacent_distances(frames, distance)
    shown = [([f], 0) for f in frames[1:-1]]
    per_frame = candidates if len(candidates) == len(shown) else shown
    verdicts, picks = {}, {}
    for name, check in (checks or {}).items():
        passed = [[bool(check(im)) for im in images] for images, _ in per_frame]
        verdicts[name] = [p[chosen] for p, (_, chosen) in zip(passed, per_frame)]
        ranked = [(p[chosen], float(np.mean(p))) for p, (_, chosen) in zip(passed, per_frame)
                  if len(p) > 1]
        if ranked:
            picks[name] = ranked
    return Run(variant, pair, list(frames), d.tolist(), metrics.sequence_metrics(d), verdicts,
               seconds, unet_rows, picks)


def evaluate(engine, pairs: Sequence[Pair], settings: Settings, variants: Sequence[Variant], *,
             distance: metrics.Distance = metrics.lab_distance, distance_name: str = "lab",
             checks: Optional[Mapping[str, Callable]] = None, fid: bool = True,
             on_run: Callable[[Run], None] = lambda run: None,
             cancel: Optional[CancelToken] = None) -> Evaluation:
    """Render and measure every variant on every pair with one engine (one bundle, one store).

    checks: name -> image -> bool, applied to every in-between frame (toy: interp.toy.detect.CHECKS);
    the table reports each as the share of passing frames.
    """
    if not pairs:
        raise ValueError("pairs is empty: expected at least one pair")
    runs = []
    for pair in pairs:
        for variant in variants:
            start = time.perf_counter()
            frames, rows, candidates = render_variant(engine, pair, variant, settings, cancel)
            run = measure(variant.label, pair.name, frames, distance, checks,
                          time.perf_counter() - start, rows, candidates)
            log.info("%s on %s: %s", variant.label, pair.name, run.metrics)
            on_run(run)
            runs.append(run)
    ev = Evaluation(runs, list(variants), settings, getattr(engine.bundle, "name", ""),
                    distance_name, notes=_availability_notes(distance_name))
    if fid:
        _add_fid(ev, pairs)
    return ev


def _availability_notes(distance_name: str) -> list:
    notes = [f"distance: {distance_name}"]
    if distance_name != "lpips":
        notes.append(metrics.lpips_status()[1])
    return notes


def _add_fid(ev: Evaluation, pairs: Sequence[Pair]) -> None:
    """FID against the inputs per variant when Inception weights are on disk, else a note."""
    ok, note = metrics.inception_status()
    ev.notes.append(note)
    if not ok or ev.settings.frames < 4:
        return
    features = metrics.inception_features()
    for v in ev.variants:
        runs = ev.runs_of(v.label)
        inputs = [im for r in runs for im in (r.frames[0], r.frames[-1])]
        ev.extra.setdefault(v.label, {})["fid"] = metrics.fid_against_inputs(
            inputs, [r.frames for r in runs], features)
