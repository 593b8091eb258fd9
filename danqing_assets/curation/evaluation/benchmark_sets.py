"""Benchmark sets in Chinese-CLIP's formats, read and written faithfully so real sets drop in.

Retrieval (Flickr30K-CN, COCO-CN, MUGE as Chinese-CLIP distributes them)::

    <set>/<split>_texts.jsonl   {"text_id": 8428, "text": "高级感托特包斜挎", "image_ids": [1076345, 517602]}
    <set>/<split>_imgs.tsv      1076345<TAB><base64 of the image file>

Zero-shot classification (Chinese-CLIP's ELEVATER sets)::

    <set>/label_cn.txt          one class name per line; line i is class i
    <set>/test/<i>/<image>      images of class i (the folder name is the class number, "000"-padded or not)

Images stay on disk and are read when the model needs them: MUGE's 30,000 base64
images never sit in memory at once. A malformed line or a text naming an unknown
image is a :class:`BenchmarkFormatError` naming the file and line; texts without
any image (MUGE's unlabelled test split) are left out and counted.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

# the extensions torchvision's ImageFolder (which Chinese-CLIP's zero-shot evaluation uses) accepts
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
LABEL_FILE = "label_cn.txt"


class BenchmarkFormatError(ValueError):
    """A benchmark set that does not follow Chinese-CLIP's format."""


@dataclass(frozen=True)
class TsvImages(Sequence):
    """Images of a ``<split>_imgs.tsv``, decoded from base64 on access (picklable for DataLoader workers)."""

    path: Path
    offsets: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.offsets)

    def __getitem__(self, i: int) -> bytes:  # type: ignore[override]
        with open(self.path, "rb") as f:
            f.seek(self.offsets[i])
            line = f.readline()
        try:
            return base64.b64decode(line.split(b"\t", 1)[1].strip(), validate=True)
        except (IndexError, binascii.Error) as error:
            raise BenchmarkFormatError(f"{self.path}: the image at byte {self.offsets[i]} is not valid base64") from error


@dataclass(frozen=True)
class FileImages(Sequence):
    paths: tuple[Path, ...]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> bytes:  # type: ignore[override]
        return self.paths[i].read_bytes()


@dataclass
class RetrievalSet:
    name: str
    split: str
    texts: list[str]
    text_ids: list[str]
    text_images: list[list[int]]  # per text: indices into images
    image_ids: list[str]
    images: Sequence[bytes]
    skipped: Counter = field(default_factory=Counter)


@dataclass
class ZeroShotSet:
    name: str
    split: str
    classnames: list[str]
    image_names: list[str]
    images: Sequence[bytes]
    labels: list[int]
    skipped: Counter = field(default_factory=Counter)


def _id(value: object, what: str, where: str) -> str:
    # Chinese-CLIP's ids are integers; strings are accepted, anything else is a format error
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise BenchmarkFormatError(f"{where}: {what} must be an integer or a string, got {value!r}")
    return str(value)


def _index_tsv(path: Path) -> tuple[list[str], list[int]]:
    ids, offsets, seen = [], [], set()
    with open(path, "rb") as f:
        offset = 0
        for number, line in enumerate(f, 1):
            if line.strip():
                image_id, sep, _ = line.partition(b"\t")
                if not sep or not image_id.strip():
                    raise BenchmarkFormatError(f"{path}:{number}: expected '<image_id>\\t<base64>'")
                image_id = image_id.strip().decode("utf-8", "replace")
                if image_id in seen:
                    raise BenchmarkFormatError(f"{path}:{number}: image id {image_id} appears twice")
                seen.add(image_id)
                ids.append(image_id)
                offsets.append(offset)
            offset += len(line)
    return ids, offsets


def _read_texts(path: Path) -> list[tuple[str, str, list[str]]]:
    rows, seen = [], set()
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as error:
                raise BenchmarkFormatError(f"{where}: not a JSON object ({error.msg})") from error
            if not isinstance(obj, dict) or "text_id" not in obj or not isinstance(obj.get("text"), str):
                raise BenchmarkFormatError(f'{where}: expected {{"text_id": ..., "text": "...", "image_ids": [...]}}')
            text_id = _id(obj["text_id"], "text_id", where)
            if text_id in seen:
                raise BenchmarkFormatError(f"{where}: text_id {text_id} appears twice")
            seen.add(text_id)
            image_ids = obj.get("image_ids", [])
            if not isinstance(image_ids, list):
                raise BenchmarkFormatError(f"{where}: image_ids must be a list")
            rows.append((text_id, obj["text"], [_id(i, "image id", where) for i in image_ids]))
    return rows


def retrieval_splits(directory: Path) -> list[str]:
    return sorted(p.name.removesuffix("_texts.jsonl") for p in directory.glob("*_texts.jsonl"))


def read_retrieval_set(directory: Path, split: str = "auto") -> RetrievalSet:
    """One split of a retrieval set; ``auto`` takes ``test`` when it is labelled, else ``valid``."""
    directory = Path(directory)
    candidates = ["test", "valid"] if split == "auto" else [split]
    for name in candidates:
        texts_path, images_path = directory / f"{name}_texts.jsonl", directory / f"{name}_imgs.tsv"
        if not texts_path.is_file():
            continue
        if not images_path.is_file():
            raise BenchmarkFormatError(f"{directory}: {texts_path.name} has no {images_path.name} beside it")
        rows = _read_texts(texts_path)
        labelled = [r for r in rows if r[2]]
        if not labelled and split == "auto":
            continue  # MUGE's test split carries no ground truth: fall back to valid
        image_ids, offsets = _index_tsv(images_path)
        index = {image_id: i for i, image_id in enumerate(image_ids)}
        for text_id, _, ids in labelled:
            missing = [i for i in ids if i not in index]
            if missing:
                raise BenchmarkFormatError(f"{texts_path}: text {text_id} names images missing from {images_path.name}: {missing[:5]}")
        if not labelled:
            raise BenchmarkFormatError(f"{texts_path}: no text lists an image (an unlabelled split?)")
        return RetrievalSet(directory.name, name, [r[1] for r in labelled], [r[0] for r in labelled],
                            [[index[i] for i in r[2]] for r in labelled], image_ids, TsvImages(images_path, tuple(offsets)),
                            Counter({"text_without_images": len(rows) - len(labelled)}) if len(rows) > len(labelled) else Counter())
    raise BenchmarkFormatError(f"{directory}: no labelled {' or '.join(candidates)} split "
                               f"(found splits: {', '.join(retrieval_splits(directory)) or 'none'})")


def read_zeroshot_set(directory: Path, split: str = "test") -> ZeroShotSet:
    directory = Path(directory)
    label_file = directory / LABEL_FILE
    if not label_file.is_file():
        raise BenchmarkFormatError(f"{directory}: no {LABEL_FILE}")
    classnames = [line.strip() for line in label_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not classnames:
        raise BenchmarkFormatError(f"{label_file}: no class names")
    root = directory / split
    if not root.is_dir():
        raise BenchmarkFormatError(f"{directory}: no {split}/ folder of images per class")
    paths, labels, skipped = [], [], Counter()
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        if not folder.name.isdigit():
            raise BenchmarkFormatError(f"{folder}: class folders are named by class number (line of {LABEL_FILE})")
        label = int(folder.name)
        if label >= len(classnames):
            raise BenchmarkFormatError(f"{folder}: class {label}, but {LABEL_FILE} has {len(classnames)} lines")
        for path in sorted(folder.iterdir()):
            if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS:
                paths.append(path)
                labels.append(label)
            elif path.is_file():
                skipped["not_an_image_file"] += 1
    if not paths:
        raise BenchmarkFormatError(f"{root}: no images")
    return ZeroShotSet(directory.name, split, classnames, [str(p.relative_to(directory)) for p in paths],
                       FileImages(tuple(paths)), labels, skipped)


def discover_sets(root: Path) -> list[tuple[str, Path]]:
    """``(kind, directory)`` of every set under ``root`` (the folder itself or its subfolders), by name."""
    root = Path(root)
    if not root.is_dir():
        raise BenchmarkFormatError(f"benchmark sets directory {root} does not exist")
    found = []
    for directory in [root, *sorted(p for p in root.iterdir() if p.is_dir())]:
        if retrieval_splits(directory):
            found.append(("retrieval", directory))
        if (directory / LABEL_FILE).is_file():
            found.append(("zero_shot", directory))
    if not found:
        raise BenchmarkFormatError(f"{root}: no benchmark set (<split>_texts.jsonl + <split>_imgs.tsv, or {LABEL_FILE} + test/)")
    return found


def write_retrieval_set(directory: Path, split: str, texts: Iterable[tuple[int, str, list[int]]],
                        images: Iterable[tuple[int, bytes]]) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / f"{split}_imgs.tsv", "w", encoding="ascii") as f:
        for image_id, data in images:
            f.write(f"{image_id}\t{base64.b64encode(data).decode('ascii')}\n")
    with open(directory / f"{split}_texts.jsonl", "w", encoding="utf-8") as f:
        for text_id, text, image_ids in texts:
            f.write(json.dumps({"text_id": text_id, "text": text, "image_ids": image_ids}, ensure_ascii=False) + "\n")
    return directory


def write_zeroshot_set(directory: Path, classnames: Sequence[str], images: Iterable[tuple[int, str, bytes]],
                       split: str = "test") -> Path:
    """``images``: (class index, file name, bytes). Folders are zero-padded as Chinese-CLIP's are."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / LABEL_FILE).write_text("".join(f"{c}\n" for c in classnames), encoding="utf-8")
    width = 1 if len(classnames) <= 10 else 3
    for label, name, data in images:
        folder = directory / split / str(label).zfill(width)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return directory
