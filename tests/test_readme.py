"""The README's examples stay true: the pose JSON parses, documented flags exist."""
import re
from pathlib import Path

from interp.cli import build_parser
from interp.pose import Pose

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_readme_pose_example_is_valid_openpose_json():
    block = re.search(r"```json\n(.*?)```", README, re.S).group(1)
    pose = Pose.from_json(block)
    assert len(pose.people) == 1 and pose.people[0][16] == (0, 0, 0)


def test_readme_flags_exist_in_the_cli():
    parser = build_parser()
    render = parser._subparsers._group_actions[0].choices["render"]
    known = {s for a in render._actions for s in a.option_strings}
    flags = set(re.findall(r"(--[a-z][a-z-]+)", README)) - {"--json", "--render", "--out"}
    missing = sorted(f for f in flags if f not in known)
    assert not missing, f"README mentions flags the CLI lacks: {missing}"
