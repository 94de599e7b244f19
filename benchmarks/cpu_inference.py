"""CPU inference of a trained model: encoding and decoding with the weights in PyTorch's default (contiguous)
layout against channels-last, which ModelSource now uses. The metrics encode ~2 million images at
disentanglement_lib's full counts (the β-VAE metric alone 15,000 points × 128 images), so the encoder's
speed is their speed on a CPU.

The two layouts run interleaved, batch after batch, so load on the machine hits both alike; the result is
their ratio (images per second, channels-last ÷ contiguous) and the largest difference in the outputs.

    OMP_NUM_THREADS=1 python benchmarks/cpu_inference.py --threads 1 --rounds 30
    python benchmarks/cpu_inference.py --checkpoint beta4-dsprites --json out.json
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time

import torch

from bvae_desktop.core.model_zoo import resolve_checkpoint
from bvae_desktop.core.nets import BetaVAE


def _model(checkpoint: str | None) -> BetaVAE:
    if checkpoint is None:  # an untrained dSprites-sized model: the layout's speed does not depend on the weights
        return BetaVAE((1, 64, 64), 10).eval()
    from bvae_desktop.core.checkpoint import load_checkpoint

    return load_checkpoint(resolve_checkpoint(checkpoint)).build_model("cpu")


def measure(model: BetaVAE, batch: int, rounds: int) -> dict[str, float]:
    contiguous = copy.deepcopy(model).to(memory_format=torch.contiguous_format)
    channels_last = copy.deepcopy(model).to(memory_format=torch.channels_last)
    images = torch.rand(batch, *model.image_shape)
    codes = torch.randn(batch, model.latent_dim)
    seconds = dict.fromkeys(
        ("encode_contiguous", "encode_channels_last", "decode_contiguous", "decode_channels_last"), 0.0
    )
    worst = 0.0
    with torch.no_grad():
        for m in (contiguous, channels_last):  # warm-up: oneDNN picks its kernels on the first call
            m.decode(m.encode(images)[0])
        for _ in range(rounds):
            for name, m in (("contiguous", contiguous), ("channels_last", channels_last)):
                start = time.perf_counter()
                mean = m.encode(images)[0]
                seconds[f"encode_{name}"] += time.perf_counter() - start
                start = time.perf_counter()
                m.decode(codes)
                seconds[f"decode_{name}"] += time.perf_counter() - start
            worst = max(worst, float((contiguous.encode(images)[0] - mean).abs().max()))
    images_done = batch * rounds
    out = {key: images_done / value for key, value in seconds.items()}  # images per second
    out["encode_ratio"] = out["encode_channels_last"] / out["encode_contiguous"]
    out["decode_ratio"] = out["decode_channels_last"] / out["decode_contiguous"]
    out["max_abs_difference_of_means"] = worst
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", help="a checkpoint or bundled model (default: an untrained dSprites model)")
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 256], help="images per call")
    parser.add_argument("--rounds", type=int, default=20, help="calls per layout and batch size")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--json", help="also write the numbers here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = _model(args.checkpoint)
    results = {}
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.rounds} rounds, images per second:")
    for batch in args.batches:
        r = measure(model, batch, args.rounds)
        results[str(batch)] = r
        print(
            f"  batch {batch:4d}: encode {r['encode_contiguous']:7.0f} → {r['encode_channels_last']:7.0f} "
            f"(×{r['encode_ratio']:.2f}); decode {r['decode_contiguous']:7.0f} → {r['decode_channels_last']:7.0f} "
            f"(×{r['decode_ratio']:.2f}); largest change in a mean {r['max_abs_difference_of_means']:.1e}"
        )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"threads": args.threads, "rounds": args.rounds, "results": results}, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
