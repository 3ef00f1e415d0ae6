"""The README's examples stay true: the pose JSON parses, documented flags exist."""
import ast
import re
from pathlib import Path

from interp.cli.main import build_parser
from interp.pose.keypoints import Pose

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_readme_pose_example_is_valid_openpose_json():
    block = next(b for b in re.findall(r"```json\n(.*?)```", README, re.S) if "pose_keypoints_2d" in b)
    pose = Pose.from_json(block)
    assert len(pose.people) == 1 and pose.people[0][16] == (0, 0, 0)


def _options(parser) -> set:
    return {s for a in parser._actions for s in a.option_strings}


def _script_options(path: Path) -> set:
    """The option strings of every add_argument call in a script (read with ast, not run)."""
    calls = [n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Call)
             and isinstance(n.func, ast.Attribute) and n.func.attr == "add_argument"]
    return {a.value for c in calls for a in c.args
            if isinstance(a, ast.Constant) and isinstance(a.value, str) and a.value.startswith("--")}


def _known_flags() -> set:
    """Flags of the CLI's subcommands, the app and the benchmark scripts the README runs."""
    import app
    commands = build_parser()._subparsers._group_actions[0].choices
    scripts = sorted(set(re.findall(r"benchmarks/(\w+)\.py", README)))
    assert "gpu" in scripts and all((ROOT / "benchmarks" / f"{s}.py").is_file() for s in scripts)
    return set().union(*(_options(p) for p in commands.values()), _options(app.build_parser()),
                       *(_script_options(ROOT / "benchmarks" / f"{s}.py") for s in scripts))


def _missing(text: str, known: set) -> list:
    return sorted(f for f in set(re.findall(r"(--[a-z][a-z-]+)", text)) if f not in known)


def test_readme_flags_exist_in_the_cli_the_app_or_a_benchmark():
    known = _known_flags()
    assert {"--models", "--budget-s", "--pairs"} <= known      # gpu.py's, gpu.py's, quality.py's
    assert _missing("python benchmarks/gpu.py --models x --made-up-flag", known) == ["--made-up-flag"]
    missing = _missing(README, known)
    assert not missing, f"README mentions flags that do not exist: {missing}"


def test_readme_timeline_example_is_a_valid_timeline_file(tmp_path):
    """The README's timeline JSON reads as a timeline (its image paths resolved next to the file)."""
    import json
    import shutil

    from interp.cli.inputs import read_timeline
    block = next(b for b in re.findall(r"```json\n(.*?)```", README, re.S) if "keyframes" in b)
    data = json.loads(block)
    examples = Path(__file__).resolve().parents[1] / "assets" / "examples"
    for k, name in zip(data["keyframes"], ("astronaut.jpg", "chelsea.jpg", "coffee.jpg")):
        shutil.copy(examples / name, tmp_path / k["image"])
        if isinstance(k.get("pose"), str):
            pose = re.search(r"```json\n(.*?)```", README.split("### Pose guidance")[1], re.S)
            (tmp_path / k["pose"]).write_text(pose.group(1))
    (tmp_path / "t.json").write_text(block)
    timeline = read_timeline(tmp_path / "t.json", [], False, [9])
    assert len(timeline.keyframes) == 3 and timeline.segments[1].duration == 1.5


def test_front_matter_preloads_the_default_model_its_controlnet_and_clip():
    """The Space preloads the repos the default start-up loads (sd15, its ControlNet, the paper's
    CLIP) with a weight file and config for each component; the hardware is a real flavour."""
    import open_clip
    import yaml
    from huggingface_hub import SpaceHardware

    from interp.models.load import PRESETS
    from interp.models.startup import DEFAULT_PRESET
    from interp.rank import DEFAULT_CLIP
    meta = yaml.safe_load(README.split("---\n", 2)[1])
    assert meta["suggested_hardware"] in {h.value for h in SpaceHardware}
    preload = dict(entry.split(" ", 1) for entry in meta["preload_from_hub"])
    sd, controlnet = PRESETS[DEFAULT_PRESET]
    clip_repo = open_clip.get_pretrained_cfg(*DEFAULT_CLIP)["hf_hub"].rstrip("/")
    assert set(preload) == {sd, controlnet, clip_repo}
    files = set(preload[sd].split(","))
    for part, weights in (("unet", "diffusion_pytorch_model"), ("vae", "diffusion_pytorch_model"),
                          ("text_encoder", "model")):
        assert {f"{part}/config.json", f"{part}/{weights}.safetensors"} <= files
    assert {"tokenizer/vocab.json", "tokenizer/merges.txt", "scheduler/scheduler_config.json"} <= files
    assert set(preload[controlnet].split(",")) == {"config.json", "diffusion_pytorch_model.safetensors"}
    assert preload[clip_repo] == "open_clip_model.safetensors"
