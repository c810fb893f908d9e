"""Video style transfer with temporal consistency (Ruder, Dosovitskiy and Brox 2016).

A clip is read (a video file or a folder of frames, :mod:`jaxstyle.videoio`), resized
to the output size, and its optical flow computed between consecutive frames in both
directions (:mod:`jaxstyle.flow`). Each frame is then a stylize problem with two more
per-frame inputs, carried as per-setting data through the one pipeline
(:class:`jaxstyle.pipeline.FrameTargets`): a neighbouring stylized frame warped into it,
with its consistency mask, for the temporal loss (:func:`jaxstyle.losses.temporal_loss`),
and the image it starts from.

Two schedules, after artistic-videos (manuelruder/artistic-videos at 40e7447):

- ``sequential`` (``artistic_video.lua``): frame after frame on one device, each
  initialised with the previous stylized frame warped by the flow (its ``-init
  prevWarped``) and pulled towards it by the temporal loss; with ``temporal_indices``
  ``J`` (its ``-flow_relative_indices``, e.g. 1,2,4), towards each earlier stylized frame
  ``i - j`` warped by the flow between the two frames, each pixel by its closest reliable
  earlier frame (the long-term loss of the paper's §3.3, :func:`long_term_masks`).
- ``multipass`` (``artistic_video_multiPass.lua``): all frames optimised together as
  one batch (vmapped, sharded over every device and host like a sweep), pass after
  pass. Pass 1 stylizes each frame on its own; each later pass starts every frame from
  its previous-pass result blended with its neighbour in the pass's direction, warped
  (``-blendWeight 1``, the other direction ``-blendWeight_lastPass 0``), and pulls it
  towards that warped neighbour; the direction alternates. Departure: artistic-videos
  goes through a pass frame by frame and takes the neighbour from the pass in flight
  (Gauss-Seidel); here every frame of a pass takes its neighbour from the previous pass
  (Jacobi), which is what lets a pass run as one batch. It also turns the temporal loss
  on from pass 2 rather than ``-use_temporalLoss_after 8``, for the fewer passes a batch
  of all frames affords.

Long-term terms are for the sequential schedule, as in artistic-videos (its multi-pass
script has none). Departure in warping: a point that the flow sends outside the frame takes
the nearest edge pixel, where artistic-videos pads the initialisation with the mean
pixel; its mask is 0 there either way.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from jaxstyle import image as imageio
from jaxstyle.checkpoint import CheckpointOptions, digest
from jaxstyle.config import Execution, Settings, numbers_checked_as, override, resolve, split_execution
from jaxstyle.errors import JaxstyleError, Stopped, one_line
from jaxstyle.files import atomic_output, write_json
from jaxstyle.flow import consistency_mask, flows, warp
from jaxstyle.videoio import DEFAULT_FOLDER_FPS, Clip, check_output, parse_range, read_clip

if TYPE_CHECKING:  # the pipeline imports JAX: only when a run starts
    from jax.sharding import Mesh

    from jaxstyle.masks import Masks
    from jaxstyle.pipeline import ChunkReport, FrameTargets, Job, MaskInputs

    OnChunk = Callable[[ChunkReport], None] | None

StopSignal = Callable[[], int | None] | None

MODES = ("sequential", "multipass")
# artistic_video.lua's -temporal_weight 1e3 against -content_weight 5: 200 times the content
# weight. Both of its losses are means over elements, as jaxstyle's are, and both scale
# alike with the input convention's pixel range, so the ratio carries over.
TEMPORAL_PER_CONTENT = 200.0
DEFAULT_PASSES = 6
# A video checkpoint directory (:class:`VideoCheckpoints`): its manifest, and the names of its units.
VIDEO_FORMAT_VERSION = 1
MANIFEST = "video.json"
FRAME_NAME = "frame_{:06d}"
PASS_PREFIX = "pass_"
PASS_NAME = PASS_PREFIX + "{:04d}"


@dataclass
class Motion:
    """Flows and masks of a clip at the output size (:mod:`jaxstyle.flow` conventions).

    Attributes:
      forward, backward: ``(N-1, H, W, 2)``: frame ``i`` to ``i+1``, and ``i+1`` to ``i``.
      mask_prev: ``(N-1, H, W)``: weight of frame ``i`` warped into frame ``i+1`` (by ``backward[i]``).
      mask_next: ``(N-1, H, W)``: weight of frame ``i+1`` warped into frame ``i`` (by ``forward[i]``).
      earlier: for each relative index ``j > 1`` of the long-term loss, ``(flow, mask)``:
        ``flow[i]`` from frame ``i+j`` to ``i``, ``(N-j, H, W, 2)``, and ``mask[i]`` the weight
        of frame ``i`` warped into frame ``i+j`` by it, ``(N-j, H, W)``.
    """

    forward: np.ndarray
    backward: np.ndarray
    mask_prev: np.ndarray
    mask_next: np.ndarray
    earlier: dict[int, tuple[np.ndarray, np.ndarray]] = dataclasses.field(default_factory=dict)

    @classmethod
    def of(cls, frames: np.ndarray, indices: Sequence[int] = (1,)) -> Motion:
        """The flows and masks of ``frames``: between neighbours, and between frames ``j``
        apart for each relative index ``j > 1`` in ``indices``."""
        forward, backward = flows(frames)
        prev = np.stack([consistency_mask(b, f) for f, b in zip(forward, backward, strict=True)])
        nxt = np.stack([consistency_mask(f, b) for f, b in zip(forward, backward, strict=True)])
        return cls(forward, backward, prev, nxt, {j: backward_motion(frames, j) for j in indices if j > 1})

    def back(self, j: int) -> tuple[np.ndarray, np.ndarray]:
        """``(flow, mask)`` that warp frame ``i`` into frame ``i+j`` (index ``i``), and its weight."""
        return (self.backward, self.mask_prev) if j == 1 else self.earlier[j]

    def previous_warped(self, images: np.ndarray) -> np.ndarray:
        """``out[i] = images[i]`` warped into frame ``i+1``, ``(N-1, H, W, 3)``."""
        return np.stack([warp(x, f) for x, f in zip(images[:-1], self.backward, strict=True)])

    def next_warped(self, images: np.ndarray) -> np.ndarray:
        """``out[i] = images[i+1]`` warped into frame ``i``, ``(N-1, H, W, 3)``."""
        return np.stack([warp(x, f) for x, f in zip(images[1:], self.forward, strict=True)])


def backward_motion(frames: np.ndarray, j: int) -> tuple[np.ndarray, np.ndarray]:
    """``(flow, mask)`` from each frame ``i+j`` back to frame ``i``, and the weight of frame ``i`` warped by it."""
    forward, backward = flows(frames, j)
    masks = [consistency_mask(b, f) for f, b in zip(forward, backward, strict=True)]
    return backward, np.stack(masks) if masks else np.zeros(backward.shape[:3], np.float32)


def long_term_masks(masks: np.ndarray) -> np.ndarray:
    """Ruder et al.'s long-term weights (§3.3) from the masks ``c`` of the earlier frames, closest first.

    ``c_long[j] = max(c[j] - sum_{k < j} c[k], 0)``: each pixel is pulled towards the
    closest earlier frame in which it is reliable, a farther frame taking only the weight
    the closer ones leave. ``masks``: ``(J, H, W)``, a frame that does not exist (before
    the clip's start) all 0. Departure: artistic-videos' ``processFlowWeights``
    (``closestFirst``) subtracts the closer frames' weights after reducing them in place,
    not their masks as the paper writes; the two differ only where a closer frame's own
    weight was reduced. The paper's formula is followed here.
    """
    closer = np.concatenate([np.zeros_like(masks[:1]), np.cumsum(masks, axis=0)[:-1]])
    return np.maximum(masks - closer, 0.0)


def earlier_targets(
    i: int, stylized: Sequence[np.ndarray], motion: Motion, indices: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Frame ``i``'s temporal targets from the ``stylized`` frames before it: each earlier frame
    ``i - j`` (``j`` in ``indices``, closest first) warped into frame ``i``, ``(J, H, W, 3)``, and
    their :func:`long_term_masks`, ``(J, H, W)``; zeros where ``i - j`` is before the clip."""
    hw = motion.mask_prev.shape[1:]
    warped, masks = np.zeros((len(indices), *hw, 3), np.float32), np.zeros((len(indices), *hw), np.float32)
    for n, j in enumerate(indices):
        if i - j >= 0:
            flow, mask = motion.back(j)
            warped[n], masks[n] = warp(stylized[i - j], flow[i - j]), mask[i - j]
    return warped, long_term_masks(masks)


def temporal_error(stylized: np.ndarray, motion: Motion, j: int = 1) -> float:
    """Mean absolute difference between each frame and the frame ``j`` before it warped into it, over
    reliable pixels (``j = 1``: its predecessor; ``j > 1`` needs ``motion``'s flows ``j`` frames apart).

    ``sum_i sum_p c_i(p) |x_i(p) - w(x_{i-j})(p)| / (3 sum_i sum_p c_i(p))`` over frames
    ``i >= j``, with ``c`` the consistency mask (0 at occlusions and motion boundaries).
    """
    flow, mask = motion.back(j)
    warped = np.stack([warp(x, f) for x, f in zip(stylized[:-j], flow, strict=True)])
    diff = np.abs(stylized[j:] - warped).mean(axis=-1)
    return float((diff * mask).sum() / mask.sum())


@dataclass
class VideoResult:
    """What :func:`video` returns.

    Attributes:
      frames: the stylized frames, float32 RGB in [0, 1], ``(N, H, W, 3)``.
      fps: the clip's frame rate.
      motion: its flows and masks at the output size.
      final_losses: each frame's losses in its last pass, ``{name: (N,)}`` (``temporal`` included).
      seconds: wall time of the optimisation, compilation included (flow excluded).
      flow_seconds: wall time of the optical flow and masks.
      settings: the settings used.
      mode, passes, temporal_weight: how it was run.
    """

    frames: np.ndarray
    fps: float
    motion: Motion
    final_losses: dict[str, np.ndarray]
    seconds: float
    flow_seconds: float
    settings: Settings
    mode: str
    passes: int
    temporal_weight: float


def no_frames(k: int, hw: tuple[int, int], terms: int = 1) -> FrameTargets:
    """Frame targets that change nothing: temporal weight 0, ``terms`` warped frames of zeros
    (the same pytree as real ones, so no recompile)."""
    from jaxstyle.pipeline import FrameTargets

    zeros = np.zeros((k, terms, *hw), np.float32)
    return FrameTargets(None, np.zeros((*zeros.shape, 3), np.float32), zeros, np.zeros(k))


def run_sequential(
    job: Job,
    frames: np.ndarray,
    motion: Motion,
    temporal_weight: float,
    on_chunk: OnChunk,
    store: VideoCheckpoints | None = None,
    stop_signal: StopSignal = None,
    indices: Sequence[int] = (1,),
    frame_masks: Sequence[Masks] | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Frame after frame on one device: each starts from the previous result warped, and is pulled
    towards the earlier results ``indices`` frames back (1: the previous one) warped. With
    ``frame_masks`` (read and checked), frame ``i`` has the masks ``frame_masks[i]``; else every frame the job's.

    With ``store``, each finished frame is kept there and skipped when the run is resumed,
    and the frame in flight is checkpointed by the runner.
    """
    from jaxstyle.pipeline import FrameTargets, single_device_mesh

    mesh, hw = single_device_mesh(), frames.shape[1:3]
    out, losses = [], []
    for i, frame in enumerate(frames):
        name = FRAME_NAME.format(i)
        kept = store.kept(name) if store is not None else None
        if kept is None:
            targets = no_frames(1, hw, len(indices))
            if i > 0:
                warped, masks = earlier_targets(i, out, motion, indices)
                init = warp(out[-1], motion.backward[i - 1])[None]  # -init prevWarped, whatever the indices
                targets = FrameTargets(init, warped[None], masks[None], np.full(1, temporal_weight))
            inputs = job.inputs.with_contents([frame], job.settings.color)
            if frame_masks is not None:
                inputs = dataclasses.replace(inputs, masks=frame_masks[i])
            report = on_chunk and (lambda r, i=i: on_chunk(r._replace(micro_batch=i, micro_batches=len(frames))))
            frame_job = dataclasses.replace(job, inputs=inputs, frames=targets)
            kept = run_unit(frame_job, mesh, report, store, name, stop_signal)
        images, frame_losses = unit_results(kept)
        out.append(images[0])
        losses.append(frame_losses)
    return np.stack(out), {name: np.concatenate([loss[name] for loss in losses]) for name in losses[0]}


def run_unit(
    job: Job, mesh: Mesh, on_chunk: OnChunk, store: VideoCheckpoints | None, name: str, stop_signal: StopSignal
) -> dict[str, np.ndarray]:
    """Run a frame's or a pass's job, checkpointed in ``store``'s unit ``name`` and kept there when finished;
    its images and final losses as :func:`unit_arrays`. A stop names the video's checkpoint directory."""
    from jaxstyle.pipeline import run_job

    checkpoint = store.unit(name) if store is not None else None
    try:
        result = run_job(job, mesh, on_chunk=on_chunk, checkpoint=checkpoint, stop_signal=stop_signal)
    except Stopped as e:
        raise Stopped(e.signum, e.step, store.directory if store is not None else None) from None
    arrays = unit_arrays(result.images, result.final_losses)
    if store is not None:
        store.keep(name, arrays)
    return arrays


def unit_arrays(images: np.ndarray, final_losses: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A finished frame's or pass's results as flat named arrays: ``images`` and ``loss_NAME``."""
    return {"images": images, **{f"loss_{name}": value for name, value in final_losses.items()}}


def unit_results(arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``(images, final_losses)`` back from :func:`unit_arrays`."""
    return arrays["images"], {key[5:]: value for key, value in arrays.items() if key.startswith("loss_")}


def pass_targets(p: int, previous: np.ndarray, motion: Motion, temporal_weight: float, blend: float) -> FrameTargets:
    """Pass ``p``'s (``p >= 2``) frame targets from the previous pass's frames, artistic_video_multiPass.lua's way.

    Even passes run backward (the neighbour is the next frame), odd passes forward
    (the previous frame). Each frame starts from
    ``(x_i + d_p c_p w_p + d_n c_n w_n) / (1 + d_p c_p + d_n c_n)`` with ``w`` the warped
    neighbours, ``c`` their masks, ``d`` = ``blend`` in the pass's direction and 0 in the
    other (``-blendWeight``, ``-blendWeight_lastPass``); the temporal loss pulls it
    towards the warped neighbour in the pass's direction. The end frame without such a
    neighbour keeps its previous result and gets no temporal loss.
    """
    from jaxstyle.pipeline import FrameTargets

    n, hw = len(previous), previous.shape[1:3]
    forward = p % 2 == 1
    warped = np.zeros((n, *hw, 3), np.float32)
    mask = np.zeros((n, *hw), np.float32)
    weight = np.full(n, temporal_weight)
    if forward:
        warped[1:], mask[1:] = motion.previous_warped(previous), motion.mask_prev
        weight[0] = 0.0
    else:
        warped[:-1], mask[:-1] = motion.next_warped(previous), motion.mask_next
        weight[-1] = 0.0
    c = blend * mask[..., None]
    init = (previous + c * warped) / (1 + c)
    return FrameTargets(init.astype(np.float32), warped[:, None], mask[:, None], weight)


def run_multipass(
    job: Job,
    mesh: Mesh,
    frames: np.ndarray,
    motion: Motion,
    temporal_weight: float,
    passes: int,
    blend: float,
    on_chunk: OnChunk,
    store: VideoCheckpoints | None = None,
    stop_signal: StopSignal = None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """All frames as one batch, ``passes`` times (see the module's docstring).

    With ``store``, each finished pass is kept there (only the newest: the next pass starts
    from it), a resumed run goes on after it, and the pass in flight is checkpointed by the runner.
    """
    n, hw = len(frames), frames.shape[1:3]
    current, losses, first = None, None, 1
    done = store.newest(PASS_PREFIX) if store is not None else None
    if done is not None:
        current, losses = unit_results(store.kept(PASS_NAME.format(done)))
        store.drop(PASS_NAME.format(done - 1))  # if a run stopped between keeping pass done and this
        first = done + 1
    for p in range(first, passes + 1):
        targets = pass_targets(p, current, motion, temporal_weight, blend) if p > 1 else no_frames(n, hw)

        def report(r, p=p):
            number = (p - 1) * r.micro_batches + r.micro_batch
            on_chunk(r._replace(micro_batch=number, micro_batches=passes * r.micro_batches))

        pass_job = dataclasses.replace(job, frames=targets)
        kept = run_unit(pass_job, mesh, report if on_chunk else None, store, PASS_NAME.format(p), stop_signal)
        if store is not None and p > 1:
            store.drop(PASS_NAME.format(p - 1))  # the next pass starts from this one
        current, losses = unit_results(kept)
    return current, losses


def video(
    clip: str | os.PathLike | np.ndarray | Clip,
    style: str | os.PathLike | np.ndarray | Sequence,
    output: str | os.PathLike | None = None,
    *,
    mode: str = "sequential",
    passes: int = DEFAULT_PASSES,
    temporal_weight: float | None = None,
    temporal_indices: Sequence[int] = (1,),
    blend_weight: float = 1.0,
    frames: str | None = None,
    fps: float | None = None,
    preset: str = "paper",
    weights: str | os.PathLike | None = None,
    settings: Settings | None = None,
    devices: int | None = None,
    execution: Execution | None = None,
    progress: Callable[[ChunkReport], None] | None = None,
    masks: MaskInputs | None = None,
    checkpoint: CheckpointOptions | None = None,
    stop_signal: Callable[[], int | None] | None = None,
    **overrides: Any,
) -> VideoResult:
    """Stylize a clip with temporal consistency; write it to ``output`` if given.

    In a multi-process run (``jax.distributed``), every process computes its share and
    holds the whole result; process 0 alone writes ``output`` and the checkpoints' own files.

    Args:
      clip: a video file (mp4, webm, gif, mov, mkv), a folder of frames, an array
        ``(N, H, W, 3)`` (uint8 or float in [0, 1]), or a :class:`Clip`.
      style: the style image(s), as for :func:`jaxstyle.stylize`.
      output: a video file (the frame rate and any audio are kept) or a new folder of PNGs.
      mode: ``"sequential"`` (frame after frame, one device, one process) or ``"multipass"``
        (all frames as one batch over ``devices`` devices, ``passes`` times).
      passes: multi-pass passes (pass 1 stylizes the frames independently).
      temporal_weight: weight of the temporal loss (default: 200 times the content weight,
        artistic-videos' ratio); 0 turns it off.
      temporal_indices: sequential: how many frames back each temporal term looks, e.g.
        ``(1, 2, 4)``: the previous frame, and the long-term terms of Ruder et al. §3.3
        (each pixel pulled towards its closest reliable earlier frame); ``(1,)``: the
        short-term loss alone. Each term has ``temporal_weight``.
      blend_weight: multi-pass: weight of the warped neighbour in each pass's starting image.
      frames: ``"START:END"``, the frames to take (END excluded; either may be left out).
      fps: the frame rate of a folder or array (default 24), or one that overrides the file's.
      devices: multi-pass: how many devices of ``jax.devices()`` the batch is spread over (default: all).
      execution: how the run is carried out, as for :func:`jaxstyle.stylize`; in multi-pass,
        its ``batch_size`` is the frames per compiled micro-batch (default: from memory).
      progress: called with each chunk's :class:`~jaxstyle.pipeline.ChunkReport` (frames
        or passes count as micro-batches).
      masks: regions, style-image masks, an edit mask or a strength map
        (:class:`~jaxstyle.pipeline.MaskInputs`), the same for every frame.
      checkpoint: where and how often to save the run's state, and whether to resume from
        it (:class:`~jaxstyle.checkpoint.CheckpointOptions`): the frames (sequential) or the
        pass (multi-pass) finished, and the solver state of the one in flight (see
        :class:`VideoCheckpoints`).
      stop_signal: asked after every chunk; a signal number stops the run there (after a
        checkpoint, if ``checkpoint`` is set) with :class:`~jaxstyle.errors.Stopped`.
      **overrides: as for :func:`jaxstyle.stylize`: every recipe setting, e.g. ``max_side=256``,
        ``steps=100``, and every field of :class:`~jaxstyle.config.Execution`, e.g. ``batch_size=4``.
    """
    import jax

    from jaxstyle import mesh as meshlib
    from jaxstyle.api import style_list
    from jaxstyle.pipeline import prepare_job, settings_point

    if mode not in MODES:
        raise JaxstyleError(f"mode {mode!r}: choose from {', '.join(MODES)}")
    if mode == "sequential" and jax.process_count() > 1:
        raise JaxstyleError(
            "mode sequential runs frame after frame on one device, in one process: use mode multipass "
            "to spread a clip over several processes"
        )
    indices = check_temporal_indices(temporal_indices, mode)
    if not (isinstance(passes, int) and 1 <= passes <= 1000):
        raise JaxstyleError(f"passes must be a whole number between 1 and 1000, not {passes}")
    if not (np.isfinite(blend_weight) and blend_weight >= 0):
        raise JaxstyleError(f"blend weight must be a finite number >= 0, not {blend_weight}")
    writer = jax.process_index() == 0
    if output is not None and writer:
        check_output(output)
    execution, overrides = split_execution(execution, overrides)
    with numbers_checked_as(execution.dtype):
        settings = settings or resolve(preset, **overrides)
    clip = as_clip(clip, frames, fps)
    frames_rgb, settings = frames_at_output_size(clip.frames, settings)
    temporal_weight = TEMPORAL_PER_CONTENT * settings.content_weight if temporal_weight is None else temporal_weight
    if not (np.isfinite(temporal_weight) and temporal_weight >= 0):
        raise JaxstyleError(f"temporal weight must be a finite number >= 0, not {temporal_weight}")
    styles = style_list(style)
    start = time.perf_counter()
    motion = Motion.of(frames_rgb, indices)
    flow_seconds = time.perf_counter() - start
    masks_of = per_frame_masks(masks, len(frames_rgb), mode)
    common = {"weights": weights, "execution": execution, "masks": masks if masks_of is None else masks_of(0)}
    frame_masks = None
    schedule: dict[str, Any] = {"mode": mode, "temporal_weight": temporal_weight, "temporal_indices": indices}
    if mode == "sequential":
        job = prepare_job([frames_rgb[0]], styles, settings, **common)
        if masks_of is not None:  # every frame's masks read and checked once, before the first frame runs
            frame_masks = [frame_masks_read(job, frame, masks_of(i)) for i, frame in enumerate(frames_rgb)]
            schedule["frame masks"] = digest(*[a for read in frame_masks for a in read.arrays()])
        store = checkpoint and VideoCheckpoints(checkpoint, video_fingerprint(job, frames_rgb, schedule))
        start = time.perf_counter()
        out, losses = run_sequential(
            job, frames_rgb, motion, temporal_weight, progress, store, stop_signal, indices, frame_masks
        )
        passes = 1
    else:
        available = jax.devices()
        count = len(available) if devices is None else devices
        if not 1 <= count <= len(available):
            raise JaxstyleError(f"devices must be between 1 and {len(available)}, not {count}")
        # Frames over the settings axis; each frame whole on its device (a space axis of 1).
        mesh = meshlib.Mesh(np.asarray(available[:count]).reshape(-1, 1), (meshlib.AXIS, meshlib.SPACE))
        points = [settings_point(settings, content=i) for i in range(len(frames_rgb))]
        job = prepare_job(list(frames_rgb), styles, settings, points, device_count=count, **common)
        schedule |= {"passes": passes, "blend_weight": blend_weight}
        store = checkpoint and VideoCheckpoints(checkpoint, video_fingerprint(job, frames_rgb, schedule))
        start = time.perf_counter()
        out, losses = run_multipass(
            job, mesh, frames_rgb, motion, temporal_weight, passes, blend_weight, progress, store, stop_signal
        )
    seconds = time.perf_counter() - start
    if output is not None and writer:
        write_result(output, out, clip, None if checkpoint is None else checkpoint.directory)
    return VideoResult(out, clip.fps, motion, losses, seconds, flow_seconds, settings, mode, passes, temporal_weight)


def per_frame_masks(masks: MaskInputs | None, count: int, mode: str) -> Callable[[int], MaskInputs] | None:
    """Where some of ``masks`` are one per frame (:class:`~jaxstyle.masks.PerFrame`): each frame's
    masks, by its index; ``None`` where none is. One line where their count is not the clip's
    ``count`` frames, or the mode is not sequential (a pass runs every frame with one set)."""
    per_frame = {} if masks is None else masks.per_frame()
    if not per_frame:
        return None
    if mode != "sequential":
        raise JaxstyleError(f"{next(iter(per_frame))}: masks one per frame need mode sequential")
    for option, given in per_frame.items():
        if len(given) != count:
            raise JaxstyleError(f"{option}: {len(given)} per-frame mask(s) for a clip of {count} frame(s)")
    return masks.frame


def frame_masks_read(job: Job, frame: np.ndarray, masks: MaskInputs) -> Masks:
    """One frame's own ``masks`` of ``job``, read and checked against that frame and the style images."""
    from jaxstyle.pipeline import with_masks

    inputs = dataclasses.replace(job.inputs.with_contents([frame], job.settings.color), masks=None)
    return with_masks(inputs, masks, None).masks


def check_temporal_indices(indices: Sequence[int], mode: str) -> tuple[int, ...]:
    """The relative indices of the temporal terms, sorted (closest first), or a one-line error:
    whole numbers >= 1, each once; other than ``(1,)`` only in sequential mode."""
    values = tuple(indices)
    text = ",".join(map(str, values))
    if not values or not all(isinstance(j, (int, np.integer)) and not isinstance(j, bool) and j >= 1 for j in values):
        raise JaxstyleError(f"temporal indices must be whole numbers >= 1, e.g. 1,2,4, not {text!r}")
    if len(set(values)) != len(values):
        raise JaxstyleError(f"temporal indices {text}: each may be given once")
    values = tuple(int(j) for j in values)
    if values != (1,) and mode != "sequential":
        raise JaxstyleError(
            "temporal indices other than 1 (long-term terms) are for mode sequential; multipass pulls each "
            "frame towards its neighbour only"
        )
    return tuple(sorted(values))


def write_result(
    output: str | os.PathLike, frames: np.ndarray, clip: Clip, checkpoint_dir: str | os.PathLike | None = None
) -> None:
    """Write the finished clip (atomically), at ``clip``'s frame rate and with its audio: the one place
    a video's result is written, by process 0 alone.

    A write that fails (a full disk) keeps the frames (:func:`jaxstyle.kept.write_or_keep`: beside
    the output, in the checkpoint directory, ...) and says in one line where, and that
    ``jaxstyle write KEPT`` writes them with no step redone. With a checkpoint directory the
    finished frames are also kept there (:class:`VideoCheckpoints`), so the same command with
    ``--resume`` writes the clip again too.
    """
    from jaxstyle.kept import Output, places, write_or_keep

    path = Path(output)
    write_or_keep([Output.video(path, frames, clip)], "video", path.name, places(path.parent, checkpoint_dir))


# --------------------------------------------------------------------------- checkpoints


class VideoCheckpoints:
    """The checkpoint directory of a video run: the units finished, and the runner's checkpoints of the one in flight.

    A unit is a frame (sequential) or a pass (multi-pass). A finished unit is kept as
    ``NAME.npz`` (its float32 frames and final losses, written atomically), after which
    the runner's checkpoints of it (:class:`jaxstyle.checkpoint.Checkpoints`, Orbax, in the
    subdirectory ``NAME/``) are removed. Sequential keeps every finished frame; multi-pass
    the newest pass, which the next one starts from. A resumed run takes the finished
    units as they are and the unit in flight from the runner's newest checkpoint: it
    computes exactly what an uninterrupted run does. The finished units stay after the
    clip is written, so a clip whose write failed (a full disk) is written again by the
    same command with ``--resume``, without a step redone.

    ``video.json`` binds the directory to its run: a format version and a fingerprint of
    the clip, the recipe, the weights, the plan and the schedule; another run's is refused
    in one line. In a multi-process run every process reads the directory (shared, as the
    runner's checkpoints need) and process 0 alone writes the units and the manifest.

    Args:
      options: the directory (created if missing), how often the runner saves within a
        unit, and whether to resume.
      fingerprint: ``{part: digest}`` of what the run depends on.
    """

    def __init__(self, options: CheckpointOptions, fingerprint: dict[str, str]) -> None:
        import jax

        self.options, self.directory = options, Path(options.directory).absolute()
        self.writer = jax.process_index() == 0
        manifest = self.directory / MANIFEST
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            theirs = json.loads(manifest.read_text()) if manifest.is_file() else None
            others = theirs is None and any(self.directory.iterdir())
        except (OSError, ValueError) as e:
            raise JaxstyleError(
                f"{self.directory}: cannot use as a video checkpoint directory ({one_line(e)})"
            ) from None
        if others:
            raise JaxstyleError(
                f"{self.directory}: holds files that are no video checkpoints; use another --checkpoint-dir"
            )
        if theirs is not None:
            self.check(theirs, fingerprint)
        all_processes_here("jaxstyle video checkpoint directory checked")  # before process 0 writes in it
        if theirs is None and self.writer:
            write_json(manifest, {"format_version": VIDEO_FORMAT_VERSION, "fingerprint": fingerprint})

    def check(self, theirs: Any, ours: dict[str, str]) -> None:
        """Refuse an earlier run's directory without ``resume``, or one of another format or run,
        naming what differs."""
        if not self.options.resume:
            raise JaxstyleError(
                f"{self.directory}: holds checkpoints of an earlier run; pass --resume to go on from them, "
                "or use another --checkpoint-dir"
            )
        version = theirs.get("format_version") if isinstance(theirs, dict) else None
        if version != VIDEO_FORMAT_VERSION:
            raise JaxstyleError(
                f"{self.directory}: video checkpoint format version {version}, "
                f"this jaxstyle reads {VIDEO_FORMAT_VERSION}"
            )
        for part, value in ours.items():
            if theirs.get("fingerprint", {}).get(part) != value:
                raise JaxstyleError(
                    f"{self.directory}: the checkpoints there were made with other {part}; resume with the same "
                    "command, or use another --checkpoint-dir"
                )

    def unit(self, name: str) -> CheckpointOptions:
        """How the runner checkpoints unit ``name``: in its own subdirectory, resumed from there when it
        holds checkpoints (only this run writes there: the manifest says so)."""
        return dataclasses.replace(self.options, directory=self.directory / name, resume=True)

    def kept(self, name: str) -> dict[str, np.ndarray] | None:
        """The arrays of finished unit ``name`` (:func:`unit_arrays`), or ``None`` if it is not finished."""
        path = self.directory / f"{name}.npz"
        if not path.is_file():
            return None
        try:
            with np.load(path) as data:
                arrays = {key: data[key] for key in data.files}
        except (OSError, ValueError) as e:
            raise JaxstyleError(f"{path}: unreadable video checkpoint ({one_line(e)})") from None
        if self.writer:  # a run stopped between keeping the unit and removing its runner checkpoints
            shutil.rmtree(self.directory / name, ignore_errors=True)
        return arrays

    def keep(self, name: str, arrays: dict[str, np.ndarray]) -> None:
        """Keep finished unit ``name`` (atomically), then remove the runner's checkpoints of it."""
        if self.writer:
            with atomic_output(self.directory / f"{name}.npz") as tmp, open(tmp, "wb") as f:
                np.savez(f, **arrays)
            shutil.rmtree(self.directory / name, ignore_errors=True)

    def drop(self, name: str) -> None:
        """Remove finished unit ``name``, which a later one supersedes."""
        if self.writer:
            (self.directory / f"{name}.npz").unlink(missing_ok=True)

    def newest(self, prefix: str) -> int | None:
        """The highest number ``N`` of a finished unit ``{prefix}N``, or ``None``."""
        pattern = re.compile(rf"{re.escape(prefix)}(\d+)\.npz")
        numbers = [int(m[1]) for path in self.directory.iterdir() if (m := pattern.fullmatch(path.name))]
        return max(numbers, default=None)


def all_processes_here(name: str) -> None:
    """Wait until every process of a multi-process run reaches the point called ``name``."""
    import jax

    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def video_fingerprint(job: Job, frames: np.ndarray, schedule: dict[str, Any]) -> dict[str, str]:
    """What a video checkpoint is bound to: the runner's fingerprint of ``job`` (recipe, weights, dtypes,
    plan), every frame of the clip at the output size, and the ``schedule`` (mode, temporal terms, passes)."""
    from jaxstyle.pipeline import fingerprint

    return {**fingerprint(job), "clip": digest(frames), "schedule": digest(schedule)}


def frames_at_output_size(frames: np.ndarray, settings: Settings) -> tuple[np.ndarray, Settings]:
    """The frames resized to the output size (:func:`jaxstyle.image.output_size` of a frame's), and
    the settings with that size, which every frame now has, in place of the form that gave it."""
    size = imageio.output_size(frames.shape[1:3], settings)
    return np.stack([imageio.resize(frame, size) for frame in frames]), override(settings, size=size)


def as_clip(clip: str | os.PathLike | np.ndarray | Clip, frames: str | None, fps: float | None) -> Clip:
    """A :class:`Clip` from a path, an array or a clip, frames ``START:END`` of it."""
    if isinstance(clip, Clip):
        return clip
    if isinstance(clip, (str, os.PathLike)):
        return read_clip(clip, frames, fps)
    array = np.asarray(clip)
    if array.ndim != 4 or array.shape[-1] != 3:
        raise JaxstyleError(f"clip array of shape {array.shape}: expected (N, H, W, 3)")
    array = array.astype(np.float32) / 255.0 if array.dtype == np.uint8 else array.astype(np.float32)
    start, end = parse_range(frames)
    array = array[start:end]
    if len(array) < 2:
        raise JaxstyleError(f"{len(array)} frame(s) in range; a video needs 2")
    return Clip(array, fps or DEFAULT_FOLDER_FPS, Path("<array>"), start, False)
