"""Data-generation speed and rendering accuracy (prints numbers; asserts nothing).

    python bench/bench_data.py [--batch 32] [--iters 50] [--threads 1] [--devices cpu,cuda]

1. Time to generate every family of the embedded source from scratch (one core).
2. Sequences per second for every dataset at the paper's training settings (batch 32,
   T = 3; mnist_accl T = 10), embedded source, on the CPU and on CUDA when available.
3. The batched torch renderer against the per-frame NumPy reference renderer
   (msp.data.reference_render) on real Fashion-MNIST images, when installed.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from msp.data import DATASETS, build_sequences
from msp.data.prepare import prepare

FASHION = Path("/usr/share/datasets/fashion-mnist")
TRAIN_T = {"mnist_accl": 10}


def bench_embedded_generation(root: Path) -> None:
    print("\n## Embedded source: generation from scratch")
    print("| family | seconds |\n|---|---|")
    total = 0.0
    for family in ("mnist", "mnist_bg", "3dshapes", "smallNORB"):
        start = time.perf_counter()
        prepare(family, root, "embedded")
        seconds = time.perf_counter() - start
        total += seconds
        print(f"| {family} | {seconds:.2f} |")
    print(f"| total | {total:.2f} |")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_sampling(root: Path, devices: list[str], batch: int, iters: int) -> None:
    print(f"\n## Sampling, embedded source, batch {batch}")
    print("| dataset | device | T | ms / batch | sequences / s |\n|---|---|---|---|---|")
    for device in devices:
        for name in DATASETS:
            T = TRAIN_T.get(name, 3)
            gen = build_sequences(name, root=root, source="embedded", T=T, device=device, seed=0)
            for _ in range(3):
                gen.sample(batch)
            sync(gen.device)
            start = time.perf_counter()
            for _ in range(iters):
                gen.sample(batch)
            sync(gen.device)
            per_batch = (time.perf_counter() - start) / iters
            print(f"| {name} | {device} | {T} | {per_batch * 1e3:.2f} | {batch / per_batch:,.0f} |")


def bench_render_accuracy(n: int) -> None:
    from msp.data.readers import read_idx
    from msp.data.reference_render import render_frame
    from msp.data.render import render_digit_frames, resize_and_pad

    if not FASHION.is_dir():
        print("\n(Fashion-MNIST not installed: `apt-get install dataset-fashion-mnist`; "
              "rendering accuracy skipped)")
        return
    images = read_idx(FASHION / "t10k-images-idx3-ubyte.gz")
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(images), n)
    angle, hue = rng.uniform(0, 2 * math.pi, n), rng.uniform(0, 1, n)
    shift, bg = rng.uniform(-10, 10, (n, 2)), rng.uniform(0, 1, (n, 3, 32, 32))
    print(f"\n## Batched renderer vs per-frame reference, {n} Fashion-MNIST frames "
          "(values in [0, 1]; SSE = per-frame squared error summed over C, H, W)")
    print("| warp | backgrounds | reference | max abs | mean abs | mean SSE / frame | "
          "reference frame energy |\n|---|---|---|---|---|---|---|")
    for warp_mode in ("authors", "exact"):
        for with_bg in (False, True):
            backgrounds = torch.from_numpy(bg).float() if with_bg else None
            start = time.perf_counter()
            ours = render_digit_frames(resize_and_pad(torch.from_numpy(images[idx])),
                                       torch.from_numpy(angle), torch.from_numpy(hue),
                                       torch.from_numpy(shift), backgrounds, warp_mode).numpy()
            t_ours = time.perf_counter() - start
            for quantize in (False, True):
                start = time.perf_counter()
                ref = np.stack([render_frame(images[i], a, h, s[0], s[1],
                                             bg[k] if with_bg else None, warp_mode, quantize)
                                for k, (i, a, h, s) in enumerate(zip(idx, angle, hue, shift))])
                t_ref = time.perf_counter() - start
                diff = ours - ref
                label = "cv2-like (1/32 px)" if quantize else "continuous bilinear"
                print(f"| {warp_mode} | {'yes' if with_bg else 'no'} | {label} | "
                      f"{np.abs(diff).max():.2e} | {np.abs(diff).mean():.2e} | "
                      f"{(diff ** 2).sum(axis=(1, 2, 3)).mean():.2e} | "
                      f"{(ref ** 2).sum(axis=(1, 2, 3)).mean():.1f} |")
    print(f"(timing: batched {t_ours * 1e3:.1f} ms vs per-frame reference {t_ref * 1e3:.0f} ms "
          f"for {n} frames)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--devices", default="cpu,cuda")
    parser.add_argument("--frames", type=int, default=500, help="frames for the accuracy check")
    parser.add_argument("--root", default=None, help="embedded data root (default: a temp dir)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    devices = [d for d in args.devices.split(",") if d != "cuda" or torch.cuda.is_available()]
    print(f"torch {torch.__version__}, {args.threads} thread(s), devices {devices}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.root or tmp)
        bench_embedded_generation(root)
        bench_sampling(root, devices, args.batch, args.iters)
    bench_render_accuracy(args.frames)


if __name__ == "__main__":
    main()
