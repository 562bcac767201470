#!/usr/bin/env python3
"""Write the parity fixtures: random-weight BiT ResNet-v2 checkpoints plus the logits that
timm and transformers compute for them, so the Rust models can be checked against the
reference libraries without Python.

Run by hand, never by CI (it needs torch, timm and transformers; versions pinned in
scripts/requirements-reference.txt):

    python3 -m venv /work/venv
    /work/venv/bin/pip install -r scripts/requirements-reference.txt
    /work/venv/bin/python scripts/make_parity_fixtures.py            # small, committed fixtures
    /work/venv/bin/python scripts/make_parity_fixtures.py --large    # also the full-size one

Run it from anywhere; paths are relative to the repository root. It writes:

  tests/fixtures/parity/<case>/          (committed; the whole folder stays around 3 MB)
      timm_small/              timm folder as timm's own `save_for_hf` writes it:
                               model.safetensors (timm names, head.fc as a 1x1 conv) and
                               config.json (architecture, num_classes, label_names,
                               model_args, pretrained_cfg). Built with timm's registered
                               builder `resnetv2_50x1_bit` (depths [3,4,6,3], fixed by that
                               builder) with narrow channels; timm loads the folder back
                               with `create_model("local-dir:...", pretrained=True)`.
      npz/                     model.npz in Google BiT's layout (HWIO kernels), from a
                               smaller timm ResNetV2 (depths [2,1,1,1]) built with timm's
                               BiT settings; checked by loading it back with timm's own
                               npz importer (`ResNetV2.load_pretrained`).
      transformers_bit/        transformers BitForImageClassification as `save_pretrained`
                               writes it (config.json + model.safetensors), default padding
                               (what google/bit-50 uses).
      transformers_bit_same/   the same family with global_padding="SAME" and
                               embedding_dynamic_padding=True (what the ViT-hybrid / DPT-hybrid
                               BiT backbones use), three stages.
  each case also holds io.safetensors:
      pixel_values [N,3,H,W] f32   random normal inputs (already "preprocessed")
      logits       [N,classes] f32 the reference library's output, float32, eval mode
      features     [N,C] f32       pooled features before the classifier (for diagnosis)
  tests/fixtures/parity/manifest.json    library versions, seed, and per case the
                                         architecture, shapes, max |logit| and how far the
                                         float32 logits are from a float64 run of the same model.
  tests/fixtures/large/resnetv2_50x1_bit/  (--large only; gitignored; ~100 MB) full-size
                                           resnetv2_50x1_bit, 1 image 224x224, same layout.

Weights are random but deliberately not the libraries' default init, so that a mistake shows
in the logits: every GroupNorm weight ~ N(1, 0.3) and bias ~ N(0, 0.3) (a dropped affine or
bias changes the output), conv kernels get a per-output-channel mean offset and scale (a
missing weight-standardization mean or variance changes the output; small variances make the
eps visible), the classifier bias ~ N(0, 0.5).

The input 45x52 (H odd, W even) is chosen so that every stride-2 layer sees one odd and one
even side: H goes 45 -> 23 -> 12 -> 6 -> 3 -> 2, W goes 52 -> 26 -> 13 -> 7 -> 4 -> 2. With
TF "SAME" padding only even sides pad asymmetrically (odd sides pad symmetrically), and with
symmetric padding the floor in the output-size formula only bites on even sides, so both
branches are exercised in both directions.

Everything is seeded; re-running writes identical weights and inputs, and logits that agree
to float32 rounding (the exact bits can depend on the CPU and thread count).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import numpy as np
import safetensors.torch
import timm
import torch
import transformers
from timm.models._hub import save_for_hf
from timm.models.resnetv2 import ResNetV2, _create_resnetv2_bit
from transformers import BitConfig, BitForImageClassification

SEED = 20240601
BATCH = 2
HEIGHT, WIDTH = 45, 52
NUM_CLASSES = 10
LABELS = [
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
]

REPO = Path(__file__).resolve().parent.parent
PARITY = REPO / "tests" / "fixtures" / "parity"
LARGE = REPO / "tests" / "fixtures" / "large"


# ---------------------------------------------------------------------------------------------
# Random, non-default weights
# ---------------------------------------------------------------------------------------------


def is_classifier(name: str) -> bool:
    return name.startswith("head.fc.") or name.startswith("classifier.")


def is_norm(name: str, tensor: torch.Tensor) -> bool:
    # Every 1-D parameter outside the classifier is a GroupNorm affine (no conv has a bias).
    return tensor.ndim == 1 and not is_classifier(name)


@torch.no_grad()
def randomize(model: torch.nn.Module, gen: torch.Generator) -> None:
    """Overwrite every parameter with seeded random values that make mistakes visible."""
    for name, p in model.named_parameters():
        shape = p.shape
        if is_classifier(name):
            if name.endswith(".weight"):
                p.copy_(torch.randn(shape, generator=gen) * 0.1)
            else:
                p.copy_(torch.randn(shape, generator=gen) * 0.5)
        elif is_norm(name, p):
            if name.endswith(".weight"):
                p.copy_(1.0 + 0.3 * torch.randn(shape, generator=gen))
            else:
                p.copy_(0.3 * torch.randn(shape, generator=gen))
        elif p.ndim == 4:
            out = shape[0]
            # Per output channel: std in [0.003, 0.03] (so eps 1e-8 is not negligible against
            # the smallest variances), plus a mean offset of about two stds (so forgetting to
            # subtract the mean changes the output a lot).
            scale = 0.003 * torch.exp(torch.rand(out, 1, 1, 1, generator=gen) * np.log(10.0))
            offset = 2.0 * scale * torch.randn(out, 1, 1, 1, generator=gen)
            p.copy_(offset + scale * torch.randn(shape, generator=gen))
        else:
            raise ValueError(f"unexpected parameter {name} {tuple(shape)}")
    # No buffers are expected (GroupNorm has no running statistics).
    buffers = [n for n, _ in model.named_buffers()]
    if buffers:
        raise ValueError(f"unexpected buffers: {buffers}")


# ---------------------------------------------------------------------------------------------
# Running the reference models
# ---------------------------------------------------------------------------------------------


@torch.no_grad()
def timm_forward(model: ResNetV2, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    model.eval()
    feats = model.forward_head(model.forward_features(x), pre_logits=True)
    logits = model(x)
    return logits, feats


@torch.no_grad()
def hf_forward(model: BitForImageClassification, x: torch.Tensor):
    model.eval()
    out = model.bit(x, return_dict=True)
    feats = out.pooler_output.flatten(1)
    logits = model(x, return_dict=True).logits
    return logits, feats


def f64_discrepancy(model: torch.nn.Module, forward, x: torch.Tensor, logits: torch.Tensor):
    """Max |logit(f32) - logit(f64)| of the same model, relative to max |logit|."""
    m64 = copy.deepcopy(model).double()
    l64, _ = forward(m64, x.double())
    diff = (logits.double() - l64).abs().max().item()
    return diff, diff / l64.abs().max().item()


def inputs(gen: torch.Generator, n: int, h: int, w: int) -> torch.Tensor:
    return torch.randn(n, 3, h, w, generator=gen, dtype=torch.float32)


def write_io(folder: Path, x: torch.Tensor, logits: torch.Tensor, feats: torch.Tensor) -> None:
    safetensors.torch.save_file(
        {
            "pixel_values": x.contiguous(),
            "logits": logits.contiguous(),
            "features": feats.contiguous(),
        },
        str(folder / "io.safetensors"),
        metadata={"note": "written by scripts/make_parity_fixtures.py"},
    )


def check_close(what: str, a: torch.Tensor, b: torch.Tensor, exact: bool = True) -> None:
    if exact:
        ok = torch.equal(a, b)
    else:
        ok = torch.allclose(a, b, rtol=0, atol=1e-6 * b.abs().max().item())
    if not ok:
        raise AssertionError(f"{what}: max |diff| {(a - b).abs().max().item()}")


def case_summary(name, logits, feats, x, diff, rel, **arch):
    return {
        "case": name,
        "pixel_values": list(x.shape),
        "logits": list(logits.shape),
        "features": list(feats.shape),
        "max_abs_logit": logits.abs().max().item(),
        "f32_vs_f64_max_abs": diff,
        "f32_vs_f64_rel": rel,
        **arch,
    }


# ---------------------------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------------------------


def make_timm(folder: Path, gen: torch.Generator, x: torch.Tensor, num_classes: int,
              model_kwargs: dict, input_size: tuple, labels) -> dict:
    """A timm ResNetV2 from the registered `resnetv2_50x1_bit` builder, saved as timm saves it."""
    torch.manual_seed(0)  # timm's own init is overwritten, but keep construction reproducible
    model = timm.create_model(
        "resnetv2_50x1_bit", pretrained=False, num_classes=num_classes, **model_kwargs
    )
    randomize(model, gen)
    model.eval()
    logits, feats = timm_forward(model, x)

    folder.mkdir(parents=True, exist_ok=True)
    model_config = {"label_names": list(labels)} if labels else None
    save_for_hf(
        model,
        str(folder),
        model_config=model_config,
        safe_serialization=True,
        data_config={
            "input_size": input_size,
            "crop_pct": 0.875,
            "interpolation": "bicubic",
            "mean": (0.5, 0.5, 0.5),
            "std": (0.5, 0.5, 0.5),
        },
    )

    # The folder must rebuild in timm exactly as a user would load it: from config.json's
    # architecture + model_args, and through timm's own local-folder loader.
    cfg = json.loads((folder / "config.json").read_text())
    sd = safetensors.torch.load_file(str(folder / "model.safetensors"))
    rebuilt = timm.create_model(cfg["architecture"], pretrained=False, **cfg["model_args"])
    rebuilt.load_state_dict(sd, strict=True)
    check_close("timm rebuild from model_args", timm_forward(rebuilt, x)[0], logits)
    local = timm.create_model(f"local-dir:{folder}", pretrained=True)
    check_close("timm local-dir load", timm_forward(local, x)[0], logits)

    write_io(folder, x, logits, feats)
    diff, rel = f64_discrepancy(model, timm_forward, x, logits)
    return case_summary(
        folder.name, logits, feats, x, diff, rel, library="timm",
        architecture=cfg["architecture"],
        layers=[len(s.blocks) for s in model.stages],
        channels=[s.blocks[0].conv3.out_channels for s in model.stages],
        stem_chs=model.stem.conv.out_channels,
    )


def npz_name_map(model: ResNetV2, prefix: str = "resnet/") -> dict[str, str]:
    """timm state_dict name -> Google BiT npz name (the layout timm's `_load_weights` reads)."""
    names = {
        "stem.conv.weight": f"{prefix}root_block/standardized_conv2d/kernel",
        "norm.weight": f"{prefix}group_norm/gamma",
        "norm.bias": f"{prefix}group_norm/beta",
        "head.fc.weight": f"{prefix}head/conv2d/kernel",
        "head.fc.bias": f"{prefix}head/conv2d/bias",
    }
    for i, stage in enumerate(model.stages):
        for j, block in enumerate(stage.blocks):
            t = f"stages.{i}.blocks.{j}."
            g = f"{prefix}block{i + 1}/unit{j + 1:02d}/"
            # Pre-activation unit: the group_norm under letter a/b/c is the norm applied
            # *before* conv a/b/c, i.e. timm's norm1/norm2/norm3.
            for letter, k in (("a", 1), ("b", 2), ("c", 3)):
                names[f"{t}conv{k}.weight"] = f"{g}{letter}/standardized_conv2d/kernel"
                names[f"{t}norm{k}.weight"] = f"{g}{letter}/group_norm/gamma"
                names[f"{t}norm{k}.bias"] = f"{g}{letter}/group_norm/beta"
            if block.downsample is not None:
                names[f"{t}downsample.conv.weight"] = f"{g}a/proj/standardized_conv2d/kernel"
    return names


def make_npz(folder: Path, gen: torch.Generator, x: torch.Tensor) -> dict:
    """A small timm ResNetV2 (BiT settings) written as a Google BiT .npz."""
    torch.manual_seed(0)
    # timm's registered BiT builders fix the depths, so a [2,1,1,1] model goes through the
    # builder they all call (same stem, StdConv2d eps 1e-8, GroupNorm 32, conv head).
    kwargs = dict(layers=[2, 1, 1, 1], channels=(128, 128, 128, 128), stem_chs=64,
                  num_classes=NUM_CLASSES)
    model = _create_resnetv2_bit("resnetv2_50x1_bit", **kwargs)
    randomize(model, gen)
    model.eval()
    logits, feats = timm_forward(model, x)

    names = npz_name_map(model)
    sd = model.state_dict()
    if sorted(names) != sorted(sd):
        raise AssertionError(f"npz map mismatch: {set(names) ^ set(sd)}")
    arrays = {}
    for key, value in sd.items():
        a = value.numpy()
        if a.ndim == 4:
            a = a.transpose(2, 3, 1, 0)  # OIHW -> HWIO
        arrays[names[key]] = np.ascontiguousarray(a, dtype=np.float32)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.npz"
    with open(path, "wb") as f:
        np.savez(f, **arrays)

    # Load it back with timm's own npz importer into a fresh, differently initialised model.
    torch.manual_seed(1)
    fresh = _create_resnetv2_bit("resnetv2_50x1_bit", **kwargs)
    fresh.load_pretrained(str(path))
    for key, value in sd.items():
        check_close(f"npz round trip {key}", fresh.state_dict()[key], value)
    check_close("npz logits via timm load_pretrained", timm_forward(fresh, x)[0], logits)

    write_io(folder, x, logits, feats)
    diff, rel = f64_discrepancy(model, timm_forward, x, logits)
    return case_summary(
        folder.name, logits, feats, x, diff, rel, library="timm (npz)",
        layers=kwargs["layers"], channels=list(kwargs["channels"]), stem_chs=kwargs["stem_chs"],
    )


def make_transformers(folder: Path, gen: torch.Generator, x: torch.Tensor, **config_kwargs) -> dict:
    torch.manual_seed(0)
    config = BitConfig(
        num_labels=NUM_CLASSES,
        id2label={i: name for i, name in enumerate(LABELS)},
        label2id={name: i for i, name in enumerate(LABELS)},
        layer_type="preactivation",
        **config_kwargs,
    )
    model = BitForImageClassification(config)
    randomize(model, gen)
    model.eval()
    logits, feats = hf_forward(model, x)

    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(folder), safe_serialization=True)
    reloaded = BitForImageClassification.from_pretrained(str(folder))
    check_close("transformers reload", hf_forward(reloaded, x)[0], logits)

    write_io(folder, x, logits, feats)
    diff, rel = f64_discrepancy(model, hf_forward, x, logits)
    return case_summary(
        folder.name, logits, feats, x, diff, rel, library="transformers",
        depths=config.depths, hidden_sizes=config.hidden_sizes,
        embedding_size=config.embedding_size, global_padding=config.global_padding,
        embedding_dynamic_padding=config.embedding_dynamic_padding,
    )


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--large", action="store_true",
                        help="also write the full-size resnetv2_50x1_bit fixture (gitignored)")
    parser.add_argument("--skip-small", action="store_true", help="only write --large")
    args = parser.parse_args()

    versions = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "timm": timm.__version__,
        "transformers": transformers.__version__,
        "numpy": np.__version__,
        "safetensors": getattr(safetensors, "__version__", "?"),
    }

    if not args.skip_small:
        # One generator per case, so editing one case leaves the others' bytes unchanged.
        def gen(offset):
            return torch.Generator().manual_seed(SEED + offset)

        x = inputs(gen(0), BATCH, HEIGHT, WIDTH)
        cases = [
            make_timm(PARITY / "timm_small", gen(1), x, NUM_CLASSES,
                      dict(channels=(128, 128, 128, 128), stem_chs=64),
                      (3, HEIGHT, WIDTH), LABELS),
            make_npz(PARITY / "npz", gen(2), x),
            make_transformers(PARITY / "transformers_bit", gen(3), x,
                              embedding_size=32, hidden_sizes=[128, 128, 128, 128],
                              depths=[1, 1, 2, 1]),
            make_transformers(PARITY / "transformers_bit_same", gen(4), x,
                              embedding_size=64, hidden_sizes=[128, 128, 128],
                              depths=[2, 1, 1], global_padding="SAME",
                              embedding_dynamic_padding=True),
        ]
        manifest = {
            "written_by": "scripts/make_parity_fixtures.py",
            "seed": SEED,
            "versions": versions,
            "tolerance_rule": "max |logit - reference| <= 1e-4 * max |reference logit|",
            "cases": cases,
        }
        (PARITY / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        for c in cases:
            print(f"{c['case']:24s} logits {c['logits']} max|logit| {c['max_abs_logit']:.4g} "
                  f"f32-vs-f64 rel {c['f32_vs_f64_rel']:.2e}")
        print(f"{PARITY.relative_to(REPO)}: {folder_size(PARITY) / 1e6:.2f} MB")

    if args.large:
        g = torch.Generator().manual_seed(SEED + 100)
        x = inputs(g, 1, 224, 224)
        torch.manual_seed(0)
        model = timm.create_model("resnetv2_50x1_bit", pretrained=False)
        randomize(model, g)
        model.eval()
        logits, feats = timm_forward(model, x)
        folder = LARGE / "resnetv2_50x1_bit"
        folder.mkdir(parents=True, exist_ok=True)
        save_for_hf(model, str(folder), safe_serialization=True)
        cfg = json.loads((folder / "config.json").read_text())
        rebuilt = timm.create_model(cfg["architecture"], pretrained=False,
                                    **cfg.get("model_args", {}))
        rebuilt.load_state_dict(safetensors.torch.load_file(str(folder / "model.safetensors")))
        check_close("large rebuild", timm_forward(rebuilt, x)[0], logits)
        write_io(folder, x, logits, feats)
        diff, rel = f64_discrepancy(model, timm_forward, x, logits)
        summary = case_summary("large/resnetv2_50x1_bit", logits, feats, x, diff, rel,
                               library="timm", versions=versions)
        (folder / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        print(f"large: max|logit| {summary['max_abs_logit']:.4g} f32-vs-f64 rel {rel:.2e}, "
              f"{folder_size(folder) / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
