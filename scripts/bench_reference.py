#!/usr/bin/env python3
"""PyTorch + timm reference for funmatch's CPU-speed benchmarks (run by hand, never by CI).

Same models, batch sizes, resolutions, thread count and optimizer (Adam) as
`cargo bench -p funmatch-models --bench cpu_speed`; prints images/s and peak resident memory
per case, each case in its own process so that each peak is its own.

    python scripts/bench_reference.py [--threads 2] [--steps 3] [CASE ...]

Run it from a directory that does not shadow the standard library. Needs torch and timm
(scripts/requirements-reference.txt).
"""

import argparse
import resource
import subprocess
import sys
import time

CASES = [
    "infer-50x1",
    "infer-152x2",
    "train-50x1",
    "distill-50x1",
    "train-fmnist-student",
    "distill-fmnist",
]


def peak_rss_mib():
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def fmnist(teacher):
    """The quickstart's teacher and student (models/recipes/fashion-mnist-{teacher,distill}.toml),
    as the Rust bench builds them: small-stem ResNet-v2, 28x28, 3 channels, 10 classes."""
    from functools import partial

    import timm.models.resnetv2 as r
    from timm.layers import GroupNormAct

    if teacher:
        layers, chans, stem, groups = [2, 2, 2], (64, 128, 256), 32, 16
    else:
        layers, chans, stem, groups = [1, 1, 1], (16, 48, 96), 8, 4
    return r.ResNetV2(
        layers=layers,
        channels=chans,
        num_classes=10,
        in_chans=3,
        stem_chs=stem,
        norm_layer=partial(GroupNormAct, num_groups=groups),
    )


def small_stem(model):
    # timm's default stem is a 7x7/2 conv + pool; the funmatch small stem is one 3x3/1 conv.
    import torch.nn as nn
    import timm.models.resnetv2 as r

    conv = model.stem.conv
    model.stem = nn.Sequential()
    model.stem.add_module("conv", r.StdConv2d(conv.in_channels, conv.out_channels, 3, stride=1, padding=1, eps=1e-8))
    return model


def build(name):
    import timm

    if name == "fmnist-student":
        return small_stem(fmnist(False)), 3, 28, 128
    if name == "fmnist-teacher":
        return small_stem(fmnist(True)), 3, 28, 128
    return timm.create_model(name, pretrained=False), 3, 224, 16


def timed(steps, step):
    step()
    times = []
    for _ in range(max(steps, 1)):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2]


def run_case(case, steps):
    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)
    if case.startswith("infer-"):
        model, chans, size, n = build("resnetv2_" + case[len("infer-"):] + "_bit")
        model.eval()
        x = torch.randn(n, chans, size, size)

        def step():
            with torch.inference_mode():
                model(x).sum().item()

        secs = timed(min(steps, 2) if "152" in case else steps, step)
    else:
        student_name = "fmnist-student" if "fmnist" in case else "resnetv2_50x1_bit"
        teacher_name = "fmnist-teacher" if "fmnist" in case else "resnetv2_50x1_bit"
        student, chans, size, n = build(student_name)
        student.train()
        teacher = None
        if case.startswith("distill-"):
            teacher = build(teacher_name)[0].eval()
        opt = torch.optim.Adam(student.parameters(), lr=1e-4)
        x = torch.randn(n, chans, size, size)

        def step():
            opt.zero_grad(set_to_none=True)
            logits = student(x)
            if teacher is not None:
                with torch.inference_mode():
                    t = teacher(x)
                loss = F.kl_div(F.log_softmax(logits, -1), F.log_softmax(t, -1), log_target=True, reduction="batchmean")
            else:
                loss = logits.square().mean()
            loss.backward()
            opt.step()

        secs = timed(steps, step)
    print(
        f"{case:<22} {n / secs:8.2f} img/s  {secs:7.3f} s/step  peak RSS {peak_rss_mib():7.0f} MiB"
        f"  (torch {torch.__version__}, {torch.get_num_threads()} threads)",
        flush=True,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per case (default 3)")
    parser.add_argument("cases", nargs="*", help=f"cases (default all): {' '.join(CASES)}")
    args = parser.parse_args()
    if not args.cases:
        for case in CASES:
            cmd = [sys.executable, __file__, "--threads", str(args.threads), "--steps", str(args.steps), case]
            subprocess.run(cmd, check=True)
        return
    import torch

    torch.set_num_threads(args.threads)
    for case in args.cases:
        if case not in CASES:
            sys.exit(f"unknown case {case}; known: {' '.join(CASES)}")
        run_case(case, args.steps)


if __name__ == "__main__":
    main()
