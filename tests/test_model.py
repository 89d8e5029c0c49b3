"""SpecAware model properties on the ``tiny`` config (CPU, fast): shapes for any band count, band-order invariance,
masking bookkeeping, loss semantics, padding, per-sample sensors, checkpoints, offline building, real data, memory."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from specaware.config import CONFIGS, ModelConfig, model_config
from specaware.model import build_model, load_checkpoint, save_checkpoint
from specaware.model.contraction import band_contraction
from specaware.model.hyperembed import HyperEmbedding
from specaware.model.loss import reconstruction_loss, token_mask_to_pixels
from specaware.model.mae import SpecAwareMAE
from specaware.model.masking import gather_tokens, random_masking, visible_count
from specaware.model.memtrace import TensorMemory
from specaware.model.patches import patchify
from specaware.model.pretrained import load_mae_blocks
from specaware.model.text import KIND_PLACEHOLDER, KIND_SENTENCE, placeholder_vectors, text_vectors

RDN = Path("aviris-ng") / "ang20170323t202244_rdn_7000-7010"


def make_batch(
    bands: int,
    size: int = 32,
    batch: int = 2,
    seed: int = 0,
    sensors: tuple[str, ...] = ("aviris-ng", "aviris-3"),
) -> dict[str, Any]:
    """A synthetic batch with per-sample wavelength grids, FWHM, GSD, sensors and levels."""
    generator = torch.Generator().manual_seed(seed)
    start = 380.0 + 20.0 * torch.rand(batch, 1, generator=generator)
    wavelength = start + torch.linspace(0.0, 2100.0, bands)[None, :]
    return {
        "image": torch.rand(batch, bands, size, size, generator=generator) * 10.0,
        "wavelength": wavelength,
        "fwhm": 5.0 + 5.0 * torch.rand(batch, bands, generator=generator),
        "gsd": torch.linspace(3.0, 15.0, batch),
        "sensor": [sensors[i % len(sensors)] for i in range(batch)],
        "level": ["L1" if i % 2 == 0 else "L2" for i in range(batch)],
    }


def select(batch: dict[str, Any], index: int) -> dict[str, Any]:
    """Sample ``index`` of a batch as a batch of one."""
    return {
        key: [value[index]] if isinstance(value, list) else value[index : index + 1]
        for key, value in batch.items()
    }


@pytest.fixture(scope="module")
def tiny() -> SpecAwareMAE:
    torch.manual_seed(0)
    return build_model("tiny", text="placeholder").eval()


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Network use fails the test; sentence-transformers is made unimportable (as where it is not installed)."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model touched the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)


@pytest.mark.parametrize("bands", [50, 224, 284, 425])
def test_output_shapes_for_any_band_count(tiny: SpecAwareMAE, bands: int) -> None:
    batch = make_batch(bands)
    with torch.no_grad():
        out = tiny(batch, generator=torch.Generator().manual_seed(1))
        encoded = tiny.encode(batch)
    tokens = (32 // 8) ** 2
    assert out.prediction.shape == (2, bands, 32, 32)
    assert out.mask.shape == (2, tokens) and out.pixels.shape == (2, 32, 32)
    assert out.loss.shape == () and torch.isfinite(out.loss)
    assert torch.equal(out.mask.sum(1), torch.full((2,), tokens - visible_count(tokens, 0.75)))
    assert encoded.tokens.shape == (2, 1 + tokens, tiny.config.embed_dim)
    assert encoded.meta.shape == (2, bands, tiny.config.meta_dim)


def test_encoder_invariant_to_band_order(tiny: SpecAwareMAE) -> None:
    batch = make_batch(50)
    order = torch.randperm(50, generator=torch.Generator().manual_seed(3))
    permuted = dict(batch)
    for key in ("image", "wavelength", "fwhm"):
        permuted[key] = batch[key][:, order]
    with torch.no_grad():
        reference = tiny.encode(batch)
        shuffled = tiny.encode(permuted)
    torch.testing.assert_close(shuffled.tokens, reference.tokens, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(shuffled.meta, reference.meta[:, order], atol=1e-5, rtol=1e-5)


def test_masking_bookkeeping() -> None:
    tokens, ratio = 64, 0.75
    masking = random_masking(3, tokens, ratio, torch.device("cpu"), torch.Generator().manual_seed(0))
    keep = round((1 - ratio) * tokens)
    assert masking.ids_keep.shape == (3, keep)
    assert torch.equal(masking.mask.sum(1), torch.full((3,), tokens - keep))
    for row in range(3):
        visible = torch.zeros(tokens, dtype=torch.bool)
        visible[masking.ids_keep[row]] = True
        assert torch.equal(~visible, masking.mask[row])
    # Unshuffle inverts shuffle: visible tokens plus mask placeholders, gathered with ids_restore, are back in
    # grid order, with placeholders exactly where the mask says.
    grid = torch.arange(tokens, dtype=torch.float32)[None, :, None].expand(3, tokens, 1)
    shuffled = torch.cat(
        [gather_tokens(grid, masking.ids_keep), torch.full((3, tokens - keep, 1), -1.0)], dim=1
    )
    restored = gather_tokens(shuffled, masking.ids_restore)[..., 0]
    assert torch.equal(restored[~masking.mask], grid[..., 0][~masking.mask])
    assert bool((restored[masking.mask] == -1).all())
    whole = random_masking(2, tokens, 0.0, torch.device("cpu"))
    assert torch.equal(whole.ids_restore, torch.arange(tokens).expand(2, tokens)) and not whole.mask.any()
    assert visible_count(784, 0.75) == 196


def test_model_masks_with_the_configured_and_given_ratio(tiny: SpecAwareMAE) -> None:
    batch = make_batch(30)
    with torch.no_grad():
        for ratio in (0.5, 0.75, 0.9):
            out = tiny(batch, mask_ratio=ratio)
            assert torch.equal(out.mask.sum(1), torch.full((2,), 16 - visible_count(16, ratio)))
            pixels = token_mask_to_pixels(out.mask, (4, 4), 8)
            assert torch.equal(out.pixels, pixels)


def loss_inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    target = torch.rand(2, 12, 16, 16, generator=generator) + 0.1
    prediction = torch.rand(2, 12, 16, 16, generator=generator)
    mask = torch.rand(2, 4, generator=generator) > 0.5
    mask[:, 0] = True
    mask[:, 1] = False
    band_mask = torch.ones(2, 12, dtype=torch.bool)
    return prediction, target, token_mask_to_pixels(mask, (2, 2), 8), band_mask


def test_loss_zero_for_perfect_reconstruction() -> None:
    _, target, pixels, band_mask = loss_inputs()
    terms = reconstruction_loss(target, target, pixels, band_mask, 2.0, 1.0)
    assert abs(float(terms.total)) < 1e-6 and abs(float(terms.sam)) < 1e-6 and float(terms.charbonnier) == 0.0
    prediction, *_ = loss_inputs()
    assert float(reconstruction_loss(prediction, target, pixels, band_mask, 2.0, 1.0).total) > 0.01


def test_loss_ignores_unmasked_and_invalid_pixels_and_padding_bands() -> None:
    prediction, target, pixels, band_mask = loss_inputs()
    reference = reconstruction_loss(prediction, target, pixels, band_mask, 2.0, 1.0).total
    changed = torch.where(pixels[:, None], target, torch.randn_like(target) * 100)
    assert torch.equal(reconstruction_loss(prediction, changed, pixels, band_mask, 2.0, 1.0).total, reference)
    # An invalid pixel is simply not selected; NaNs there do not leak in.
    valid = torch.ones_like(pixels)
    valid[:, :3] = False
    selected = pixels & valid
    reference = reconstruction_loss(prediction, target, selected, band_mask, 2.0, 1.0).total
    poisoned = target.clone()
    poisoned[:, :, :3] = float("nan")
    assert torch.equal(
        reconstruction_loss(prediction, poisoned, selected, band_mask, 2.0, 1.0).total, reference
    )
    # Padding bands: their values (even NaN) change nothing; the loss equals the loss on the real bands alone.
    padded = band_mask.clone()
    padded[:, 9:] = False
    garbage = target.clone()
    garbage[:, 9:] = float("nan")
    padded_loss = reconstruction_loss(prediction, garbage, pixels, padded, 2.0, 1.0)
    real_only = reconstruction_loss(prediction[:, :9], target[:, :9], pixels, band_mask[:, :9], 2.0, 1.0)
    torch.testing.assert_close(padded_loss.total, real_only.total)


def test_padding_bands_do_not_contribute(tiny: SpecAwareMAE) -> None:
    batch = make_batch(40)
    padded = dict(batch)
    padded["image"] = torch.cat([batch["image"], torch.full((2, 6, 32, 32), float("nan"))], dim=1)
    padded["wavelength"] = torch.cat([batch["wavelength"], torch.zeros(2, 6)], dim=1)
    padded["fwhm"] = torch.cat([batch["fwhm"], torch.zeros(2, 6)], dim=1)
    padded["band_mask"] = torch.cat([torch.ones(2, 40), torch.zeros(2, 6)], dim=1).bool()
    with torch.no_grad():
        torch.testing.assert_close(
            tiny.encode(padded).tokens, tiny.encode(batch).tokens, atol=1e-5, rtol=1e-5
        )
        out = tiny(padded, generator=torch.Generator().manual_seed(5))
        reference = tiny(batch, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(out.loss, reference.loss, atol=1e-5, rtol=1e-5)
    assert torch.equal(out.prediction[:, 40:], torch.zeros(2, 6, 32, 32))
    torch.testing.assert_close(out.prediction[:, :40], reference.prediction, atol=1e-4, rtol=1e-4)


def test_invalid_pixels_leave_the_loss(tiny: SpecAwareMAE) -> None:
    batch = make_batch(20)
    batch["valid"] = torch.zeros(2, 32, 32, dtype=torch.bool)
    with torch.no_grad():
        assert float(tiny(batch).loss) == 0.0
    nan_batch = make_batch(20)
    nan_batch["image"][0, 3, :8, :8] = float("nan")
    with torch.no_grad():
        out = tiny(nan_batch, mask_ratio=0.5)
    assert torch.isfinite(out.loss) and not bool(out.pixels[0, :8, :8].any())


def test_mixed_sensors_are_handled_per_sample(tiny: SpecAwareMAE) -> None:
    batch = make_batch(60, batch=2, sensors=("aviris-classic", "other"))
    with torch.no_grad():
        together = tiny.encode(batch).tokens
        alone = torch.cat([tiny.encode(select(batch, i)).tokens for i in range(2)])
        swapped = tiny.encode({**batch, "sensor": ["other", "aviris-classic"]}).tokens
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)
    assert (swapped - together).abs().max() > 1e-3  # the sensor condition is used, per sample


def test_clear_errors_for_bad_inputs(tiny: SpecAwareMAE) -> None:
    batch = make_batch(20)
    batch["wavelength"] = batch["wavelength"].clone()
    batch["wavelength"][1, 7] = 2700.0
    with pytest.raises(
        ValueError, match=r"wavelength 2700 nm \(sample 1, band 7\) is outside the supported range"
    ):
        tiny(batch)
    with pytest.raises(ValueError, match="not micrometres"):
        tiny({**make_batch(20), "wavelength": make_batch(20)["wavelength"] / 1000})
    with pytest.raises(ValueError, match=r"unknown sensor 'enmap'.*use 'other'"):
        tiny({**make_batch(20), "sensor": ["aviris-ng", "enmap"]})
    with pytest.raises(ValueError, match="unknown level 'L3'"):
        tiny({**make_batch(20), "level": ["L3", "L1"]})
    with pytest.raises(ValueError, match="not a multiple of the patch size"):
        tiny({**make_batch(20), "image": torch.zeros(2, 20, 30, 32)})
    with pytest.raises(ValueError, match="3 sensor names"):
        tiny({**make_batch(20), "sensor": ["other"] * 3})


def test_hyperembedding_matches_the_explicit_formula() -> None:
    torch.manual_seed(0)
    embed = HyperEmbedding(16, embed_dim=24, rank=4, patch_size=4, hidden=8, scale_init=0.02, band_chunk=5)
    torch.nn.init.normal_(embed.bias_gen[-1].weight)
    image, z = torch.randn(2, 13, 8, 12), torch.randn(2, 13, 16)
    band_mask = torch.ones(2, 13, dtype=torch.bool)
    band_mask[1, 10:] = False
    u, v, bias = embed.factors(z, band_mask)
    explicit = embed.scale * (torch.einsum("bcer,bcrq,bcnq->bne", u, v, patchify(image, 4)) + bias[:, None])
    torch.testing.assert_close(embed(image, z, band_mask), explicit, atol=1e-5, rtol=1e-4)


def test_band_contraction_gradients() -> None:
    generator = torch.Generator().manual_seed(0)
    image = torch.randn(2, 7, 8, 12, dtype=torch.float64, generator=generator)
    v = torch.randn(2, 7, 3, 16, dtype=torch.float64, generator=generator, requires_grad=True)
    hidden = torch.randn(2, 7, 5, dtype=torch.float64, generator=generator, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v, h: band_contraction(image, v, h, 4, chunk=3), (v, hidden))


def test_hyperembedding_never_materialises_b_n_c_e() -> None:
    """Largest operator output (forward and backward) stays far below B*N*C*E at E = 768, r = 64, C = 425: no
    intermediate is larger than the largest weight, the tokens (B, N, E) or the generated V (B, C, r, k^2)."""
    torch.manual_seed(0)
    b, c, size, e = 2, 425, 64, 768
    embed = HyperEmbedding(32, embed_dim=e, rank=64, patch_size=8, hidden=32, scale_init=0.02)
    image = torch.rand(b, c, size, size)
    z = torch.randn(b, c, 32, requires_grad=True)
    band_mask = torch.ones(b, c, dtype=torch.bool)
    forbidden = b * (size // 8) ** 2 * c * e
    with TensorMemory() as memory:
        embed(image, z, band_mask).square().mean().backward()
    largest_weight = max(p.numel() for p in embed.parameters())
    allowed = max(largest_weight, b * (size // 8) ** 2 * e, b * c * 64 * 64)
    assert memory.max_numel <= allowed, memory.max_shape
    assert memory.max_numel < forbidden // 10
    # The tracker does see a (B, N, C, E) tensor when one is made (the upstream formulation).
    u, v, _ = embed.factors(z.detach(), band_mask)
    with TensorMemory() as memory, torch.no_grad():
        torch.einsum("bcnq,bceq->bnce", patchify(image, 8), u @ v).sum(2)
    assert memory.max_numel >= forbidden


def test_checkpoint_round_trip_is_bit_exact(tmp_path: Path, offline: None) -> None:
    torch.manual_seed(0)
    sensors, levels, _ = text_vectors("placeholder")
    # Stand-in for real sentence embeddings: the stored vectors and kind must survive the round trip.
    model = SpecAwareMAE(model_config("tiny"), (sensors.flip(1), levels.flip(1), KIND_SENTENCE))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batch = make_batch(30)
    model(batch).loss.backward()
    optimizer.step()
    path = save_checkpoint(model.eval(), tmp_path / "tiny.pt")
    loaded = load_checkpoint(path).eval()
    assert loaded.config == model.config and loaded.text_kind == KIND_SENTENCE
    original, restored = model.state_dict(), loaded.state_dict()
    assert original.keys() == restored.keys()
    for key, tensor in original.items():
        if isinstance(tensor, torch.Tensor):
            assert tensor.dtype == restored[key].dtype and torch.equal(tensor, restored[key]), key
    with torch.no_grad():
        first = model(batch, generator=torch.Generator().manual_seed(2))
        second = loaded(batch, generator=torch.Generator().manual_seed(2))
    assert torch.equal(first.prediction, second.prediction) and torch.equal(first.loss, second.loss)


def test_building_is_offline(offline: None) -> None:
    model = build_model("tiny")  # "auto": the sentence encoder is unavailable here, so the placeholders
    assert model.text_kind == KIND_PLACEHOLDER
    with pytest.raises(RuntimeError, match="never downloaded"):
        text_vectors("sentence-transformers")


class FakeSentenceTransformer:
    """Stands in for a locally cached all-MiniLM-L6-v2; checks it is opened offline."""

    def __init__(self, name: str, device: str, local_files_only: bool) -> None:
        assert local_files_only and os.environ["HF_HUB_OFFLINE"] == "1", "must be opened offline"

    def encode(self, texts: list[str], convert_to_numpy: bool, normalize_embeddings: bool) -> np.ndarray:
        return np.full((len(texts), 384), 1 / np.sqrt(384.0))


class NotCached:
    """A sentence-transformers install without the weights in its local cache."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise OSError("all-MiniLM-L6-v2 is not in the local cache")


def test_sentence_encoder_vectors_are_used_when_available_locally(monkeypatch: pytest.MonkeyPatch) -> None:
    installed = SimpleNamespace(SentenceTransformer=FakeSentenceTransformer)
    monkeypatch.setitem(sys.modules, "sentence_transformers", installed)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    model = build_model("tiny")
    assert model.text_kind == KIND_SENTENCE
    torch.testing.assert_close(
        model.encoder.meta.text.sensor_vectors, torch.full((4, 384), 1 / np.sqrt(384.0))
    )
    assert "HF_HUB_OFFLINE" not in os.environ  # offline only while the encoder loads
    # Package present but weights not cached: the placeholders, still without any download.
    monkeypatch.setitem(sys.modules, "sentence_transformers", SimpleNamespace(SentenceTransformer=NotCached))
    assert text_vectors("auto")[2] == KIND_PLACEHOLDER


def test_placeholder_text_vectors_are_fixed_distinct_unit_vectors() -> None:
    names = ["AVIRIS-Classic", "AVIRIS-NG", "AVIRIS-3", "other HSI sensors"]
    vectors = placeholder_vectors(names)
    assert vectors.shape == (4, 384)
    torch.testing.assert_close(vectors.norm(dim=1), torch.ones(4))
    assert torch.equal(vectors, placeholder_vectors(names))
    similarity = vectors @ vectors.T - torch.eye(4)
    assert similarity.abs().max() < 0.3


def test_named_configs_follow_the_spec() -> None:
    base = CONFIGS["base"]
    assert (base.image_size, base.patch_size, base.embed_dim, base.depth, base.heads) == (224, 8, 768, 12, 12)
    assert (base.decoder_dim, base.decoder_depth, base.decoder_heads, base.rank) == (512, 8, 16, 64)
    assert (base.meta_dim, base.mask_ratio, base.charbonnier_weight) == (128, 0.75, 2.0)
    assert base.fourier_period_range_nm == (350.0, 2550.0) and base.fwhm_scale_nm == (5.0, 15.0)
    assert base.spectral_mix_init == (0.8, 0.2) and base.embed_scale_init == 0.02 and base.ln_eps == 1e-6
    large = CONFIGS["large"]
    assert (large.embed_dim, large.depth, large.heads) == (1024, 24, 16)
    for config in CONFIGS.values():
        assert ModelConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="not divisible"):
        model_config("tiny", heads=5)
    with pytest.raises(ValueError, match="unknown model config"):
        model_config("huge")


def test_mae_blocks_load_from_a_local_vit_checkpoint(tmp_path: Path) -> None:
    donor = build_model("tiny", text="placeholder").encoder
    state = {f"blocks.{key}": value for key, value in donor.blocks.state_dict().items()}
    state.update({f"norm.{key}": value for key, value in donor.norm.state_dict().items()})
    state["patch_embed.proj.weight"] = torch.zeros(96, 3, 8, 8)  # an RGB stem: ignored
    torch.save({"model": state}, tmp_path / "mae.pth")
    encoder = build_model("tiny", text="placeholder").encoder
    assert load_mae_blocks(encoder, tmp_path / "mae.pth") == len(state) - 1
    for key, value in donor.blocks.state_dict().items():
        assert torch.equal(encoder.blocks.state_dict()[key], value)
    torch.save({"model": {**state, "blocks.0.attn.qkv.weight": torch.zeros(3, 3)}}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="blocks.0.attn.qkv.weight has shape"):
        load_mae_blocks(encoder, tmp_path / "bad.pth")


def test_bf16_autocast_and_bf16_weights() -> None:
    torch.manual_seed(0)
    model = build_model("tiny", text="placeholder")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(make_batch(30))
    assert out.loss.dtype == torch.float32 and torch.isfinite(out.loss)
    out.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    # A model cast to bf16 as a whole (DeepSpeed's bf16 mode) takes the same float32 batch.
    with torch.no_grad():
        assert torch.isfinite(model.to(torch.bfloat16)(make_batch(30)).loss)


def real_cube(realdata: Path) -> dict[str, Any]:
    """The AVIRIS-NG radiance chunk (10 lines x 425 bands x 10 samples, BIL) tiled to 64 x 64, a batch of one."""
    path = realdata / RDN
    if not path.is_file():
        pytest.skip(f"{path} not found")
    cube = np.fromfile(path, dtype="<f4").reshape(10, 425, 10).transpose(1, 0, 2)
    table = np.loadtxt(realdata / "aviris-ng" / "wavelengths.txt")
    image = torch.from_numpy(np.ascontiguousarray(np.tile(cube, (1, 7, 7))[:, :64, :64]))
    return {
        "image": image[None],
        "wavelength": torch.tensor(table[:, 1] * 1000.0, dtype=torch.float32)[None],
        "fwhm": torch.tensor(table[:, 2] * 1000.0, dtype=torch.float32)[None],
        "gsd": torch.tensor([5.4]),
        "sensor": ["aviris-ng"],
        "level": ["L1"],
    }


def test_tiny_model_learns_on_real_aviris_ng_radiance(realdata: Path) -> None:
    batch = real_cube(realdata)
    torch.manual_seed(0)
    model = build_model("tiny", text="placeholder")
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(6):
        out = model(batch, generator=torch.Generator().manual_seed(0))
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        losses.append(out.loss.item())
    assert all(np.isfinite(losses))
    assert losses[-1] < 0.6 * losses[0], losses
