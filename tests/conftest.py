"""Shared test fixtures: small images made on the fly (never the benchmark data), a fixed seed."""

from __future__ import annotations

import numpy as np
import pytest


def _phantom(size: int) -> np.ndarray:
    """Shepp–Logan phantom at ``size``², zero outside the inscribed circle (``radon(circle=True)``)."""
    from skimage.data import shepp_logan_phantom
    from skimage.transform import resize

    image = resize(shepp_logan_phantom(), (size, size), anti_aliasing=True)
    offset = np.arange(size) - size // 2
    image[offset[:, None] ** 2 + offset[None, :] ** 2 > (size // 2) ** 2] = 0.0
    return image.astype(np.float32)


@pytest.fixture
def seed() -> int:
    """The seed every deterministic test uses."""
    return 0


@pytest.fixture(scope="session")
def camera64() -> np.ndarray:
    """A 64×64 uint8 crop of scikit-image's camera (the man's head and the camera: real texture)."""
    from skimage.data import camera

    return np.ascontiguousarray(camera()[80:208:2, 200:328:2])


@pytest.fixture(scope="session")
def astronaut32() -> np.ndarray:
    """A 32×32×3 uint8 colour image (scikit-image's astronaut, down-sampled)."""
    from skimage.data import astronaut

    return np.ascontiguousarray(astronaut()[::16, ::16])


@pytest.fixture(scope="session")
def phantom64() -> np.ndarray:
    """64×64 float32 Shepp–Logan phantom in [0, 1], zero outside the inscribed circle."""
    return _phantom(64)


@pytest.fixture(scope="session")
def phantom_factory():
    """``phantom_factory(size)`` → a Shepp–Logan phantom of that size (zero outside the circle)."""
    return _phantom


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """Run the suite with one intra-op thread (``NESTNET_TEST_THREADS`` to change).

    The tests fit tiny networks on tiny grids, where a second OpenMP thread only adds waiting: measured
    on the shared 2-core machine, 40 NestNet steps on a 16×16 image took 5.2 s with two threads and
    0.45 s with one.  It also keeps the numbers independent of the machine's core count.
    """
    import os

    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(int(os.environ.get("NESTNET_TEST_THREADS", "1")))
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session", autouse=True)
def _eager_nested_activation():
    """Keep the fused activation eager: ``torch.compile`` would cost tens of seconds per test process
    once an input passes the auto threshold (a 32³ render at width 256 does), and the tests check
    correctness, not speed.  ``tests/monai_nets/test_activations.py`` checks the compiled path itself."""
    import monai_nets

    previous = monai_nets.get_fused_backend()
    monai_nets.set_fused_backend("eager")
    yield
    monai_nets.set_fused_backend(previous)
