"""Check that timm and transformers load funmatch exports and agree with `funmatch predict`.

Run by hand (never by CI), with the reference environment
(`pip install -r scripts/requirements-reference.txt`), from the repository root:

    python scripts/interop_check.py [--funmatch target/release/funmatch] [--model MODEL]

It exports MODEL (default: the committed timm parity fixture) in both layouts with
`funmatch export`, loads the timm folder with `timm.create_model("local-dir:…")` and the
transformers folder with `BitForImageClassification.from_pretrained`, runs both on the same
random `pixel_values`, and compares with the logits `funmatch predict --output` writes.
Prints one line per library with the max |Δ logit|; exits 1 if any exceeds 1e-4 × max |logit|.
"""

import argparse
import pathlib
import subprocess
import sys
import tempfile

import torch
from safetensors.torch import load_file, save_file


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--funmatch", default="target/release/funmatch")
    parser.add_argument("--model", default="tests/fixtures/parity/timm_small")
    args = parser.parse_args()

    work = pathlib.Path(tempfile.mkdtemp(prefix="funmatch-interop-"))
    run = lambda *a: subprocess.run([args.funmatch, *a], check=True, capture_output=True, text=True)
    timm_dir, hf_dir = work / "timm", work / "transformers"
    run("export", args.model, "--out", str(timm_dir))
    run("export", args.model, "--out", str(hf_dir), "--format", "transformers")

    import json
    cfg = json.loads((timm_dir / "config.json").read_text())
    c, h, w = cfg["pretrained_cfg"]["input_size"]
    torch.manual_seed(0)
    x = torch.randn(2, c, h, w)
    save_file({"pixel_values": x.contiguous()}, str(work / "x.safetensors"))
    run("predict", str(timm_dir), str(work / "x.safetensors"), "--output", str(work / "ours.safetensors"))
    ours = load_file(str(work / "ours.safetensors"))["logits"]
    scale = ours.abs().max().item()

    import timm
    timm_model = timm.create_model(f"local-dir:{timm_dir}", pretrained=True).eval()
    import transformers
    hf_model = transformers.BitForImageClassification.from_pretrained(str(hf_dir)).eval()
    with torch.no_grad():
        results = {
            f"timm {timm.__version__}": timm_model(x),
            f"transformers {transformers.__version__}": hf_model(pixel_values=x).logits,
        }

    ok = True
    for name, logits in results.items():
        diff = (logits - ours).abs().max().item()
        good = diff <= 1e-4 * scale
        ok &= good
        print(f"{name:<24} max |Δ logit| = {diff:.3e}  (max |logit| {scale:.3f})  {'ok' if good else 'MISMATCH'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
