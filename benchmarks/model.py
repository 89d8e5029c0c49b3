"""HyperEmbedding at C = 425: ours vs. the per-sample kernel vs. the upstream (B, N, C, E) einsum; whole-model rate.

    python benchmarks/model.py [--quick] [--device cpu|cuda] [--model tiny|base|large] [--bf16]

HyperEmbedding contenders (same module, same parameters, same tokens; forward + backward through the generators):
- ours: the factored evaluation of ``specaware.model.hyperembed`` (never forms U, U V or (B, N, C, E));
- kernel: generate U (B, C, E, r) and V, form the per-sample kernel U V (B, C k^2, E), one GEMM per sample
  (= a stride-k convolution): the alternative we considered;
- peer: the published implementation's approach: U V per band, contracted with the patches to (B, N, C, E), then
  summed over C.
Defaults: E = 768, r = 64, k = 8, d = 128, batch 2, C = 425, image 224 (128 with ``--quick``).

Time: best of N interleaved rounds of forward + backward (the machines are shared and noisy; ratios are
measured in one run). Peak memory: on CPU, the extra bytes of live tensors created during one
forward + backward, tracked per storage through a ``TorchDispatchMode`` with weakref finalizers
(``specaware.model.memtrace``; it sees every operator output, including the backward's); on CUDA,
``torch.cuda.max_memory_allocated`` above the level before the run. Whole model: samples/s of forward + backward of
``--model`` (``tiny`` by default) and, from ``torch.utils.flop_counter``, achieved TFLOP/s.
Last line: one JSON object with ``ours_ms, peer_ms, ours_peak_mb, peer_peak_mb`` and the rest.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import time
from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from specaware.model.hyperembed import HyperEmbedding
from specaware.model.mae import build_model
from specaware.model.memtrace import TensorMemory
from specaware.model.patches import patchify

Embed = Callable[[HyperEmbedding, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def ours(
    embed: HyperEmbedding, image: torch.Tensor, z: torch.Tensor, band_mask: torch.Tensor
) -> torch.Tensor:
    return embed(image, z, band_mask)


def kernel(
    embed: HyperEmbedding, image: torch.Tensor, z: torch.Tensor, band_mask: torch.Tensor
) -> torch.Tensor:
    u, v, bias = embed.factors(z, band_mask)
    b, c, e, _ = u.shape
    weight = (u @ v).permute(0, 1, 3, 2).reshape(b, -1, e)  # (B, C k^2, E)
    patches = patchify(image, embed.patch_size)
    patches = patches.permute(0, 2, 1, 3).reshape(b, patches.shape[2], -1)  # (B, N, C k^2)
    return embed.scale * (torch.bmm(patches, weight) + bias[:, None, :])


def peer(
    embed: HyperEmbedding, image: torch.Tensor, z: torch.Tensor, band_mask: torch.Tensor
) -> torch.Tensor:
    u, v, bias = embed.factors(z, band_mask)
    per_band = torch.einsum("bcnq,bceq->bnce", patchify(image, embed.patch_size), u @ v)  # (B, N, C, E)
    return embed.scale * (per_band.sum(2) + bias[:, None, :])


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def best_ms(steps: dict[str, Callable[[], None]], device: torch.device, repeats: int) -> dict[str, float]:
    """Best wall time of each step over ``repeats`` rounds, in ms, after one warm-up each. Rounds interleave the
    contenders so that load from other processes on a shared machine hits them alike."""
    best = dict.fromkeys(steps, float("inf"))
    for step in steps.values():
        step()
    for _ in range(repeats):
        for name, step in steps.items():
            synchronize(device)
            start = time.perf_counter()
            step()
            synchronize(device)
            best[name] = min(best[name], time.perf_counter() - start)
    return {name: seconds * 1e3 for name, seconds in best.items()}


def peak_mb(step: Callable[[], None], device: torch.device) -> float:
    """Extra memory of one call: live-tensor tracking on CPU, the allocator's high-water mark on CUDA."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 1e6
    with TensorMemory() as memory:
        step()
    return memory.peak_mb


def embedding_step(
    method: Embed, embed: HyperEmbedding, inputs: tuple[torch.Tensor, ...], bf16: bool
) -> None:
    embed.zero_grad(set_to_none=True)
    image, z, band_mask = inputs
    with autocast(image.device, bf16):
        tokens = method(embed, image, z, band_mask)
    tokens.float().square().mean().backward()


def autocast(device: torch.device, bf16: bool) -> contextlib.AbstractContextManager[object]:
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="image 128, fewer repeats (≤ 60 s on this machine)"
    )
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--model", default="tiny", help="named config for the whole-model rate")
    parser.add_argument("--model-batch", type=int, default=8)
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (GPUs)")
    parser.add_argument("--bands", type=int, default=425)
    parser.add_argument("--image", type=int, help="HyperEmbedding image size (default 224, 128 with --quick)")
    args = parser.parse_args()
    device = torch.device(args.device)
    repeats = 3 if args.quick else 5
    size = args.image or (128 if args.quick else 224)
    torch.manual_seed(0)

    batch, bands, dim = 2, args.bands, 128
    embed = HyperEmbedding(
        dim, embed_dim=768, rank=64, patch_size=8, hidden=128, bottleneck=64, dropout=0.0, scale_init=0.02
    ).to(device)
    for parameter in embed.bias_gen[
        -1
    ].parameters():  # non-zero bias so every contender's bias path is exercised
        torch.nn.init.normal_(parameter, std=0.02)
    image = torch.rand(batch, bands, size, size, device=device) * 10
    z = torch.randn(batch, bands, dim, device=device, requires_grad=True)
    band_mask = torch.ones(batch, bands, dtype=torch.bool, device=device)
    inputs = (image, z, band_mask)
    with torch.no_grad():
        reference = peer(embed, *inputs)
        for method in (ours, kernel):
            error = (method(embed, *inputs) - reference).abs().max().item()
            if error > 1e-3 * reference.abs().max().item():
                raise SystemExit(f"{method.__name__} disagrees with the peer by {error:g}")
        del reference

    results: dict[str, float | str] = {"device": args.device, "bands": bands, "image": size, "batch": batch}
    steps = {
        method.__name__: functools.partial(embedding_step, method, embed, inputs, args.bf16)
        for method in (ours, kernel, peer)
    }
    for name, milliseconds in best_ms(steps, device, repeats).items():
        results[f"{name}_ms"] = round(milliseconds, 1)
        results[f"{name}_peak_mb"] = round(peak_mb(steps[name], device), 1)
        print(
            f"hyperembedding {name:6s} fwd+bwd {results[f'{name}_ms']:8.1f} ms   "
            f"peak {results[f'{name}_peak_mb']:8.1f} MB",
            flush=True,
        )
    results["speedup_vs_peer"] = round(float(results["peer_ms"]) / float(results["ours_ms"]), 2)
    results["memory_vs_peer"] = round(float(results["ours_peak_mb"]) / float(results["peer_peak_mb"]), 3)
    results["speedup_vs_kernel"] = round(float(results["kernel_ms"]) / float(results["ours_ms"]), 2)
    results["memory_vs_kernel"] = round(float(results["ours_peak_mb"]) / float(results["kernel_peak_mb"]), 3)

    model = build_model(args.model, text="placeholder").to(device)
    side = model.config.image_size
    batch_dict = {
        "image": torch.rand(args.model_batch, bands, side, side, device=device) * 10,
        "wavelength": torch.linspace(380.0, 2500.0, bands, device=device).expand(args.model_batch, bands),
        "fwhm": torch.full((args.model_batch, bands), 6.0, device=device),
        "gsd": torch.full((args.model_batch,), 5.0, device=device),
        "sensor": ["aviris-ng"] * args.model_batch,
        "level": ["L1"] * args.model_batch,
    }

    def model_step() -> None:
        model.zero_grad(set_to_none=True)
        with autocast(device, args.bf16):
            loss = model(batch_dict).loss
        loss.backward()

    model_ms = best_ms({"model": model_step}, device, repeats)["model"]
    with FlopCounterMode(display=False) as flops:
        model_step()
    results["model"] = args.model
    results["model_batch"] = args.model_batch
    results["model_samples_s"] = round(args.model_batch / (model_ms / 1e3), 2)
    results["model_tflop_s"] = round(flops.get_total_flops() / (model_ms / 1e3) / 1e12, 3)
    print(
        f"model {args.model} batch {args.model_batch} x {bands} bands x {side}^2: fwd+bwd {model_ms:.1f} ms, "
        f"{results['model_samples_s']} samples/s, {results['model_tflop_s']} TFLOP/s",
        flush=True,
    )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
