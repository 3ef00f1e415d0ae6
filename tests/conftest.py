"""Shared test set-up: offline, quiet, few threads; small shared fixtures."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "assets", "examples")


@pytest.fixture(scope="session")
def photo_pair():
    """Two real photos (public domain, from assets/examples)."""
    from PIL import Image
    return (Image.open(os.path.join(EXAMPLES, "astronaut.jpg")).convert("RGB"),
            Image.open(os.path.join(EXAMPLES, "chelsea.jpg")).convert("RGB"))


@pytest.fixture
def client(url):
    """A gradio_client session of the module's studio (its `url` fixture: tests/studio.py)."""
    from studio import connect
    return connect(url)


def pytest_configure(config):
    """Tiny models run fastest on one thread (the CI machine has 2 cores shared with ffmpeg etc.)."""
    import torch
    torch.set_num_threads(1)
