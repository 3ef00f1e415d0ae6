"""interp studio: start-up and launch of the Gradio app over one resident model.

    python app.py [--model sd15|sd21|sdxl|toy|tiny|random-*|REPO|PATH] [--model-config DIR]
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
from interp.errors import one_line
from interp.models.startup import add_model_flags, add_store_flags, check_outputs, engine_from_args
from interp.settings import PRESETS
from ui.layout import build_demo, launch_options

log = logging.getLogger("interp.app")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="interp studio (Gradio app)")
    add_model_flags(p, os.environ.get("INTERP_MODEL"))
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
    engine, notes = engine_from_args(args)
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
