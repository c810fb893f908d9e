"""Clips in and out: video files through the FFmpeg binary that imageio-ffmpeg ships, and
folders of frames. Every way an input or output is unusable is a one-line error.

Reading gives a :class:`Clip` (float32 RGB frames in [0, 1], its frame rate, and whether
its source has audio); writing is atomic, and a video keeps the source's audio. The
video algorithm itself is in :mod:`jaxstyle.clips`.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jaxstyle import image as imageio
from jaxstyle.errors import JaxstyleError, one_line
from jaxstyle.files import TEMPORARY_SUFFIX, check_writable, temporary_prefix

VIDEO_SUFFIXES = (".mp4", ".webm", ".gif", ".mov", ".mkv")
FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp")
# Frames read from folders carry no frame rate; this is used unless --fps says otherwise.
DEFAULT_FOLDER_FPS = 24.0
MAX_FRAMES = 10_000
# How each output container is encoded: FFmpeg output options, and the audio codec (None: no audio).
ENCODINGS: dict[str, tuple[list[str], str | None]] = {
    # H.264 in yuv420p needs even sides: an odd side gets one black row or column.
    ".mp4": (["-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", "18", "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2"], "aac"),
    ".mov": (["-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", "18", "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2"], "aac"),
    ".mkv": (["-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", "18", "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2"], "aac"),
    ".webm": (["-c:v", "libvpx-vp9", "-pix_fmt", "yuv420p", "-crf", "30", "-b:v", "0"], "libopus"),
    ".gif": (["-vf", "split[a][b];[a]palettegen=stats_mode=diff[p];[b][p]paletteuse=dither=bayer:bayer_scale=3"], None),
}


def ffmpeg_exe() -> str:
    """The FFmpeg binary imageio-ffmpeg ships, or a one-line error saying how to install it."""
    try:
        import imageio_ffmpeg
    except ImportError:
        raise JaxstyleError("video needs imageio-ffmpeg: pip install 'jaxstyle[video]'") from None
    return imageio_ffmpeg.get_ffmpeg_exe()


@dataclass
class Clip:
    """Frames read from a video file or a folder.

    Attributes:
      frames: float32 RGB in [0, 1], ``(N, H, W, 3)``.
      fps: frames per second.
      source: the file or folder read.
      start: index of the first frame taken (``--frames START:END``).
      has_audio: whether the source file has an audio track.
    """

    frames: np.ndarray
    fps: float
    source: Path
    start: int
    has_audio: bool


def parse_range(text: str | None) -> tuple[int, int | None]:
    """``"START:END"`` (either may be empty; END excluded) -> ``(start, end)``; ``None`` -> ``(0, None)``."""
    if text is None:
        return 0, None
    match = re.fullmatch(r"\s*(\d*)\s*:\s*(\d*)\s*", text)
    if not match:
        raise JaxstyleError(f"--frames {text!r}: expected START:END, e.g. 0:48 (either may be left out)")
    start = int(match[1]) if match[1] else 0
    end = int(match[2]) if match[2] else None
    if end is not None and end <= start:
        raise JaxstyleError(f"--frames {text!r}: END must be greater than START")
    return start, end


def is_video_path(path: Path) -> bool:
    """Whether ``path`` names a video file (by its suffix, :data:`VIDEO_SUFFIXES`)."""
    return path.suffix.lower() in VIDEO_SUFFIXES


def read_clip(path: str | os.PathLike, frames: str | None = None, fps: float | None = None) -> Clip:
    """Read a video file or a folder of frames (sorted by name), frames ``START:END`` of it.

    Every way the input can be unusable is a one-line :class:`JaxstyleError`.
    """
    path = Path(path)
    start, end = parse_range(frames)
    if fps is not None and not (fps > 0 and np.isfinite(fps)):
        raise JaxstyleError(f"--fps must be a finite number > 0, not {fps}")
    if not path.exists():
        raise JaxstyleError(f"{path}: no such file or folder")
    if path.is_dir():
        clip = read_folder(path, start, end, fps or DEFAULT_FOLDER_FPS)
    elif is_video_path(path):
        clip = read_video(path, start, end)
        clip = dataclasses.replace(clip, fps=fps or clip.fps)
    else:
        raise JaxstyleError(f"{path}: not a video ({', '.join(VIDEO_SUFFIXES)}) or a folder of frames")
    if len(clip.frames) < 2:
        raise JaxstyleError(f"{path}: {len(clip.frames)} frame(s) in range {start}:{end or ''}; a video needs 2")
    return clip


def read_folder(path: Path, start: int, end: int | None, fps: float) -> Clip:
    """Frames from the image files of a folder, in name order."""
    names = sorted(p for p in path.iterdir() if p.suffix.lower() in FRAME_SUFFIXES and not p.name.startswith("."))
    if not names:
        raise JaxstyleError(f"{path}: no frames ({', '.join(FRAME_SUFFIXES)} files) in this folder")
    names = names[start:end]
    if len(names) > MAX_FRAMES:
        raise JaxstyleError(f"{path}: {len(names)} frames; at most {MAX_FRAMES}: use --frames START:END")
    frames = [imageio.load_image(name) for name in names]
    for name, frame in zip(names, frames, strict=True):
        if frame.shape != frames[0].shape:
            h, w = frames[0].shape[:2]
            raise JaxstyleError(f"{name}: {frame.shape[0]}x{frame.shape[1]}, but the first frame is {h}x{w}")
    return Clip(np.stack(frames) if frames else np.zeros((0, 1, 1, 3), np.float32), fps, path, start, False)


def read_video(path: Path, start: int, end: int | None) -> Clip:
    """Frames ``start:end`` of a video file, decoded by FFmpeg to 8-bit RGB."""
    ffmpeg_exe()
    import imageio_ffmpeg

    frames = []
    try:
        reader = imageio_ffmpeg.read_frames(str(path))
        meta = next(reader)
        w, h = meta["size"]
        for index, raw in enumerate(reader):
            if end is not None and index >= end:
                break
            if index >= start:
                if len(frames) >= MAX_FRAMES:
                    raise JaxstyleError(f"{path}: more than {MAX_FRAMES} frames; use --frames START:END")
                frames.append(np.frombuffer(raw, np.uint8).reshape(h, w, 3))
        reader.close()
    except JaxstyleError:
        raise
    except (OSError, RuntimeError, StopIteration, KeyError, ValueError) as e:
        raise JaxstyleError(f"{path}: cannot read as a video ({first_line(e)})") from None
    fps = float(meta.get("fps") or 0)
    if not (fps > 0 and np.isfinite(fps)):
        raise JaxstyleError(f"{path}: no frame rate in the file; give one with --fps")
    stack = np.stack(frames).astype(np.float32) / 255.0 if frames else np.zeros((0, h, w, 3), np.float32)
    return Clip(stack, fps, path, start, bool(meta.get("audio_codec")))


def first_line(e: BaseException) -> str:
    """The first meaningful line of an error (FFmpeg's messages run to many lines)."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return one_line(lines[-1] if lines else type(e).__name__)[:200]


def check_output(path: str | os.PathLike) -> Path:
    """Fail before any work if ``path`` cannot take a clip: a video suffix, or a folder that is new or empty."""
    path = Path(path)
    if path.suffix.lower() in VIDEO_SUFFIXES:
        if path.suffix.lower() not in ENCODINGS:
            raise JaxstyleError(f"{path}: unsupported output type; use one of {', '.join(ENCODINGS)} or a folder")
        return check_writable(path)
    if path.suffix:
        raise JaxstyleError(f"{path}: unsupported output type; use one of {', '.join(ENCODINGS)} or a folder")
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise JaxstyleError(f"{path}: exists and is not an empty folder; frames go to a new or empty folder")
    check_writable(path.parent / f"{path.name}.probe")
    return path


def write_clip(path: str | os.PathLike, frames: np.ndarray, fps: float, audio_from: Clip | None = None) -> Path:
    """Write frames ``(N, H, W, 3)`` (RGB in [0, 1]) as a video file or a folder of PNGs, atomically.

    A video keeps ``fps``; with ``audio_from`` (a clip whose source has audio) the
    output carries that source's audio from the first frame's time for the frames'
    duration. Written to a temporary name beside ``path`` and renamed when complete:
    a failure leaves nothing behind.
    """
    path = check_output(path)
    if path.suffix:
        with temporary_video(path) as tmp:
            encode(tmp, frames, fps, audio_from)
    else:
        tmp = Path(tempfile.mkdtemp(prefix=temporary_prefix(path), suffix=TEMPORARY_SUFFIX, dir=path.parent))
        try:
            for number, frame in enumerate(frames, start=1):
                imageio.save_image(tmp / f"frame_{number:06d}.png", frame)
            os.chmod(tmp, 0o755)  # mkdtemp's 0700, as a new folder would have been made
            if path.exists():
                path.rmdir()  # empty, checked above
            os.replace(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return path


class temporary_video:
    """A temporary file beside ``path`` with its suffix (FFmpeg picks the container by it), renamed on success."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> Path:
        fd, tmp = tempfile.mkstemp(prefix=temporary_prefix(self.path), suffix=self.path.suffix, dir=self.path.parent)
        os.close(fd)
        self.tmp = Path(tmp)
        return self.tmp

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            try:
                os.chmod(self.tmp, 0o644)
                os.replace(self.tmp, self.path)
                return
            except OSError as e:
                self.tmp.unlink(missing_ok=True)
                raise JaxstyleError(f"{self.path}: cannot write ({one_line(e)})") from None
        self.tmp.unlink(missing_ok=True)


def encode(path: Path, frames: np.ndarray, fps: float, audio_from: Clip | None) -> None:
    """Pipe 8-bit frames into FFmpeg, with ``audio_from``'s audio cut to the frames' span where it fits."""
    options, audio_codec = ENCODINGS[path.suffix.lower()]
    n, h, w = frames.shape[:3]
    command = [ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24"]
    command += ["-s", f"{w}x{h}", "-r", repr(float(fps)), "-i", "-"]
    audio = audio_from is not None and audio_from.has_audio and audio_codec is not None
    if audio:
        command += ["-ss", f"{audio_from.start / audio_from.fps:.6f}", "-t", f"{n / fps:.6f}"]
        command += ["-i", str(audio_from.source), "-map", "0:v:0", "-map", "1:a:0", "-c:a", audio_codec]
    command += [*options, "-f", ffmpeg_format(path), str(path)]
    try:
        proc = subprocess.run(command, input=imageio.to_uint8(frames).tobytes(), capture_output=True, timeout=3600)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise JaxstyleError(f"{path}: FFmpeg failed ({one_line(e)})") from None
    if proc.returncode != 0:
        message = proc.stderr.decode(errors="replace")
        raise JaxstyleError(f"{path}: FFmpeg failed ({first_line(RuntimeError(message))})")


def ffmpeg_format(path: Path) -> str:
    """FFmpeg's muxer name for a suffix (the temporary name's suffix decides nothing by itself)."""
    return {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm", ".gif": "gif"}[path.suffix.lower()]
