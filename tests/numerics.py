"""How jaxstyle's tests compare numbers: the float32 policy, written once.

Two CPUs run this suite (an AMD EPYC with AVX2 and an Intel Xeon with AVX-512), and
float32 results differ between them in their last bits. Adam turns those bits into
full-size steps wherever a gradient is near zero, and on random weights float32
picks a different maximum than float64 in a few 2x2 max-pool windows, which sends the
gradient of a whole receptive field elsewhere. Hence:

1. **Trajectories are compared in float64** (``jax_enable_x64``, ``torch.float64``):
   many steps, every loss and the final image, to 1e-10 relative.
2. **Float32 is compared one step at a time, from the same point**, and only on what
   float32 resolves. An element is *resolved* when its float64 value is at least
   :data:`RESOLVED_FACTOR` times the float32 error of *each* implementation at that
   element (each one's float32 result against its own float64 result). Scalars
   (losses) are always far above their float32 error and are compared to
   :data:`FLOAT32_RTOL`.
3. **Float32 must resolve almost everything**: at least :data:`MIN_RESOLVED` of the
   elements, so the mask can only set aside the few max-pool ties and near-zero
   gradients, never hide a wrong result.

A test that compares float32 results uses :func:`resolved` and
:func:`assert_float32_agrees`; nothing else in the suite compares float32 arrays
between implementations or across CPUs.
"""

from __future__ import annotations

import numpy as np

RESOLVED_FACTOR = 100.0
FLOAT32_RTOL = 1e-5
MIN_RESOLVED = 0.95


def resolved(reference64: np.ndarray, *float32_results: np.ndarray) -> np.ndarray:
    """Mask of the elements that every float32 result resolves.

    ``reference64`` is the float64 value; ``float32_results`` are pairs flattened as
    ``(a32, a64, b32, b64, ...)``: each implementation's float32 result followed by its
    own float64 result.
    """
    if len(float32_results) % 2:
        raise ValueError("give each float32 result with its own float64 result")
    reference64 = np.abs(np.asarray(reference64, np.float64))
    mask = np.ones(reference64.shape, bool)
    for r32, r64 in zip(float32_results[::2], float32_results[1::2], strict=True):
        error = np.abs(np.asarray(r32, np.float64) - np.asarray(r64, np.float64))
        mask &= reference64 >= RESOLVED_FACTOR * error
    return mask


def assert_float32_agrees(a32: np.ndarray, b32: np.ndarray, mask: np.ndarray, rtol: float = FLOAT32_RTOL) -> None:
    """``a32`` and ``b32`` agree on the resolved elements, relative to the largest of them,
    and float32 resolves at least :data:`MIN_RESOLVED` of the elements."""
    fraction = float(mask.mean())
    assert fraction >= MIN_RESOLVED, f"float32 resolves only {fraction:.1%} of the elements"
    a, b = np.asarray(a32, np.float64)[mask], np.asarray(b32, np.float64)[mask]
    scale = np.abs(b).max()
    worst = np.abs(a - b).max() / scale
    assert worst <= rtol, f"float32 results differ by {worst:.2e} of their scale on resolved elements"
