"""interp studio: start-up and launch of the Gradio app over one resident model.

    python app.py [--model sd15|sd21|toy|tiny|random-sd15|random-sd21|REPO|PATH] [--model-config DIR]
                  [--device cuda] [--dtype float16] [--host 127.0.0.1] [--port 7860] [--share]

The model is loaded once before serving; GPU work runs through one queue (concurrency 1); each
browser tab keeps its own session. The layout is ui.layout, the handlers ui.handlers. Bounds on
every number come from interp.limits (INTERP_MAX_* variables lower them).
"""
from __future__ import annotations

import argparse
import logging
import os

from interp import limits
from interp.models.startup import add_loader_flags, add_store_flags
from interp.settings import PRESETS
from ui.layout import build_demo, launch_options

log = logging.getLogger("interp.app")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="interp studio (Gradio app)")
    p.add_argument("--model", default=os.environ.get("INTERP_MODEL"),
                   help="sd15 | sd21 | toy | tiny | random-sd15 | random-sd21 | repo id | local directory "
                        "or single-file checkpoint (default: best available)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps (default: best)")
    p.add_argument("--dtype", default=None, choices=["float32", "float16", "bfloat16"])
    add_loader_flags(p)
    p.add_argument("--clip-model", default=None,
                   help="open_clip NAME:PRETRAINED, 'tiny' or 'toy' (default: the toy model's own "
                        "CLIP on toy, else the paper's ViT-L-14)")
    add_store_flags(p)
    p.add_argument("--preset", choices=sorted(PRESETS), default=None,
                   help="initial knob values (default: balanced on a GPU, draft otherwise)")
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    p.add_argument("--share", action="store_true")
    return p


def parse_args(argv=None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def load_engine(args: argparse.Namespace) -> tuple:
    """(Interpolator, banner markdown or None): the model (offline rule), frame store and CLIP
    scorer, loaded once before serving (interp.models.startup.build_engine, as the CLI does)."""
    from interp.models.startup import build_engine, loader_options
    engine, notes = build_engine(args.model, device=args.device, dtype=args.dtype,
                                 clip=args.clip_model, store=args.store,
                                 store_max_gb=args.store_max_gb, **loader_options(args))
    for note in notes:
        log.warning("%s", note)
    return engine, "  \n".join(notes) or None


def initial_knobs(args: argparse.Namespace, engine) -> tuple:
    """(preset name, Settings) the knobs start from: the preset (balanced on a GPU, else draft),
    then what the model needs (interp.models.startup.settings_for, as the CLI does)."""
    from interp.models.startup import settings_for
    name = args.preset or ("balanced" if engine.bundle.device.type == "cuda" else "draft")
    settings, note = settings_for(name, engine.bundle.name, scorer=engine.scorer)
    if note:
        log.warning("%s", note)
    return name, settings


def check_start(args: argparse.Namespace) -> None:
    """Refuse to start on an invalid INTERP_MAX_* variable or store flag; log the bounds."""
    from interp.cli.flags import check_outputs
    from interp.cli.main import one_line
    try:
        bounds = limits.describe()
        check_outputs(None, args)
    except (ValueError, OSError) as exc:
        raise SystemExit(f"error: {one_line(exc)}") from None
    log.info("limits: %s", ", ".join(f"{var}={value}" for var, value, _ in bounds))


def main(argv=None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from ui.zerogpu import on_zero_gpu
    if on_zero_gpu():
        import spaces  # noqa: F401  (before torch touches CUDA: ZeroGPU patches it)
    args = parse_args(argv)
    check_start(args)
    engine, note = load_engine(args)
    name, settings = initial_knobs(args, engine)
    demo = build_demo(engine, note, settings, preset=name)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share,
                **launch_options())


if __name__ == "__main__":
    main()
