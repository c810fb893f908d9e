"""What a sweep leaves behind: one PNG per setting, a contact sheet, a loss plot, summary.json."""

from __future__ import annotations

import io
import itertools
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from jaxstyle import __version__
from jaxstyle.config import SWEPT_FIELDS, short_label, value_text
from jaxstyle.errors import JaxstyleError, one_line
from jaxstyle.files import json_bytes
from jaxstyle.image import to_uint8
from jaxstyle.kept import Output, places, write_or_keep
from jaxstyle.sweep import SweepPoint, SweepResult

CAPTION_HEIGHT = 18
MIN_SLOT_WIDTH = 128  # room for a caption under small thumbnails
HEADER_HEIGHT = 24
GAP = 4
# The files a sweep writes: these three, and one image per setting named by setting_filename.
SWEEP_FILES = ("summary.json", "contact_sheet.png", "losses.png")
SETTING_FILE = r"\d{3,}_.*\.png"
# Settings' file names are cut to this many bytes (their index keeps them apart): short
# enough for any file system (eCryptfs allows 143), whatever the image names.
SETTING_NAME_MAX = 128
LABEL_MAX = 40


def axis_values(result: SweepResult) -> dict[str, list]:
    """The distinct values of each quantity the sweep varies, in order of first appearance."""
    axes = {}
    for key in ("content", "style", *SWEPT_FIELDS):
        values = list(dict.fromkeys(getattr(p, key) for p in result.points))
        if len(values) > 1:
            axes[key] = values
    return axes


def image_label(name: str) -> str:
    """An image's file stem; for a style blend ``a.jpg*0.7+b.jpg*0.3``, ``a0.7+b0.3``; at most
    :data:`LABEL_MAX` characters (file names, captions and the plot's legend stay readable)."""
    if "*" not in name:
        label = Path(name).stem
    else:
        label = "+".join(Path(part).stem + weight for part, weight in (p.rsplit("*", 1) for p in name.split("+")))
    return label if len(label) <= LABEL_MAX else label[: LABEL_MAX - 3] + "..."


def value_label(result: SweepResult, key: str, value) -> str:
    """``sw=1000``, or the image's file stem for content and style."""
    if key in ("content", "style"):
        names = result.contents if key == "content" else result.styles
        return image_label(names[value])
    return f"{short_label(key)}={value_text(value)}"


def setting_filename(result: SweepResult, k: int) -> str:
    """``003_sw1000_tv10.png``: index, then every varied value (all of them when nothing varies)."""
    point = result.points[k]
    keys = list(axis_values(result)) or list(SWEPT_FIELDS)
    parts = [f"{k:03d}"]
    for key in keys:
        value = getattr(point, key)
        parts.append(
            image_label((result.contents if key == "content" else result.styles)[value])
            if key in ("content", "style")
            else f"{short_label(key)}{value_text(value)}"
        )
    name = "_".join(parts)
    while len(os.fsencode(name)) > SETTING_NAME_MAX - len(".png"):
        name = name[:-1]
    return name + ".png"


def finite_or_none(value: float) -> float | None:
    """JSON has no NaN or infinity: a diverged loss is written as null."""
    value = float(value)
    return value if math.isfinite(value) else None


def point_record(result: SweepResult, k: int) -> dict:
    """One setting's entry in summary.json and in its PNG's metadata."""
    p: SweepPoint = result.points[k]
    return {
        "index": k,
        "file": setting_filename(result, k),
        "content": result.contents[p.content],
        "style": result.styles[p.style],
        **p.swept_values(),
        "status": result.status(k),
        "diverged_at": int(result.diverged_at[k]) if result.diverged_at[k] >= 0 else None,
        "steps": int(result.steps_taken[k]),
        "final_losses": {name: finite_or_none(v[k]) for name, v in result.final_losses.items()},
    }


def scale_records(result: SweepResult) -> list[dict]:
    """Each scale's size and planned steps, coarse to fine: the last size is the images' (every setting's)."""
    return [{"size": list(stage.size), "steps": stage.steps} for stage in result.stages]


def setting_images(result: SweepResult, out_dir: Path, indexes: list[int], bit_depth: int = 8) -> list[Output]:
    """One PNG per setting (``bit_depth`` bits a channel), with the shared settings and the setting's own
    values as metadata."""
    shared = result.settings.to_dict()
    return [
        Output.image(
            out_dir / setting_filename(result, k),
            result.images[k],
            {
                "jaxstyle_version": __version__,
                "settings": shared,
                "scales": scale_records(result),
                "sweep_point": point_record(result, k),
            },
            bit_depth=bit_depth,
        )
        for k in indexes
    ]


def thumbnail(rgb: np.ndarray, max_side: int) -> Image.Image:
    """The 8-bit image shrunk (Lanczos) so that its longest side is at most ``max_side``."""
    img = Image.fromarray(to_uint8(rgb))
    scale = min(1.0, max_side / max(img.size))
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    return img.resize(size, Image.Resampling.LANCZOS) if size != img.size else img


@dataclass
class SheetLayout:
    """Where each setting's thumbnail lies on the contact sheet: ``boxes[k] = (left, top, right, bottom)``."""

    boxes: dict[int, tuple[int, int, int, int]]
    rows: int
    columns: int


def grid_positions(result: SweepResult) -> tuple[dict[int, tuple[int, int]], list[str], list[str]]:
    """``{k: (row, column)}`` and the row and column labels.

    When the settings are a full product of the varied values, columns are the values
    of the quantity with the most values and rows the combinations of the others;
    otherwise settings fill the grid in order and only their captions label them.
    """
    axes = axis_values(result)
    k = len(result.points)
    if axes:
        column_key = max(axes, key=lambda key: (len(axes[key]), list(axes).index(key)))
        row_keys = [key for key in axes if key != column_key]
        row_combos = list(itertools.product(*(axes[key] for key in row_keys)))
        if len(row_combos) * len(axes[column_key]) == k:
            cells = {}
            for i, p in enumerate(result.points):
                row = row_combos.index(tuple(getattr(p, key) for key in row_keys))
                cells[i] = (row, axes[column_key].index(getattr(p, column_key)))
            if len(set(cells.values())) == k:
                rows = [
                    ", ".join(value_label(result, key, v) for key, v in zip(row_keys, combo, strict=True))
                    for combo in row_combos
                ]
                columns = [value_label(result, column_key, v) for v in axes[column_key]]
                return cells, rows, columns
    width = math.ceil(math.sqrt(k))
    return {i: divmod(i, width) for i in range(k)}, [""] * math.ceil(k / width), [""] * width


def contact_sheet(result: SweepResult, cell: int = 256) -> tuple[Image.Image, SheetLayout]:
    """A grid of thumbnails with labelled rows and columns and a caption per cell.

    A diverged setting's caption says so in red, with its step.
    """
    cells, row_labels, column_labels = grid_positions(result)
    thumbs = {k: thumbnail(result.images[k], cell) for k in cells}
    captions = {}
    for k in cells:
        if result.status(k) == "diverged":
            captions[k] = f"#{k} DIVERGED @{result.diverged_at[k]}", (200, 0, 0)
        else:
            captions[k] = f"#{k} loss {result.final_losses['total'][k]:.3g}", (90, 90, 90)
    return draw_sheet(thumbs, cells, row_labels, column_labels, captions)


def draw_sheet(
    thumbs: dict[int, Image.Image],
    cells: dict[int, tuple[int, int]],
    row_labels: list[str],
    column_labels: list[str],
    captions: dict[int, tuple[str, tuple[int, int, int]]],
) -> tuple[Image.Image, SheetLayout]:
    """Thumbnails ``thumbs[k]`` at ``cells[k] = (row, column)``, each with its caption ``(text, colour)``
    below it, under labelled columns and beside labelled rows (empty labels: none)."""
    cw = max(MIN_SLOT_WIDTH, *(t.width for t in thumbs.values()))
    ch = max(t.height for t in thumbs.values())
    font = ImageFont.load_default(size=12)
    left = 8 + max([int(font.getlength(label)) for label in row_labels] + [0])
    top = HEADER_HEIGHT if any(column_labels) else GAP
    width = left + len(column_labels) * (cw + GAP)
    height = top + len(row_labels) * (ch + CAPTION_HEIGHT + GAP)
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    for c, label in enumerate(column_labels):
        draw.text((left + c * (cw + GAP) + 2, 6), label, fill="black", font=font)
    for r, label in enumerate(row_labels):
        draw.text((4, top + r * (ch + CAPTION_HEIGHT + GAP) + ch // 2 - 6), label, fill="black", font=font)
    boxes = {}
    for k, (r, c) in cells.items():
        x, y = left + c * (cw + GAP), top + r * (ch + CAPTION_HEIGHT + GAP)
        sheet.paste(thumbs[k], (x, y))
        boxes[k] = (x, y, x + thumbs[k].width, y + thumbs[k].height)
        caption, colour = captions[k]
        draw.text((x + 2, y + ch + 2), caption, fill=colour, font=font)
    return sheet, SheetLayout(boxes=boxes, rows=len(row_labels), columns=len(column_labels))


def loss_plot(result: SweepResult) -> bytes:
    """A PNG of the total loss against step for every setting (log scale), diverged settings dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    axes = axis_values(result)
    fig, ax = plt.subplots(figsize=(11, 5), dpi=100)
    steps = np.arange(result.trace["total"].shape[0])
    for k in range(len(result.points)):
        label = ", ".join(value_label(result, key, getattr(result.points[k], key)) for key in axes) or f"#{k}"
        total = result.trace["total"][:, k]
        if result.status(k) == "diverged":
            ax.plot(steps[: result.diverged_at[k]], total[: result.diverged_at[k]], "--", label=f"{label} (diverged)")
        else:
            ax.plot(steps, total, label=label)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("total loss")
    ax.set_title(f"{len(result.points)} settings, {result.steps} steps")
    ax.legend(
        fontsize=7,
        ncol=max(1, math.ceil(len(result.points) / 24)),
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        borderaxespad=0,
    )
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def summary(result: SweepResult) -> dict:
    """Everything summary.json holds."""
    k = len(result.points)
    return {
        "jaxstyle_version": __version__,
        "settings": result.settings.to_dict(),
        "contents": result.contents,
        "styles": result.styles,
        "points": [point_record(result, i) for i in range(k)],
        "steps": result.steps,
        "scales": scale_records(result),
        "seconds": result.seconds,
        "seconds_per_setting_step": result.seconds / (k * result.steps),
        "batch_size": result.batch_size,
        "plan": result.plan,
        "device_count": result.device_count,
        "process_count": result.process_count,
        # Settings that ran to the end or stopped by tol: what the command line calls finished.
        "finished": sum(result.status(i) != "diverged" for i in range(k)),
        "converged": [i for i in range(k) if result.status(i) == "converged"],
        "diverged": [i for i in range(k) if result.status(i) == "diverged"],
    }


def write_outputs(
    result: SweepResult,
    out_dir: Path,
    process_index: int = 0,
    replace: bool = False,
    bit_depth: int = 8,
    checkpoint_dir: str | os.PathLike | None = None,
) -> None:
    """Every process writes its own settings' PNGs (``bit_depth`` bits a channel); process 0 also the
    sheet, plot and summary.

    What cannot be written is kept (:func:`jaxstyle.kept.write_or_keep`: in ``out_dir``,
    ``checkpoint_dir``, ...) to be written by ``jaxstyle write``. With ``replace``, process 0
    then removes the files of an earlier sweep in ``out_dir`` that this one did not write
    over, so that the directory holds one sweep, the one ``summary.json`` describes.
    """
    outputs = setting_images(result, out_dir, result.local, bit_depth)
    if process_index == 0:
        sheet, _ = contact_sheet(result)
        buffer = io.BytesIO()
        sheet.save(buffer, format="PNG")
        outputs.append(Output.file(out_dir / "contact_sheet.png", buffer.getvalue()))
        outputs.append(Output.file(out_dir / "losses.png", loss_plot(result)))
        outputs.append(Output.file(out_dir / "summary.json", json_bytes(summary(result))))
    name = f"{out_dir.resolve().name or 'sweep'}.sweep" + (f".process{process_index}" if process_index else "")
    write_or_keep(outputs, "sweep", name, places(out_dir, checkpoint_dir))
    if process_index == 0 and replace:
        written = {*SWEEP_FILES, *(setting_filename(result, k) for k in range(len(result.points)))}
        for name in sweep_outputs_in(out_dir):
            if name not in written:
                try:
                    (out_dir / name).unlink()
                except OSError as e:
                    raise JaxstyleError(
                        f"{out_dir / name}: cannot remove the earlier sweep's file ({one_line(e)})"
                    ) from None


def sweep_outputs_in(out_dir: Path) -> list[str]:
    """The names in ``out_dir`` that a sweep writes (an earlier sweep's outputs), sorted."""
    try:
        with os.scandir(out_dir) as entries:
            names = [e.name for e in entries]
    except FileNotFoundError:
        return []
    except OSError as e:
        raise JaxstyleError(f"{out_dir}: cannot list the directory ({one_line(e)})") from None
    return sorted(name for name in names if name in SWEEP_FILES or re.fullmatch(SETTING_FILE, name))


def check_output_dir(out_dir: Path, overwrite: bool) -> None:
    """Refuse, unless ``overwrite``, a directory that holds an earlier sweep's outputs.

    A second sweep into it would mix its images with the first's while ``summary.json``
    listed only its own. Other files in the directory are left alone.
    """
    earlier = sweep_outputs_in(out_dir)
    if earlier and not overwrite:
        raise JaxstyleError(
            f"{out_dir}: holds an earlier sweep's outputs ({len(earlier)} files: {', '.join(earlier[:3])}"
            f"{', ...' if len(earlier) > 3 else ''}); write to a new directory, or pass --overwrite to replace them"
        )
