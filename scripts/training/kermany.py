"""The Kermany chest X-ray training folder (index.csv): a seeded patient-level split, decoded once and cached.

Images go through the server's own decoding and preprocessing (`open_image` + `preprocess`), so the model
is trained on exactly what the endpoint will feed it. The decoded pixels are cached as uint8 in the temp
folder, keyed by the data's identity and the contract, so a second run skips the decoding.
"""

from __future__ import annotations

import csv
import hashlib
import tempfile
from pathlib import Path

import numpy as np

from scripts.training.train_pneumonia import LABELS, Data, Split
from slimserve.imaging import ImageLimits, open_image, preprocess
from slimserve.manifest import ImageContract

SPLIT_FRACTIONS = (0.70, 0.15, 0.15)  # train, val, internal test: of the patients of each class
CACHE_FORMAT = 1


def kermany_contract(image_size: int) -> ImageContract:
    """The served contract: the whole image resized to a square (most sources were squashed so), grayscale."""
    return ImageContract(height=image_size, width=image_size, channels=1, color="grayscale", crop="none",
                         resize="bilinear", scale=1 / 255, offset=0.0, layout="NHWC", dtype="float32")


def read_index(root: Path) -> list[dict[str, str]]:
    """The rows of index.csv (path, label, patient, ...), in file order."""
    with open(root / "index.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def split_patients(rows: list[dict[str, str]], seed: int) -> dict[str, set[str]]:
    """Patients of each class shuffled with `seed` and cut 70/15/15, so no patient is in two splits."""
    rng = np.random.default_rng(seed)
    splits: dict[str, set[str]] = {"train": set(), "val": set(), "test": set()}
    for label in LABELS:
        patients = sorted({row["patient"] for row in rows if row["label"] == label})
        patients = [patients[i] for i in rng.permutation(len(patients))]
        cut_train = round(len(patients) * SPLIT_FRACTIONS[0])
        cut_val = cut_train + round(len(patients) * SPLIT_FRACTIONS[1])
        splits["train"].update(patients[:cut_train])
        splits["val"].update(patients[cut_train:cut_val])
        splits["test"].update(patients[cut_val:])
    return splits


def load_kermany(root: Path, image_size: int, seed: int, limit: int | None = None) -> Data:
    """Train/val/internal-test splits of the folder, decoded as the server would decode an upload."""
    rows = read_index(root)
    if limit:
        keep = np.sort(np.random.default_rng(seed).permutation(len(rows))[:limit])
        rows = [rows[i] for i in keep]
    pixels, digest = _decoded(root, rows, image_size)
    labels = np.asarray([LABELS.index(row["label"]) for row in rows], dtype=np.float32)
    patients = np.asarray([row["patient"] for row in rows])
    splits = split_patients(rows, seed)
    # pixel * float32(1/255): bit-identical to preprocess(), which the cache stores as its uint8 pixels.
    scale = np.float32(1 / 255)
    parts = {}
    for name, members in splits.items():
        mask = np.isin(patients, sorted(members))
        parts[name] = Split(pixels[mask].astype(np.float32) * scale, labels[mask])
    return Data(**parts, name=f"{root.name} (seed {seed} patient split)", sha256=digest)


def _decoded(root: Path, rows: list[dict[str, str]], image_size: int) -> tuple[np.ndarray, str]:
    digest = hashlib.sha256()
    for row in rows:
        # The data's identity: every relative path and the sha256 of its bytes, in index order.
        digest.update(f"{row['path']}\0{hashlib.sha256((root / row['path']).read_bytes()).hexdigest()}\n".encode())
    identity = digest.hexdigest()
    cache = Path(tempfile.gettempdir()) / f"slimserve-kermany-{identity[:16]}-{image_size}-v{CACHE_FORMAT}.npy"
    if cache.is_file():
        return np.load(cache), identity
    contract = kermany_contract(image_size)
    limits = ImageLimits(min_side=1)
    pixels = np.empty((len(rows), image_size, image_size, 1), dtype=np.uint8)
    for i, row in enumerate(rows):
        image = preprocess(open_image((root / row["path"]).read_bytes(), contract, limits), contract)
        pixels[i] = np.rint(image * 255).astype(np.uint8)
    partial = cache.with_suffix(".partial.npy")
    np.save(partial, pixels)
    partial.replace(cache)
    return pixels, identity
