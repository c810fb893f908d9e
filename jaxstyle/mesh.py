"""Spreading a batch of settings, and each image's rows, over every device of every host.

The mesh has two axes, ``settings x space``: the settings axis holds the batch; the
space axis (one device unless images are split) holds each image's rows. An image
``(B, 1, H, W, 3)`` and every array shaped like it (Adam's moments, the moving average)
are split ``P('settings', None, 'space')``; the content targets' features along their
rows too; the network and the style targets are replicated. Inside the jitted step
the network runs in a ``shard_map`` over ``space`` with explicit halo exchanges
(:mod:`jaxstyle.spatial`); XLA partitions the rest (the losses' sums, the TV term's
halo).
Arrays are built as global arrays from data every process holds in full (each process
computes the same settings list), so the same code runs on one device, many devices,
or many hosts.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxstyle.errors import JaxstyleError, one_line

AXIS = "settings"
SPACE = "space"


def settings_mesh(spatial_shards: int = 1) -> Mesh:
    """A ``settings x space`` mesh over all devices of all processes, ``spatial_shards`` along space."""
    devices = np.asarray(jax.devices())
    return Mesh(devices.reshape(-1, spatial_shards), (AXIS, SPACE))


def single_run_mesh(spatial_shards: int = 1) -> Mesh:
    """The mesh of one stylization: its first local device, or the first ``spatial_shards``
    devices of all processes along space."""
    devices = jax.local_devices()[:1] if spatial_shards == 1 else jax.devices()[:spatial_shards]
    return Mesh(np.asarray(devices).reshape(1, -1), (AXIS, SPACE))


def image_sharding(mesh: Mesh, ndim: int = 5, split: bool = True, batched: bool = True) -> NamedSharding:
    """An image-shaped array ``(..., H, W, 3)`` of ``ndim`` axes: the leading axis over settings
    (when ``batched``), its rows over space (when ``split``)."""
    spec = [AXIS if batched else None] + [None] * (ndim - 1)
    if split:
        spec[ndim - 3] = SPACE
    return NamedSharding(mesh, PartitionSpec(*spec))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading axis split over the mesh, the rest whole."""
    return NamedSharding(mesh, PartitionSpec(AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    """A full copy on every device."""
    return NamedSharding(mesh, PartitionSpec())


def padded_length(k: int, multiple: int) -> int:
    """The smallest multiple of ``multiple`` that is at least ``k``."""
    return -(-k // multiple) * multiple


def pad_leading(tree: Any, length: int) -> Any:
    """Pad every leaf's leading axis to ``length`` by repeating its last entry.

    Padding settings are real copies of the last setting (never zeros, which could
    diverge or waste a different amount of work); their results are dropped.
    """

    def pad(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if len(x) == length:
            return x
        return np.concatenate([x, np.repeat(x[-1:], length - len(x), axis=0)])

    return jax.tree.map(pad, tree)


def to_global(tree: Any, sharding: NamedSharding) -> Any:
    """Place host arrays (the same in every process) as global arrays with ``sharding``."""

    def place(x: Any) -> jax.Array:
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

    return jax.tree.map(place, tree)


def to_host(tree: Any) -> Any:
    """Global arrays to numpy arrays holding every entry, in every process."""
    if jax.process_count() == 1:
        return jax.tree.map(np.asarray, tree)
    from jax.experimental import multihost_utils

    return multihost_utils.process_allgather(tree, tiled=True)


def agreed(signum: int | None, due: bool) -> tuple[int | None, bool]:
    """Whether any process was asked to stop (by which signal) and whether any finds a checkpoint due.

    Each process catches its own signals and reads its own clock. A process acting on
    them alone would stop, or enter the checkpoint's barrier, while another runs the next
    step's collectives, and both would wait forever; so at each chunk boundary every
    process takes the same decision: ``max`` over processes of the signal number (0 for
    none) and of ``due``.
    """
    if jax.process_count() == 1:
        return signum, due
    from jax.experimental import multihost_utils

    flags = np.asarray(multihost_utils.process_allgather(np.array([signum or 0, int(due)], np.int32)))
    signals, dues = flags.reshape(-1, 2).T
    return (int(signals.max()) or None), bool(dues.max())


def local_rows(array: jax.Array) -> list[int]:
    """Indexes along the leading axis whose data this process holds (first replica only; for an
    image split over space, the process holding its top rows)."""
    rows: set[int] = set()
    for shard in array.addressable_shards:
        if shard.replica_id == 0 and all(s.start in (None, 0) for s in shard.index[1:]):
            rows.update(range(*shard.index[0].indices(array.shape[0])))
    return sorted(rows)


def initialize_distributed(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    local_device_ids: list[int] | None = None,
) -> None:
    """Join a multi-process JAX run.

    With no arguments, JAX reads the cluster's environment (SLURM, Open MPI, TPU pod
    slices); otherwise all three must be given. ``local_device_ids`` are the local
    accelerators this process uses (one process per GPU: ``[i]`` for process ``i`` of a
    host); unset, a process takes every local device (one process per host). On CPU,
    the processes talk through gloo collectives.
    """
    explicit = (coordinator, num_processes, process_id)
    if any(v is not None for v in explicit) and not all(v is not None for v in explicit):
        raise JaxstyleError("--coordinator, --num-processes and --process-id go together")
    if local_device_ids is not None and coordinator is None:
        raise JaxstyleError("--local-device-ids goes with --coordinator, --num-processes and --process-id")
    # Only CPU devices use this setting; on accelerators it changes nothing.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    # JAX's preemption service would take SIGTERM from jaxstyle's own handler (and agree on
    # it through reached_preemption_sync_point at every step). Off: the runner agrees on any
    # stop signal, SIGINT too, and on time-based checkpoints, in one collective per chunk
    # (:func:`agreed`).
    jax.config.update("jax_enable_preemption_service", False)
    try:
        if coordinator is None:
            jax.distributed.initialize()
        else:
            jax.distributed.initialize(
                coordinator, num_processes=num_processes, process_id=process_id, local_device_ids=local_device_ids
            )
    except (RuntimeError, ValueError) as e:
        raise JaxstyleError(f"cannot start the multi-process run ({one_line(e)})") from None


def host_memory_bytes(available: bool = False) -> int | None:
    """The machine's physical memory, or with ``available`` the memory free now; at most the
    container's limit (cgroup v2) where there is one. ``None`` where the system does not say."""
    try:
        pages = os.sysconf("SC_AVPHYS_PAGES" if available else "SC_PHYS_PAGES")
        total = pages * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return None
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
    except OSError:
        return total
    return min(total, int(limit)) if limit.isdigit() else total


def device_memory_bytes() -> tuple[int, str]:
    """Memory one device can use, and where the number comes from (:func:`usable_memory`)."""
    device = jax.local_devices()[0]
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    return usable_memory(device, stats, jax.local_device_count())


# The XLA allocator's pool on a GPU: JAX preallocates this fraction of the device unless
# XLA_PYTHON_CLIENT_MEM_FRACTION says otherwise; memory_stats' bytes_limit is the pool.
GPU_POOL_NOTE = "XLA's pool: XLA_PYTHON_CLIENT_MEM_FRACTION of the device, 75% unless set"


def usable_memory(
    device: Any,
    stats: dict | None,
    local_devices: int,
    gpu_total: Callable[[Any], int | None] | None = None,
) -> tuple[int, str]:
    """The memory plans are made for, from a device's ``memory_stats()`` (``stats``).

    Accelerators report their limit as ``bytes_limit``: on a GPU the allocator's pool
    (:data:`GPU_POOL_NOTE`; the planner fills ``plan.MEMORY_FILL`` of it, about 52% of the
    device by default). With ``XLA_PYTHON_CLIENT_ALLOCATOR=platform`` a GPU reports no
    stats; then its total memory from ``nvidia-smi`` (``gpu_total``), never the host's.
    For CPU devices the machine's available memory (:func:`host_memory_bytes`) is shared
    among the ``local_devices``.
    """
    kind = device.device_kind
    if stats and stats.get("bytes_limit"):
        pool = f" ({GPU_POOL_NOTE})" if device.platform == "gpu" else ""
        return int(stats["bytes_limit"]), f"{kind} memory{pool}"
    if device.platform == "cpu":
        available = host_memory_bytes(available=True) or 8 << 30
        return available // max(1, local_devices), "available host memory per CPU device"
    total = (gpu_total or nvidia_smi_total)(device) if device.platform == "gpu" else None
    if total:
        return total, f"{kind} memory (nvidia-smi's total: the device reports no allocator statistics)"
    raise JaxstyleError(
        f"{kind} reports no memory limit (XLA_PYTHON_CLIENT_ALLOCATOR=platform?) and none could be read "
        "otherwise: use JAX's default allocator to plan the memory of the run"
    )


def nvidia_smi_total(device: Any) -> int | None:
    """The total memory of a GPU in bytes as ``nvidia-smi`` reports it; ``None`` where it cannot."""
    import subprocess

    index = getattr(device, "local_hardware_id", None)
    command = ["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits"]
    try:
        out = subprocess.run([*command, "-i", str(index or 0)], capture_output=True, text=True, timeout=10)
        return int(out.stdout.split()[0]) * 2**20 if out.returncode == 0 else None
    except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
        return None
