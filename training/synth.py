"""A synthetic cross-modal person set written in the real SYSU-MM01 layout.

    python -m training.synth --out data/synth [--ids 360 --train-ids 320 --images-per-cam 2 --height 64 --width 32]
        [--calib-ids 40]

Each identity is a cartoon pedestrian whose *shape* (head size, shoulder width, torso and leg lengths, stance,
sleeves, shorts, bag side) and *pattern* (solid, horizontal or vertical stripes, checks, chest band; side stripes
on the trousers) are fixed per id. Visible cameras (1, 2, 4, 5) render per-id colours; infrared cameras (3, 6)
render a different intensity mapping of the same materials: one fixed "sensor response" for everyone
(``infrared_response``: warm/red materials bright, blue dark, unlike luminance) plus a small per-id deviation (the
part of a material's infrared level that its colour does not predict), skin bright and hair dark. A pattern's
second colour is redrawn until it contrasts with the main one in both modalities. So matching across modalities is
learnable (shape, pattern and the response carry over) but not trivial (the grey levels are not those of the
colours). Each camera has its own tint or gain, background and person scale; each image jitters scale, position,
mirroring, gain, clutter and noise. Images depend only on (seed, pid, camera, index): the same seed gives
byte-identical files.

Besides the ``ids`` identities split into train, val and test, ``calib_ids`` more identities (pids ``ids + 1`` on)
are rendered the same way and listed in ``exp/calib_id.txt``: identities neither trained on nor tested on, on which
``python -m training.export --score-calibration`` fits the score-to-probability map (docs/method.md).

The defaults (320 training identities, a +-0.03 infrared deviation, a +-10 % per-image gain) are what the tiny
config learns to rank the right identity first for most infrared queries on unseen identities in a few CPU
minutes (docs/results.md). On the same budget, 80 training identities reached rank-1 ~0.35 (too few identities to
generalise from) and 320 with a +-0.07 deviation and a +-20 % gain ~0.45 (grey levels dominated by noise).
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from training.data.layout import write_id_file
from training.data.sysu import CAMERAS, INFRARED_CAMS, VISIBLE_CAMS, Subset, id_file, identity_folder

logger = logging.getLogger(__name__)

# Region labels of the person mask.
BG, SKIN, HAIR, UPPER, UPPER2, LOWER, LOWER2, SHOES, BAG = range(9)
_NUM_LABELS = 9
_SUMMARY_FILE = "synth.json"
# Infrared level of a material: a fixed weighted mix of its colour (unlike luminance: red counts most, blue
# negatively) through a smoothstep, plus a small per-identity, per-material deviation.
_IR_WEIGHTS = np.array([0.7, 0.25, -0.35])
_IR_DEVIATION = 0.03
# Per-image multiplicative gain: 1 +- _GAIN_JITTER (lighting, exposure).
_GAIN_JITTER = 0.1


@dataclass(frozen=True)
class SynthConfig:
    """What to generate; ``train_ids`` includes the quarter written to ``val_id.txt`` (SYSU trains on both)."""

    ids: int = 360
    train_ids: int = 320
    images_per_cam: int = 2
    height: int = 64
    width: int = 32
    seed: int = 0
    missing_cam_prob: float = 0.1  # chance that visible camera 2, 4 or 5 never saw an identity
    calib_ids: int = 40  # extra identities for score calibration, apart from train, val and test


@dataclass(frozen=True)
class SynthSummary:
    """What was written."""

    root: str
    config: SynthConfig
    train_ids: list[int]
    val_ids: list[int]
    test_ids: list[int]
    num_visible: int
    num_infrared: int
    calib_ids: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class _Identity:
    """Per-id shape (in person-height units), pattern, visible colours and infrared levels per region label."""

    head_r: float
    torso_w: float
    torso_len: float
    arm_w: float
    arm_len: float
    sleeve: float  # fraction of the arm covered by the sleeve
    leg_w: float
    leg_gap: float
    shorts: bool
    upper_pattern: int  # 0 solid, 1 horizontal stripes, 2 vertical stripes, 3 checks, 4 chest band
    lower_pattern: int  # 0 solid, 1 side stripes
    period: float
    bag_side: int  # -1 left, 0 none, 1 right
    colours: np.ndarray  # (9, 3) in [0, 1]
    ir_levels: np.ndarray  # (9,) in [0, 1]


def infrared_response(colours: np.ndarray) -> np.ndarray:
    """The fixed "sensor response" of a material to its colour: warm (red) bright, blue dark; ``(..., 3) -> (...)``."""
    raw = (colours @ _IR_WEIGHTS + 0.35) / 1.3  # in [0, 1] for colours in [0, 1]
    raw = np.clip(raw, 0.0, 1.0)
    return 0.08 + 0.84 * raw * raw * (3.0 - 2.0 * raw)  # smoothstep: a mild nonlinearity


def _identity(seed: int, pid: int) -> _Identity:
    """Draw the fixed appearance of one identity."""
    rng = np.random.default_rng([seed, 1, pid])
    colours = rng.uniform(0.05, 0.95, (_NUM_LABELS, 3))
    colours[SKIN] = np.array([0.95, 0.78, 0.65]) * rng.uniform(0.45, 1.0)
    colours[HAIR] = rng.uniform(0.02, 0.35) * np.array([1.0, 0.85, 0.7])
    deviation = rng.uniform(-_IR_DEVIATION, _IR_DEVIATION, _NUM_LABELS)
    redraw = np.random.default_rng([seed, 5, pid])
    for main, second in ((UPPER, UPPER2), (LOWER, LOWER2)):  # keep patterns visible in both modalities
        for _ in range(100):
            ir_gap = abs(
                infrared_response(colours[main])
                + deviation[main]
                - infrared_response(colours[second])
                - deviation[second]
            )
            if np.abs(colours[main] - colours[second]).sum() >= 0.6 and ir_gap >= 0.25:
                break
            colours[second] = redraw.uniform(0.05, 0.95, 3)
    ir = np.clip(infrared_response(colours) + deviation, 0.0, 1.0)
    ir[SKIN], ir[HAIR] = rng.uniform(0.8, 0.97), rng.uniform(0.25, 0.45)
    return _Identity(
        head_r=rng.uniform(0.055, 0.08),
        torso_w=rng.uniform(0.2, 0.32),
        torso_len=rng.uniform(0.27, 0.35),
        arm_w=rng.uniform(0.035, 0.055),
        arm_len=rng.uniform(0.26, 0.34),
        sleeve=rng.choice([0.35, 1.0]),
        leg_w=rng.uniform(0.065, 0.1),
        leg_gap=rng.uniform(0.005, 0.05),
        shorts=bool(rng.random() < 0.3),
        upper_pattern=int(rng.integers(0, 5)),
        lower_pattern=int(rng.random() < 0.35),
        period=rng.uniform(0.03, 0.07),
        bag_side=int(rng.choice([-1, 0, 0, 1])),
        colours=colours,
        ir_levels=ir,
    )


def _label_map(ident: _Identity, height: int, width: int, top: float, centre: float, scale: float) -> np.ndarray:
    """Region label per pixel for a person ``scale`` pixels tall, head top at row ``top``, centred at ``centre``."""
    v = (np.arange(height)[:, None] - top) / scale + np.zeros((1, width))
    u = (np.arange(width)[None, :] - centre) / scale + np.zeros((height, 1))
    au = np.abs(u)
    labels = np.zeros((height, width), dtype=np.uint8)
    neck = 2 * ident.head_r + 0.01
    hip = neck + ident.torso_len
    half = ident.torso_w / 2 * (1.0 - 0.12 * np.clip((v - neck) / ident.torso_len, 0, 1))
    torso = (v >= neck) & (v < hip) & (au < half)
    arm_v = (v >= neck + 0.01) & (v < neck + ident.arm_len)
    arm = arm_v & (au >= ident.torso_w / 2) & (au < ident.torso_w / 2 + ident.arm_w)
    sleeve = arm & (v < neck + ident.sleeve * ident.arm_len)
    labels[arm] = SKIN
    labels[torso | sleeve] = UPPER
    labels[_upper_pattern(ident, u, v - neck) & (torso | sleeve)] = UPPER2
    _draw_legs(labels, ident, u, v, hip)
    head = (u / (0.85 * ident.head_r)) ** 2 + ((v - ident.head_r) / ident.head_r) ** 2 <= 1.0
    labels[head] = SKIN
    labels[head & (v < 0.7 * ident.head_r)] = HAIR
    if ident.bag_side:
        inner = ident.torso_w / 2 + 0.6 * ident.arm_w
        side_u = u * ident.bag_side
        labels[(side_u >= inner) & (side_u < inner + 0.12) & (v >= hip - 0.12) & (v < hip + 0.06)] = BAG
    return labels


def _upper_pattern(ident: _Identity, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Mask of the secondary clothing colour on the upper body (``v`` measured from the neck)."""
    p = ident.period
    if ident.upper_pattern == 1:
        return (np.floor(v / p) % 2).astype(bool)
    if ident.upper_pattern == 2:
        return (np.floor(u / p) % 2).astype(bool)
    if ident.upper_pattern == 3:
        return ((np.floor(u / p) + np.floor(v / p)) % 2).astype(bool)
    if ident.upper_pattern == 4:
        return (v > 0.35 * ident.torso_len) & (v < 0.55 * ident.torso_len)
    return np.zeros(u.shape, dtype=bool)


def _draw_legs(labels: np.ndarray, ident: _Identity, u: np.ndarray, v: np.ndarray, hip: float) -> None:
    """Trousers or shorts with skin below, side stripes, shoes, and the crotch joining the legs."""
    au = np.abs(u)
    inner, outer = ident.leg_gap / 2, ident.leg_gap / 2 + ident.leg_w
    leg = (v >= hip) & (v < 0.955) & (au >= inner) & (au < outer)
    crotch = (v >= hip) & (v < hip + 0.06) & (au < outer)
    knee = hip + (0.45 if ident.shorts else 1.0) * (1.0 - hip)
    labels[leg] = SKIN
    labels[(leg & (v < knee)) | crotch] = LOWER
    if ident.lower_pattern:
        labels[leg & (v < knee) & (au >= outer - 0.25 * ident.leg_w)] = LOWER2
    labels[(v >= 0.955) & (v <= 1.0) & (au >= inner) & (au < outer + 0.01)] = SHOES


@dataclass(frozen=True)
class _Camera:
    """Per-camera rendering: colour tint (visible) or gain (infrared), background levels and person scale."""

    infrared: bool
    tint: np.ndarray  # (3,) multiplicative colour cast; equal entries for infrared
    background: np.ndarray  # (2, 3) top and bottom background colours
    scale: float  # mean person height as a fraction of the image height


def _camera(seed: int, cam: int) -> _Camera:
    rng = np.random.default_rng([seed, 3, cam])
    infrared = cam in INFRARED_CAMS
    if infrared:
        gain = rng.uniform(0.85, 1.1)
        return _Camera(
            True, np.full(3, gain), np.repeat(rng.uniform(0.05, 0.35, (2, 1)), 3, axis=1), rng.uniform(0.8, 0.9)
        )
    return _Camera(False, rng.uniform(0.8, 1.15, 3), rng.uniform(0.2, 0.8, (2, 3)), rng.uniform(0.78, 0.92))


def _background(camera: _Camera, rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Vertical gradient plus random clutter rectangles, ``(H, W, 3)`` in [0, 1]."""
    t = np.linspace(0.0, 1.0, height)[:, None, None]
    image = (1 - t) * camera.background[0] + t * camera.background[1] + np.zeros((1, width, 1))
    for _ in range(int(rng.integers(2, 7))):
        y0, x0 = int(rng.integers(0, height)), int(rng.integers(0, width))
        h, w = int(rng.integers(height // 16, height // 3)), int(rng.integers(width // 8, width // 2))
        level = rng.uniform(0.0, 1.0, 1 if camera.infrared else 3)
        image[y0 : y0 + h, x0 : x0 + w] = 0.5 * image[y0 : y0 + h, x0 : x0 + w] + 0.5 * level
    return image


def render(ident: _Identity, camera: _Camera, rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """One image of ``ident`` seen by ``camera``: ``(H, W, 3)`` uint8 (infrared: three equal channels)."""
    scale = height * camera.scale * rng.uniform(0.9, 1.06)
    top = rng.uniform(0.0, max(height - scale, 0.0) + 0.02 * height)
    centre = width / 2 + rng.uniform(-0.12, 0.12) * width
    labels = _label_map(ident, height, width, top, centre, scale)
    if rng.random() < 0.5:
        labels = labels[:, ::-1]
    image = _background(camera, rng, height, width)
    person = labels != BG
    if camera.infrared:
        image[person] = ident.ir_levels[labels[person], None]
    else:
        image[person] = ident.colours[labels[person]]
    image = image * camera.tint * rng.uniform(1.0 - _GAIN_JITTER, 1.0 + _GAIN_JITTER) + rng.uniform(-0.05, 0.05)
    image = image + rng.normal(0.0, rng.uniform(0.01, 0.04), (height, width, 1 if camera.infrared else 3))
    out = np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if camera.infrared:
        grey = Image.fromarray(out[..., 0]).filter(ImageFilter.GaussianBlur(0.8))
        out = np.repeat(np.asarray(grey)[..., None], 3, axis=2)
    return out


def split_ids(config: SynthConfig) -> tuple[list[int], list[int], list[int]]:
    """Train, val and test ids (1-based), assigned by a seeded permutation."""
    if not 1 <= config.train_ids < config.ids:
        raise ValueError(f"train_ids must be in 1..ids-1 (got {config.train_ids} of {config.ids})")
    order = np.random.default_rng([config.seed, 0]).permutation(np.arange(1, config.ids + 1))
    num_val = config.train_ids // 4
    train = sorted(int(i) for i in order[: config.train_ids - num_val])
    val = sorted(int(i) for i in order[config.train_ids - num_val : config.train_ids])
    return train, val, sorted(int(i) for i in order[config.train_ids :])


def calibration_ids(config: SynthConfig) -> list[int]:
    """The extra identities rendered for score calibration: ``ids + 1 .. ids + calib_ids``."""
    if config.calib_ids < 0:
        raise ValueError(f"calib_ids must be >= 0 (got {config.calib_ids})")
    return list(range(config.ids + 1, config.ids + config.calib_ids + 1))


def _cameras_of(config: SynthConfig, pid: int) -> list[int]:
    """Cameras that saw ``pid``: the first visible camera (1) and the infrared ones always; the other visible cameras
    (2, 4, 5) each missing with ``missing_cam_prob``."""
    rng = np.random.default_rng([config.seed, 4, pid])
    missing = {cam for cam in VISIBLE_CAMS[1:] if rng.random() < config.missing_cam_prob}
    return [cam for cam in CAMERAS if cam not in missing]


def generate(out: str | Path, config: SynthConfig | None = None) -> SynthSummary:
    """Write the synthetic set under ``out`` and return what was written.

    Raises:
        FileExistsError: ``out`` is not empty and holds no set generated with this same config.
    """
    config = config or SynthConfig()
    root = Path(out)
    existing = _existing(root, config)
    if existing is not None:
        logger.info("synthetic set with this config already at %s", root)
        return existing
    train, val, test = split_ids(config)
    calib = calibration_ids(config)
    cameras = {cam: _camera(config.seed, cam) for cam in CAMERAS}
    counts = {True: 0, False: 0}
    for pid in [*range(1, config.ids + 1), *calib]:
        ident = _identity(config.seed, pid)
        for cam in _cameras_of(config, pid):
            folder = identity_folder(root, cam, pid)
            folder.mkdir(parents=True, exist_ok=True)
            for k in range(config.images_per_cam):
                rng = np.random.default_rng([config.seed, 2, pid, cam, k])
                image = render(ident, cameras[cam], rng, config.height, config.width)
                Image.fromarray(image).save(folder / f"{k + 1:04d}.jpg", quality=92)
                counts[cameras[cam].infrared] += 1
    subsets: dict[Subset, list[int]] = {"train": train, "val": val, "test": test}
    if calib:
        subsets["calib"] = calib
    for subset, ids in subsets.items():
        path = id_file(root, subset)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_id_file(path, ids)
    summary = SynthSummary(str(root), config, train, val, test, counts[False], counts[True], calib)
    (root / _SUMMARY_FILE).write_text(json.dumps(asdict(summary), indent=2) + "\n")
    logger.info("wrote %d visible and %d infrared images to %s", counts[False], counts[True], root)
    return summary


def _existing(root: Path, config: SynthConfig) -> SynthSummary | None:
    """The summary of a set already generated at ``root`` with ``config``; None if ``root`` is empty or absent."""
    if not root.exists() or not any(root.iterdir()):
        return None
    summary_file = root / _SUMMARY_FILE
    if summary_file.is_file():
        data = json.loads(summary_file.read_text())
        if data.get("config") == asdict(config):
            return SynthSummary(**{**data, "config": config})
    raise FileExistsError(f"{root} is not empty and holds no synthetic set made with {config}; choose an empty --out")


def main(argv: list[str] | None = None) -> None:
    """CLI: ``python -m training.synth --out DIR [options]``."""
    defaults = SynthConfig()
    parser = argparse.ArgumentParser(description="Write a synthetic cross-modal person set in the SYSU-MM01 layout.")
    parser.add_argument("--out", required=True, type=Path, help="output directory (absent or empty)")
    parser.add_argument("--ids", type=int, default=defaults.ids, help="number of identities")
    parser.add_argument("--train-ids", type=int, default=defaults.train_ids, help="training ids (train + val)")
    parser.add_argument("--images-per-cam", type=int, default=defaults.images_per_cam)
    parser.add_argument("--height", type=int, default=defaults.height)
    parser.add_argument("--width", type=int, default=defaults.width)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument(
        "--calib-ids", type=int, default=defaults.calib_ids, help="extra ids for score calibration (exp/calib_id.txt)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    config = SynthConfig(
        args.ids, args.train_ids, args.images_per_cam, args.height, args.width, args.seed, calib_ids=args.calib_ids
    )
    summary = generate(args.out, config)
    logger.info(
        "ids: %d train, %d val, %d test, %d calibration",
        len(summary.train_ids),
        len(summary.val_ids),
        len(summary.test_ids),
        len(summary.calib_ids),
    )


if __name__ == "__main__":
    main()
