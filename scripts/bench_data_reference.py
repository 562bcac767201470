#!/usr/bin/env python3
"""Reference figure for the data-pipeline benchmark: PIL + torchvision in one process.

Does per image what `cargo bench -p funmatch-data` measures for the photo path: read the
file, decode it to RGB, inception crop (torchvision RandomResizedCrop, area 5-100 %,
aspect 3/4-4/3), random horizontal flip, resize to 224, to a float tensor, normalise to
[-1, 1]. One process, one thread (torch.set_num_threads(1)). Rates are per CPU-second of the process
(time.process_time), i.e. images/s per core, which stays meaningful on a shared machine. Also times the Fashion-MNIST path (28x28 grey, crop + resize to 32) for comparison.

Run by hand (not part of the tests):

    python3 -m venv /tmp/benchvenv
    /tmp/benchvenv/bin/pip install pillow numpy torch torchvision
    /tmp/benchvenv/bin/python scripts/bench_data_reference.py [PHOTO_DIR]

Without torchvision it falls back to the same steps written with PIL and numpy, and says so.
Expected runtime: about half a minute.
"""

import glob
import gzip
import os
import statistics
import sys
import time

from PIL import Image

PHOTOS = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(__file__), "..", "..", "shared", "data", "photos-500x375")
FASHION = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"
PASSES = 5

try:
    import torch
    from torchvision import transforms as T

    torch.set_num_threads(1)
    HAVE_TORCH = True
except ImportError:  # PIL-only fallback
    import numpy as np

    HAVE_TORCH = False


def photo_transform(size, interpolation):
    if HAVE_TORCH:
        return T.Compose([
            T.RandomResizedCrop(size, scale=(0.05, 1.0), ratio=(3 / 4, 4 / 3),
                                interpolation=interpolation),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize([0.5] * 3, [0.5] * 3),
        ])

    import random

    def run(img):
        w, h = img.size
        left, top = random.randint(0, w // 4), random.randint(0, h // 4)
        box = (left, top, left + w // 2 + random.randint(0, w // 4), top + h // 2)
        img = img.resize((size, size), Image.Resampling.BILINEAR, box=box)
        if random.random() < 0.5:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        x = np.asarray(img, dtype=np.float32).transpose(2, 0, 1) / 255.0
        return (x - 0.5) / 0.5

    return run


def time_photos(files, transform):
    """Returns (images per CPU-second, images per wall-second) for each pass."""
    rates = []
    for _ in range(PASSES):
        start, cpu_start = time.perf_counter(), time.process_time()
        for path in files:
            with Image.open(path) as img:
                transform(img.convert("RGB"))
        cpu, wall = time.process_time() - cpu_start, time.perf_counter() - start
        rates.append((len(files) / cpu, len(files) / wall))
    return rates


def time_fashion(transform, count=60000):
    with gzip.open(FASHION, "rb") as f:
        raw = f.read()
    images = [Image.frombytes("L", (28, 28), raw[16 + i * 784:16 + (i + 1) * 784])
              for i in range(count)]
    start, cpu_start = time.perf_counter(), time.process_time()
    for img in images:
        transform(img.convert("RGB"))
    return count / (time.process_time() - cpu_start), count / (time.perf_counter() - start)


def main():
    files = sorted(glob.glob(os.path.join(PHOTOS, "*.jpg")))
    if not files:
        sys.exit(f"no JPEGs in {PHOTOS}")
    print(f"reference: PIL {Image.__version__}, "
          + (f"torch {torch.__version__}, torchvision" if HAVE_TORCH else "PIL + numpy only (no torchvision)")
          + f", {len(files)} photos, {PASSES} passes, 1 thread")
    for name, interp in [("bilinear", Image.Resampling.BILINEAR), ("bicubic", Image.Resampling.BICUBIC)]:
        if HAVE_TORCH:
            interp = {"bilinear": T.InterpolationMode.BILINEAR, "bicubic": T.InterpolationMode.BICUBIC}[name]
        rates = time_photos(files, photo_transform(224, interp))
        cpu = statistics.median(r[0] for r in rates)
        wall = statistics.median(r[1] for r in rates)
        print(f"photos -> 224 {name}: {cpu:.0f} images per CPU-second, {wall:.0f} images/s wall "
              f"(median of {PASSES})")
    if HAVE_TORCH and os.path.exists(FASHION):
        tf = T.Compose([T.RandomResizedCrop(32, scale=(0.05, 1.0)), T.RandomHorizontalFlip(),
                        T.ToTensor(), T.Normalize([0.5] * 3, [0.5] * 3)])
        cpu, wall = time_fashion(tf)
        print(f"fashion-mnist 28 -> 32 bilinear: {cpu:.0f} images per CPU-second, "
              f"{wall:.0f} images/s wall ({60000 / cpu:.1f} CPU-s per 60k epoch)")


if __name__ == "__main__":
    main()
