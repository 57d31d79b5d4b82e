"""A small synthetic detection data set in which colour alone decides the class.

Every object is a rectangle or an ellipse of random size and aspect; only its colour tells the
class, so a swapped channel order is measurable (red and blue trade places, yellow becomes cyan,
a colour no class has). Backgrounds are dark and noisy so the data set's own pixel statistics are
far from ImageNet's: normalising with ImageNet's mean/std instead of the trained ones visibly
hurts, as it does for real custom data sets.

Images are lossless PNG files written in RGB, with a COCO instances json per split.
"""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import cv2
import numpy as np

CLASS_NAMES: tuple[str, ...] = ("red", "blue", "yellow")
# RGB colours of the classes; each object jitters around its class colour.
CLASS_COLOURS: tuple[tuple[int, int, int], ...] = ((215, 45, 40), (40, 55, 220), (220, 210, 45))


@attrs.frozen
class DatasetSpec:
    """Everything that decides the generated pixels (and so the fixtures' cache keys)."""

    seed: int = 0
    num_train: int = 240
    num_val: int = 48
    min_side: int = 96  # image height/width are drawn from [min_side, max_side]
    max_side: int = 144
    max_objects: int = 3
    object_min: int = 16
    object_max: int = 40


@attrs.frozen
class SyntheticDataset:
    """Where a generated data set lies on disk."""

    root: Path
    class_names: tuple[str, ...]
    train_json: Path
    val_json: Path
    train_dir: Path
    val_dir: Path

    @property
    def val_images(self) -> list[Path]:
        images = json.loads(self.val_json.read_text())["images"]
        return [self.val_dir / im["file_name"] for im in images]

    @property
    def train_images(self) -> list[Path]:
        images = json.loads(self.train_json.read_text())["images"]
        return [self.train_dir / im["file_name"] for im in images]

    def pixel_stats(self) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
        """Per-channel RGB mean and std over the training images (what a user computes for custom data)."""
        total = np.zeros(3)
        total_sq = np.zeros(3)
        count = 0
        for path in self.train_images:
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if bgr is None:
                raise OSError(f"cannot read {path}")
            rgb = bgr[:, :, ::-1].reshape(-1, 3).astype(np.float64)
            total += rgb.sum(0)
            total_sq += (rgb**2).sum(0)
            count += len(rgb)
        mean = total / count
        std = np.sqrt(total_sq / count - mean**2)
        return (
            (round(float(mean[0]), 2), round(float(mean[1]), 2), round(float(mean[2]), 2)),
            (round(float(std[0]), 2), round(float(std[1]), 2), round(float(std[2]), 2)),
        )


def _boxes_overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int], margin: int = 3) -> bool:
    return not (a[2] + margin <= b[0] or b[2] + margin <= a[0] or a[3] + margin <= b[1] or b[3] + margin <= a[1])


def _draw_image(rng: np.random.Generator, spec: DatasetSpec) -> tuple[np.ndarray, list[tuple[list[int], int]]]:
    h = int(rng.integers(spec.min_side, spec.max_side + 1))
    w = int(rng.integers(spec.min_side, spec.max_side + 1))
    tone = rng.uniform(12, 55, size=3)
    gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
    gradient = (gx / w - 0.5) * rng.uniform(-20, 20) + (gy / h - 0.5) * rng.uniform(-20, 20)
    img = tone[None, None, :] + gradient[..., None] + rng.normal(0, 6, size=(h, w, 3))
    objects: list[tuple[list[int], int]] = []
    placed: list[tuple[int, int, int, int]] = []
    for _ in range(int(rng.integers(1, spec.max_objects + 1))):
        for _attempt in range(20):
            bw = int(rng.integers(spec.object_min, spec.object_max + 1))
            bh = int(rng.integers(spec.object_min, spec.object_max + 1))
            if bw >= w - 2 or bh >= h - 2:
                continue
            x1 = int(rng.integers(1, w - bw))
            y1 = int(rng.integers(1, h - bh))
            box = (x1, y1, x1 + bw, y1 + bh)
            if any(_boxes_overlap(box, other) for other in placed):
                continue
            label = int(rng.integers(0, len(CLASS_NAMES)))
            colour = np.clip(np.array(CLASS_COLOURS[label]) + rng.integers(-18, 19, size=3), 0, 255)
            mask = np.zeros((h, w), np.uint8)
            if rng.random() < 0.5:
                cv2.rectangle(mask, (box[0], box[1]), (box[2] - 1, box[3] - 1), 1, thickness=-1)
            else:
                centre = ((box[0] + box[2] - 1) // 2, (box[1] + box[3] - 1) // 2)
                cv2.ellipse(mask, centre, ((bw - 1) // 2, (bh - 1) // 2), 0, 0, 360, 1, thickness=-1)
            ys, xs = np.nonzero(mask)
            img[ys, xs] = colour + rng.normal(0, 4, size=(len(ys), 3))
            tight = [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]
            placed.append(box)
            objects.append((tight, label))
            break
    return np.clip(img, 0, 255).astype(np.uint8), objects


def _write_split(rng: np.random.Generator, spec: DatasetSpec, count: int, image_dir: Path, json_path: Path) -> None:
    image_dir.mkdir(parents=True, exist_ok=True)
    images: list[dict[str, object]] = []
    annotations: list[dict[str, object]] = []
    for i in range(count):
        rgb, objects = _draw_image(rng, spec)
        name = f"{i:05d}.png"
        cv2.imwrite(str(image_dir / name), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        images.append({"id": i + 1, "file_name": name, "height": rgb.shape[0], "width": rgb.shape[1]})
        for (x1, y1, x2, y2), label in objects:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i + 1,
                    "category_id": label + 1,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": 0,
                }
            )
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(CLASS_NAMES)]
    json_path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))


def generate(root: Path, spec: DatasetSpec = DatasetSpec()) -> SyntheticDataset:
    """Write the data set under ``root`` (idempotent for the same spec) and describe it."""
    root = Path(root)
    dataset = SyntheticDataset(
        root=root,
        class_names=CLASS_NAMES,
        train_json=root / "train.json",
        val_json=root / "val.json",
        train_dir=root / "train",
        val_dir=root / "val",
    )
    if dataset.val_json.exists() and dataset.train_json.exists():
        return dataset
    rng = np.random.default_rng(spec.seed)
    _write_split(rng, spec, spec.num_train, dataset.train_dir, dataset.train_json)
    _write_split(rng, spec, spec.num_val, dataset.val_dir, dataset.val_json)
    return dataset
