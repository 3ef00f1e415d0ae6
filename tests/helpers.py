"""Independent reference computations for tests (a second method, not the code under test)."""
from __future__ import annotations

import numpy as np


def evenly_paced(positions, distances) -> np.ndarray:
    """Where frames go so adjacent distances are equal: the inverse of the cumulative distance as a
    function of position, by numpy's linear interpolation (distances must be > 0)."""
    positions = np.asarray(positions, dtype=float)
    cumulative = np.concatenate([[0.0], np.cumsum(distances)])
    targets = np.linspace(0.0, cumulative[-1], len(positions))
    return np.interp(targets, cumulative, positions)
