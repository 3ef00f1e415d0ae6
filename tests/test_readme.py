"""The README's examples stay true: the pose JSON parses, documented flags exist."""
import re
from pathlib import Path

from interp.cli.main import build_parser
from interp.pose.keypoints import Pose

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_readme_pose_example_is_valid_openpose_json():
    block = re.search(r"```json\n(.*?)```", README, re.S).group(1)
    pose = Pose.from_json(block)
    assert len(pose.people) == 1 and pose.people[0][16] == (0, 0, 0)


def _options(parser) -> set:
    return {s for a in parser._actions for s in a.option_strings}


def test_readme_flags_exist_in_the_cli_or_the_app():
    import app
    commands = build_parser()._subparsers._group_actions[0].choices
    known = set().union(*(_options(p) for p in commands.values()), _options(app.build_parser()))
    flags = set(re.findall(r"(--[a-z][a-z-]+)", README))
    missing = sorted(f for f in flags if f not in known)
    assert not missing, f"README mentions flags that do not exist: {missing}"
