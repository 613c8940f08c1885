"""The "nearest authored example" signal: how close a message is to the corpus's harmful requests
compared with its benign ones.

The trainer (`apps.safety.train_classifier`) averages the MiniLM embeddings of every expansion of one
corpus core (or content item, or standalone message) into one unit vector, so that a core stands for
its content rather than for the frames it went through, and keeps the harmful and injection ones and
the benign ones. To fit the 64 KB cap of `data/classifier.npz`, the vectors are stored in the
principal subspace of the corpus (`DIMENSIONS` components of the centred core vectors, int8 with
per-component scales; ~45 KB for ~1,100 cores): a message is centred and projected the same way, and
similarity is the cosine there. On the corpus's out-of-fold data this subspace separated harm from
hard negatives better than the full 384-d cosine (the dropped directions are mostly phrasing).

For a view of a message, `s_h` is its highest similarity to a harmful core and `s_b` to a benign one;
the view is blocked when `s_h >= min_similarity` and `s_h - s_b >= min_margin`. Both thresholds are
chosen by the trainer on out-of-fold data grouped by core, together with the head's threshold, so
that the head OR this check keeps the corpus's benign false-positive rate within the bound. The cost
at inference is one (views x 384) @ (384 x 32) product and one (views x 32) @ (32 x ~1,100).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

DIMENSIONS = 32
# Fields of the npz; all present or all absent (an older head-only file), never some of them.
FIELDS = ("nearest_mean", "nearest_basis", "nearest_basis_scale", "nearest_harmful", "nearest_benign",
          "nearest_scale", "nearest_min_similarity", "nearest_min_margin")


class Nearest(NamedTuple):
    """Reference cores in the principal subspace, unit rows, and the block thresholds."""

    mean: np.ndarray       # (384,) centre of the core vectors
    basis: np.ndarray      # (k, 384) principal directions
    harmful: np.ndarray    # (n_h, k) unit rows: harmful and injection cores
    benign: np.ndarray     # (n_b, k) unit rows: benign cores
    min_similarity: float  # t: block only when s_h >= t
    min_margin: float      # m: ... and s_h - s_b >= m


def _unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)


def project(features: np.ndarray, mean: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """Unit rows of `features` (n, 384) centred and projected onto `basis` (k, 384)."""
    return _unit((features - mean) @ basis.T)


def fit(vectors: np.ndarray, is_harmful: np.ndarray, *, dimensions: int = DIMENSIONS,
        min_similarity: float = 0.0, min_margin: float = 0.0) -> Nearest:
    """The reference sets from core vectors (n, 384) with their label (True: harmful or injection),
    quantised exactly as `to_arrays` stores them, so the trainer's validation sees what is served."""
    mean = vectors.mean(axis=0).astype(np.float16).astype(np.float32)
    _, _, vt = np.linalg.svd(vectors - mean, full_matrices=False)
    basis_q, basis_scale = _quantise_rows(vt[:dimensions])
    basis = basis_q.astype(np.float32) * basis_scale.astype(np.float32)[:, None]
    coords = (vectors - mean) @ basis.T
    coords_q, scale = _quantise_columns(coords)
    coords = coords_q.astype(np.float32) * scale.astype(np.float32)
    return Nearest(mean, basis, _unit(coords[is_harmful]), _unit(coords[~is_harmful]),
                   float(min_similarity), float(min_margin))


def _quantise_rows(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scale = (np.abs(matrix).max(axis=1) / 127.0).clip(min=1e-8).astype(np.float16)
    return np.round(matrix / scale.astype(np.float32)[:, None]).clip(-127, 127).astype(np.int8), scale


def _quantise_columns(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scale = (np.abs(matrix).max(axis=0) / 127.0).clip(min=1e-8).astype(np.float16)
    return np.round(matrix / scale.astype(np.float32)).clip(-127, 127).astype(np.int8), scale


def to_arrays(vectors: np.ndarray, is_harmful: np.ndarray, nearest: Nearest) -> dict[str, np.ndarray]:
    """The npz fields for `nearest` (fitted on `vectors` by `fit`): int8 coordinates, float16 scales."""
    basis_q, basis_scale = _quantise_rows(nearest.basis)
    coords_q, scale = _quantise_columns((vectors - nearest.mean) @ nearest.basis.T)
    return {
        "nearest_mean": nearest.mean.astype(np.float16), "nearest_basis": basis_q,
        "nearest_basis_scale": basis_scale, "nearest_harmful": coords_q[is_harmful],
        "nearest_benign": coords_q[~is_harmful], "nearest_scale": scale,
        "nearest_min_similarity": np.float32(nearest.min_similarity),
        "nearest_min_margin": np.float32(nearest.min_margin),
    }


def from_npz(data: np.lib.npyio.NpzFile, path: object = "weights") -> Nearest | None:
    """The signal stored in `data`; None for a head-only file, ValueError when only some fields are
    there (a damaged or half-written file must not silently drop the check)."""
    present = [name for name in FIELDS if name in data.files]
    if not present:
        return None
    if len(present) != len(FIELDS):
        missing = ", ".join(name for name in FIELDS if name not in data.files)
        raise ValueError(f"{path} lacks the nearest-example fields {missing}")
    basis = data["nearest_basis"].astype(np.float32) * data["nearest_basis_scale"].astype(np.float32)[:, None]
    scale = data["nearest_scale"].astype(np.float32)
    return Nearest(data["nearest_mean"].astype(np.float32), basis,
                   _unit(data["nearest_harmful"].astype(np.float32) * scale),
                   _unit(data["nearest_benign"].astype(np.float32) * scale),
                   float(data["nearest_min_similarity"]), float(data["nearest_min_margin"]))


def similarities(features: np.ndarray, nearest: Nearest) -> tuple[np.ndarray, np.ndarray]:
    """(s_h, s_b): for every row of `features` (n, 384), its highest similarity to a harmful core and
    to a benign core."""
    query = project(features, nearest.mean, nearest.basis)
    return (query @ nearest.harmful.T).max(axis=1), (query @ nearest.benign.T).max(axis=1)


def blocked(s_h: np.ndarray, s_b: np.ndarray, min_similarity: float, min_margin: float) -> np.ndarray:
    """The rule: close to a harmful core, and clearly closer to it than to any benign one."""
    return (s_h >= min_similarity) & (s_h - s_b >= min_margin)
