"""Downstream: adapters on real files, metrics against hand-computed matrices, training, probing, change detection."""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import rasterio
import scipy.io
import torch
from conftest import training_build

from hyper400k.product import open_product
from specaware.downstream.datasets import (
    ChangeItem,
    LabelledImage,
    SensorInfo,
    SplitScene,
    TaskData,
    block_split,
    cube_segmentation_data,
    load_data,
    per_class_split,
    read_wavelength_table,
    scene_folder_data,
    tile_segmentation_data,
)
from specaware.downstream.generated import UnmixingScene, generate_unmixing_scene, write_unmixing_mat
from specaware.downstream.heads import build_head_model, level_blocks
from specaware.downstream.metrics import change_metrics, classification_metrics, confusion_matrix
from specaware.downstream.runner import (
    DownstreamConfig,
    baseline,
    evaluate,
    finetune,
    probe,
    run_seeds,
    stitch_scene,
)

ROOT = Path(__file__).resolve().parents[1]
# A very small encoder so CPU training steps take a fraction of a second.
SMALL = {
    "image_size": 16,
    "embed_dim": 24,
    "heads": 2,
    "depth": 4,
    "meta_dim": 16,
    "band_heads": 2,
    "rank": 4,
    "generator_hidden": 16,
    "generator_bottleneck": 8,
    # At the published 0.02 an untrained embedding's tokens carry ~1e-5 of the positions' magnitude, too little for
    # a few CPU steps from scratch to learn from.
    "embed_scale_init": 100.0,
}
BANDS = 16


def _enmap(realdata: Path) -> Path:
    root = realdata / "enmap-potsdam"
    if not root.is_dir():
        pytest.skip(f"{root} absent")
    return root


# ---------------------------------------------------------------- adapters on the real enmap-potsdam files


def test_enmap_tiles_shapes_band_metadata_labels_and_splits(realdata: Path) -> None:
    root = _enmap(realdata)
    data = tile_segmentation_data(root, scale=1e-4, gsd_m=30.0)

    def stems(name: str) -> list[str]:
        with (root / name).open() as handle:
            return [Path(row["image"]).stem for row in csv.DictReader(handle)]

    assert [i.name for i in data.train] == stems("train_files.csv")
    assert [i.name for i in data.test] == stems("test_files.csv")
    assert [i.name for i in data.validation] == stems("validation_files.csv")
    assert not {i.name for i in data.train} & {i.name for i in data.test}

    first = root / "images" / f"{data.train[0].name}.tif"
    with rasterio.open(first) as src:
        tags = [src.tags(b) for b in range(1, src.count + 1)]
        raw = src.read()
    with open_product(first, sensor="other", level="L2", scale=1e-4) as scene:
        good = np.asarray(
            scene.meta.good_bands, dtype=bool
        )  # the reader's good bands: bbl=1 and not all fill
    assert not good[[t["bbl"] == "0" for t in tags]].any()
    assert data.sensor.bands == good.sum() < 224
    picked = [t for t, g in zip(tags, good, strict=True) if g]
    np.testing.assert_allclose(data.sensor.wavelength_nm, [float(t["wavelength"]) for t in picked])
    np.testing.assert_allclose(data.sensor.fwhm_nm, [float(t["fwhm"]) for t in picked])
    assert data.sensor.gsd_m == 30.0 and data.sensor.sensor == "other" and data.sensor.level == "L2"
    item = data.train[0]
    assert item.image.shape == (good.sum(), 32, 32) and item.image.dtype == np.float32
    np.testing.assert_allclose(item.image, np.where(raw[good] == -32768, np.nan, raw[good] * 1e-4), rtol=1e-6)
    with rasterio.open(root / "labels" / f"{item.name}.tif") as src:
        np.testing.assert_array_equal(item.labels, src.read(1).astype(np.int64))
    assert data.num_classes == 6 and set(np.unique(item.labels)) <= set(range(7))


def test_cube_adapter_rejects_misaligned_labels(realdata: Path, tmp_path: Path) -> None:
    root = _enmap(realdata)
    image = root / "images" / "enmap_potsdam_tile_160_96.tif"
    with rasterio.open(root / "labels" / "enmap_potsdam_tile_160_96.tif") as src:
        profile = src.profile | {"transform": src.transform @ src.transform.translation(1, 0)}
        shifted = tmp_path / "shifted.tif"
        with rasterio.open(shifted, "w", **profile) as dst:
            dst.write(src.read())
    with pytest.raises(ValueError, match="geotransform"):
        cube_segmentation_data(image, shifted, scale=1e-4)


def test_wavelength_tables(realdata: Path) -> None:
    folder = realdata / "wavelengths"
    wavelength, fwhm = read_wavelength_table(folder / "indian_pines_corrected_200_wavelength_fwhm_nm.txt")
    assert wavelength.shape == fwhm.shape == (200,)
    assert wavelength[0] == pytest.approx(400.019989) and fwhm[0] == pytest.approx(9.78)
    full, _ = read_wavelength_table(folder / "92AV3C.spc")
    assert full.size == 220 and full[1] == pytest.approx(409.820007)


def test_mat_cube_with_table_and_protocols(tmp_path: Path) -> None:
    """Indian-Pines-style .mat (H, W, C) cube + label .mat + wavelength table; blocks, per-class and fixed splits."""
    rng = np.random.default_rng(0)
    cube = rng.random((40, 48, 12)).astype(np.float32)
    labels = np.zeros((40, 48), dtype=np.uint8)
    labels[2:38, 3:45] = rng.integers(1, 4, size=(36, 42))
    scipy.io.savemat(tmp_path / "cube.mat", {"data": cube})
    scipy.io.savemat(tmp_path / "gt.mat", {"gt": labels})
    table = tmp_path / "bands.txt"
    table.write_text(
        "# index centre fwhm (um)\n" + "".join(f"{i} {0.45 + 0.1 * i} 0.01\n" for i in range(12))
    )
    spec = {"kind": "cube", "image": str(tmp_path / "cube.mat"), "labels": str(tmp_path / "gt.mat")}
    spec |= {"wavelength_table": str(table), "gsd_m": 20.0, "window": 16, "test_fraction": 0.3}
    data = load_data(spec)
    np.testing.assert_allclose(data.sensor.wavelength_nm, 450 + 100 * np.arange(12))
    assert data.sensor.fwhm_nm[0] == pytest.approx(10.0)
    assert data.protocol.startswith("blocks") and data.num_classes == 3
    assert all(i.image.shape == (12, 16, 16) for i in data.train + data.test)
    # Blocks: a window is either train or test, and every labelled pixel is in exactly one of them.
    assert not {i.name for i in data.train} & {i.name for i in data.test}
    labelled = sum(int((i.labels > 0).sum()) for i in data.train + data.test)
    assert labelled == int((labels > 0).sum())
    np.testing.assert_allclose(data.train[0].image[:, 0, 0], cube[0, 0, :])

    per = load_data(spec | {"protocol": "per_class", "per_class": 5})
    train_counts = np.bincount(np.concatenate([i.labels.ravel() for i in per.train]), minlength=4)[1:]
    np.testing.assert_array_equal(train_counts, [5, 5, 5])
    assert "classic" in per.protocol

    test_labels = np.where(np.arange(48)[None, :] >= 24, labels, 0)
    scipy.io.savemat(tmp_path / "test_gt.mat", {"gt": test_labels})
    train_only = np.where(np.arange(48)[None, :] < 24, labels, 0)
    scipy.io.savemat(tmp_path / "train_gt.mat", {"gt": train_only})
    fixed = load_data(
        spec
        | {
            "labels": str(tmp_path / "train_gt.mat"),
            "protocol": "fixed",
            "test_labels": str(tmp_path / "test_gt.mat"),
        }
    )
    assert sum(int((i.labels > 0).sum()) for i in fixed.test) == int((test_labels > 0).sum())


def test_block_and_per_class_split_masks() -> None:
    labels = np.random.default_rng(1).integers(0, 4, size=(64, 64))
    train, test = block_split(labels, 16, 0.25, seed=3)
    assert not (train & test).any() and ((train | test) == (labels > 0)).all()
    blocks_test = test.reshape(4, 16, 4, 16).any(axis=(1, 3))
    blocks_train = train.reshape(4, 16, 4, 16).any(axis=(1, 3))
    assert not (blocks_test & blocks_train).any()
    assert 0.1 < test.sum() / (labels > 0).sum() < 0.45
    train, test = per_class_split(labels, 0.1, seed=0)
    for value in (1, 2, 3):
        assert train[labels == value].sum() == round(0.1 * (labels == value).sum())
    assert not (train & test).any()


def test_scene_folders(tmp_path: Path) -> None:
    for name, level in (("forest", 0.4), ("water", 0.05)):
        (tmp_path / name).mkdir()
        for i in range(4):
            np.save(tmp_path / name / f"p{i}.npy", np.full((5, 20, 12), level + 0.01 * i, dtype=np.float32))
    data = scene_folder_data(
        tmp_path,
        size=16,
        test_fraction=0.5,
        wavelength_nm=[500, 600, 700, 800, 900],
        fwhm_nm=[10] * 5,
        gsd_m=5.0,
    )
    assert data.class_names == ["forest", "water"]
    assert len(data.train) == len(data.test) == 4
    assert all(item.image.shape == (5, 16, 16) for item in data.train)
    assert np.isnan(data.train[0].image[:, :, 0]).all()  # width 12 padded to 16 with no-data
    assert {item.label for item in data.test} == {1, 2}


# ---------------------------------------------------------------- metrics against hand computation


def test_metrics_hand_computed() -> None:
    truth = np.array([1, 1, 1, 1, 2, 2, 2, 3, 3, 3, 0, 0])
    prediction = np.array([1, 1, 1, 2, 2, 2, 3, 3, 3, 1, 2, 3])  # the two label-0 pixels must be ignored
    matrix = confusion_matrix(truth, prediction, 3)
    np.testing.assert_array_equal(matrix, [[3, 1, 0], [0, 2, 1], [1, 0, 2]])
    m = classification_metrics(matrix)
    # OA = 7/10; recalls 3/4, 2/3, 2/3; pe = (4*4 + 3*3 + 3*3)/100 = 0.34; κ = (0.7 - 0.34)/0.66.
    assert m["OA"] == pytest.approx(0.7)
    assert m["AA"] == pytest.approx((3 / 4 + 2 / 3 + 2 / 3) / 3)
    assert m["kappa"] == pytest.approx(0.36 / 0.66)
    # F1 = 2tp / (row + col): 6/8, 4/6, 4/6; IoU = tp / (row + col - tp): 3/5, 2/4, 2/4.
    assert m["per_class"]["F1"] == pytest.approx([0.75, 2 / 3, 2 / 3])
    assert m["mIoU"] == pytest.approx((0.6 + 0.5 + 0.5) / 3)
    assert m["per_class"]["support"] == [4, 3, 3]


def test_change_metrics_and_absent_class() -> None:
    # 6 unchanged (5 right), 4 changed (3 right): changed precision 3/4, recall 3/4, F1 3/4, IoU 3/5.
    m = change_metrics(np.array([[5, 1], [1, 3]]))
    assert m["change_F1"] == pytest.approx(0.75) and m["change_IoU"] == pytest.approx(0.6)
    assert m["OA"] == pytest.approx(0.8)
    # A class absent from the test truth has undefined (None) scores; the headline means run over the full class
    # set and count it as 0, naming it, while the *_present means leave it out.
    m = classification_metrics(np.array([[2, 0, 0], [0, 0, 0], [1, 0, 1]]), ["a", "b", "c"])
    assert m["per_class"]["IoU"][1] is None and m["per_class"]["recall"][1] is None
    assert m["absent_from_test"] == ["b"] and m["classes"] == 3
    assert m["mIoU"] == pytest.approx((2 / 3 + 1 / 2) / 3)
    assert m["mIoU_present"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert m["AA"] == pytest.approx((1 + 0.5) / 3) and m["AA_present"] == pytest.approx(0.75)
    assert m["macro_F1"] == pytest.approx((0.8 + 2 / 3) / 3)
    assert m["per_class"]["support"] == [2, 0, 2]
    with pytest.raises(ValueError):
        confusion_matrix(np.array([1, 2]), np.array([0, 2]), 2)


def test_level_blocks() -> None:
    assert level_blocks(12) == [2, 5, 8, 11]
    assert level_blocks(4) == [0, 1, 2, 3]


def test_shipped_configs_parse() -> None:
    paths = sorted((ROOT / "pipelines" / "configs").glob("finetune_*.yaml"))
    paths += sorted((ROOT / "pipelines" / "configs").glob("probe_*.yaml"))
    assert len(paths) >= 2
    for path in paths:
        config = DownstreamConfig.from_yaml(path)
        assert config.task in ("segmentation", "abundance", "change", "scene")
    with pytest.raises(ValueError, match="unknown"):
        DownstreamConfig.from_yaml(paths[0], colour="red")
    # A short --steps override shortens the file's warm-up instead of failing.
    short = DownstreamConfig.from_yaml(
        ROOT / "pipelines" / "configs" / "finetune_abundance_unmixing.yaml", steps=5
    )
    assert short.steps == 5 and short.warmup_steps == 0


# ---------------------------------------------------------------- training on small generated data


def _sensor() -> SensorInfo:
    wavelength = np.linspace(450, 2400, BANDS)
    return SensorInfo(wavelength, np.full(BANDS, 10.0), 10.0)


def _spectra() -> np.ndarray:
    """Three clearly different materials on the test band grid: vegetation-like, soil-like, water-like."""
    x = np.linspace(0, 1, BANDS)
    return np.stack([0.05 + 0.4 * (x > 0.15), 0.1 + 0.3 * x, 0.08 * (1 - x)]).astype(np.float32)


def _segmentation_data(items: int = 6, size: int = 16) -> TaskData:
    rng = np.random.default_rng(0)
    spectra = _spectra()
    out = []
    for n in range(items):
        labels = np.ones((size, size), dtype=np.int64)
        labels[:, size // 2 :] = 2
        labels[: size // 3] = 3
        labels = np.rot90(labels, n % 4).copy()
        image = spectra[labels - 1].transpose(2, 0, 1) + rng.normal(0, 0.01, (BANDS, size, size))
        out.append(LabelledImage(image.astype(np.float32), labels, f"item{n}"))
    return TaskData("segmentation", _sensor(), ["veg", "soil", "water"], out[:4], out[4:])


def _config(tmp_path: Path, task: str, **values: object) -> DownstreamConfig:
    settings: dict = {"task": task, "data": {}, "output": str(tmp_path / task), "init": "random"}
    settings |= {
        "model_overrides": SMALL,
        "neck_width": 16,
        "head_channels": 16,
        "steps": 12,
        "batch_size": 2,
    }
    settings |= {"lr": 3e-3, "warmup_steps": 1, "dropout": 0.0, "augment": False}
    return DownstreamConfig(**(settings | values))


def test_finetune_segmentation_loss_falls_and_evaluate_matches(tmp_path: Path) -> None:
    data = _segmentation_data()
    # The pixel branch resolves classes inside a patch; evaluate must restore its band statistics too.
    config = _config(tmp_path, "segmentation", steps=15, pixel_branch=True)
    metrics = finetune(config, data)
    history = np.loadtxt(tmp_path / "segmentation" / "history.csv", delimiter=",", skiprows=1)[:, 1]
    assert history[-3:].mean() < 0.8 * history[:3].mean()
    for name in ("metrics.json", "confusion.png", "maps.png", "downstream.pt"):
        assert (tmp_path / "segmentation" / name).stat().st_size > 0
    again = evaluate(config, data)
    assert again["confusion_matrix"] == metrics["confusion_matrix"]
    assert json.loads((tmp_path / "segmentation" / "metrics.json").read_text())["OA"] == again["OA"]


def test_probe_keeps_encoder_frozen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _segmentation_data()
    config = _config(tmp_path, "segmentation", steps=4, lr=1e-2)
    from specaware.downstream import runner

    seen = {}
    original = runner.train_model

    def spy(model: torch.nn.Module, *args: object) -> list[float]:
        seen["before"] = {k: v.detach().clone() for k, v in model.features.named_parameters()}
        seen["head"] = model.linear.weight.detach().clone()
        losses = original(model, *args)
        seen["model"] = model
        return losses

    monkeypatch.setattr(runner, "train_model", spy)
    probe(config, data)
    after = dict(seen["model"].features.named_parameters())
    assert all(torch.equal(seen["before"][k], after[k]) for k in after)
    assert not torch.equal(seen["head"], seen["model"].linear.weight)
    assert all(not p.requires_grad for p in seen["model"].features.parameters())


def test_spectral_baselines(tmp_path: Path) -> None:
    data = _segmentation_data()
    for mode in ("logreg", "rf"):
        metrics = baseline(
            _config(tmp_path, "segmentation", mode=mode, output=str(tmp_path / mode), rf_trees=20), data
        )
        assert metrics["OA"] > 0.95 and metrics["kappa"] > 0.9


def _change_data(size: int = 32, square: int = 12) -> TaskData:
    """Date 1: a two-material scene; date 2: the same scene with a known square pasted from a third material."""
    rng = np.random.default_rng(5)
    spectra = _spectra()
    items = []
    for n in range(6):
        base = np.where(np.arange(size)[None, :] < size // 2, 0, 1) * np.ones((size, 1), dtype=np.int64)
        before = spectra[base].transpose(2, 0, 1) + rng.normal(0, 0.005, (BANDS, size, size))
        after = before + rng.normal(0, 0.005, (BANDS, size, size))
        row, col = rng.integers(0, size - square, size=2)
        after[:, row : row + square, col : col + square] = spectra[2][:, None, None]
        labels = np.ones((size, size), dtype=np.int64)
        labels[row : row + square, col : col + square] = 2
        items.append(ChangeItem(before.astype(np.float32), after.astype(np.float32), labels, f"pair{n}"))
    return TaskData("change", _sensor(), ["unchanged", "changed"], items[:4], items[4:])


def test_change_detection_on_generated_pair(tmp_path: Path) -> None:
    data = _change_data()
    metrics = finetune(_config(tmp_path, "change", steps=25, lr=5e-3, pixel_branch=True), data)
    matrix = np.array(metrics["confusion_matrix"])
    changed = sum(int((i.labels == 2).sum()) for i in data.test)
    assert matrix.sum() == 2 * 32 * 32 and matrix[1].sum() == changed
    assert metrics["change_F1"] == pytest.approx(2 * matrix[1, 1] / (matrix[1].sum() + matrix[:, 1].sum()))
    # Better than the best trivial predictor (everything "changed": F1 = 2p / (1 + p)).
    prevalence = changed / matrix.sum()
    assert metrics["change_F1"] > 2 * prevalence / (1 + prevalence)
    assert (tmp_path / "change" / "maps.png").is_file()


def test_scene_classification_finetune_and_probe(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    spectra = _spectra()
    from specaware.downstream.datasets import SceneItem

    items = [
        SceneItem(
            spectra[c][:, None, None] + rng.normal(0, 0.01, (BANDS, 16, 16)).astype(np.float32),
            c + 1,
            f"s{n}",
        )
        for n in range(4)
        for c in range(3)
    ]
    data = TaskData("scene", _sensor(), ["veg", "soil", "water"], items[:9], items[9:])
    metrics = finetune(_config(tmp_path, "scene", steps=6, scene_hidden=16), data)
    assert metrics["test_items"] == 3 and sum(map(sum, metrics["confusion_matrix"])) == 3
    assert not (tmp_path / "scene" / "maps.png").exists()
    probed = probe(_config(tmp_path, "scene", steps=3, output=str(tmp_path / "scene-probe")), data)
    assert probed["pixels"] == 3


def test_probe_standardises_features_with_a_parameter_free_batchnorm() -> None:
    from specaware.downstream.heads import LinearProbe
    from specaware.model import build_model

    model = build_head_model(build_model("tiny", text="placeholder", **SMALL), "segmentation", 3, "probe")
    assert isinstance(model, LinearProbe)
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable == ["linear.weight", "linear.bias"]  # the standardisation adds no parameters
    # Channels 10^4 apart in scale come out standardised (training mode: batch statistics).
    width = SMALL["embed_dim"]
    tokens = torch.randn(4, width, 3, 3) * torch.logspace(-2, 2, width)[None, :, None, None] + 5.0
    out = model.norm.train()(tokens)
    torch.testing.assert_close(out.mean(dim=(0, 2, 3)), torch.zeros(width), atol=1e-4, rtol=0)
    torch.testing.assert_close(out.std(dim=(0, 2, 3), unbiased=False), torch.ones(width), atol=1e-2, rtol=0)


def test_degenerate_predictions_warn(caplog: pytest.LogCaptureFixture) -> None:
    from specaware.downstream.runner import flag_degenerate

    one_class = classification_metrics(np.array([[50, 0, 0], [30, 0, 0], [20, 0, 0]]), ["a", "b", "c"])
    with caplog.at_level(logging.WARNING):
        warning = flag_degenerate(one_class, "probe")
    assert "one class for all 100 test samples" in warning and "kappa 0.000" in warning
    assert one_class["warning"] == warning and warning in caplog.text
    chance = classification_metrics(np.array([[25, 25], [25, 25]]), ["a", "b"])
    assert "chance level" in flag_degenerate(chance, "probe")
    good = classification_metrics(np.array([[40, 10], [5, 45]]), ["a", "b"])
    assert flag_degenerate(good, "probe") is None and "warning" not in good


def test_random_init_needs_no_checkpoint(tmp_path: Path) -> None:
    config = _config(tmp_path, "segmentation", steps=2, checkpoint=str(tmp_path / "absent" / "model.pt"))
    metrics = probe(config, _segmentation_data())
    assert 0.0 <= metrics["OA"] <= 1.0
    with pytest.raises(FileNotFoundError, match="absent/model.pt"):
        probe(replace(config, init="pretrained"), _segmentation_data())


def test_random_init_takes_the_checkpoint_configuration_and_text_vectors(tmp_path: Path) -> None:
    from specaware.downstream.runner import load_backbone
    from specaware.model import build_model, save_checkpoint

    torch.manual_seed(1)  # load_backbone seeds the random init with config.seed = 0
    pretrained = build_model("tiny", **SMALL)
    path = save_checkpoint(pretrained, tmp_path / "model.pt")
    fresh = load_backbone(_config(tmp_path, "segmentation", checkpoint=str(path), model="base"))
    assert fresh.config == pretrained.config and fresh.text_kind == pretrained.text_kind
    ours, theirs = fresh.state_dict(), pretrained.state_dict()
    assert torch.equal(ours["encoder.meta.text.sensor_vectors"], theirs["encoder.meta.text.sensor_vectors"])
    assert not torch.equal(
        ours["encoder.blocks.0.attn.qkv.weight"], theirs["encoder.blocks.0.attn.qkv.weight"]
    )
    same = load_backbone(_config(tmp_path, "segmentation", checkpoint=str(path), init="pretrained"))
    key = "encoder.blocks.0.attn.qkv.weight"
    assert torch.equal(same.state_dict()[key], theirs[key])


# ---------------------------------------------------------------- honest protocols


def test_block_split_is_stratified_and_independent_of_the_window() -> None:
    """A rare class confined to two corners: every seed still puts it (and every class) in train and test."""
    rng = np.random.default_rng(0)
    labels = rng.integers(1, 3, size=(64, 80))
    labels[:8, :8] = 3  # the rare class lies in two 8-px blocks only
    labels[56:, 72:] = 3
    labels[20:30, 30:40] = 0
    for seed in range(8):
        train, test = block_split(labels, 8, 0.3, seed=seed)
        assert not (train & test).any() and ((train | test) == (labels > 0)).all()
        for value in (1, 2, 3):
            assert train[labels == value].any() and test[labels == value].any(), (seed, value)
        share = [test[labels == v].sum() / (labels == v).sum() for v in (1, 2)]
        assert all(0.15 < s < 0.45 for s in share)
        # Blocks are 8 px whatever the window: no 8x8 block is split between train and test.
        assert not (
            train.reshape(8, 8, 10, 8).any(axis=(1, 3)) & test.reshape(8, 8, 10, 8).any(axis=(1, 3))
        ).any()
    assert not np.array_equal(block_split(labels, 8, 0.3, 0)[1], block_split(labels, 8, 0.3, 1)[1])


def test_block_split_says_why_it_is_impossible() -> None:
    labels = np.ones((32, 32), dtype=np.int64)
    labels[:4, :4] = 2  # all of class 2 inside one 16-px block
    with pytest.raises(ValueError, match=r"class\(es\) \[2\] lie in a single 16-pixel block.*per_class"):
        block_split(labels, 16)
    single = np.ones((4, 4), dtype=np.int64)
    single[0, 0] = 2
    with pytest.raises(ValueError, match="class 2 has a single labelled pixel"):
        per_class_split(single, 2)


# ---------------------------------------------------------------- unmixing-style data from real spectra


def _unmixing_files(realdata: Path, folder: Path, order: str = "column") -> tuple[Path, Path, UnmixingScene]:
    """A 40 x 56 scene of 4 real library spectra on every 8th band of the real Indian Pines band set."""
    wavelength, _ = read_wavelength_table(
        realdata / "wavelengths" / "indian_pines_corrected_200_wavelength_fwhm_nm.txt"
    )
    scene = generate_unmixing_scene(
        realdata / "speclib" / "s07_AV95_envi.hdr", wavelength[::8], rows=40, cols=56, endmembers=4, seed=3
    )
    image, abundances = write_unmixing_mat(scene, folder, order)
    return image, abundances, scene


def _matrix_spec(realdata: Path, image: Path, abundances: Path, **values: object) -> dict:
    table = realdata / "wavelengths" / "indian_pines_corrected_200_wavelength_fwhm_nm.txt"
    wavelength, fwhm = read_wavelength_table(table)
    spec = {"kind": "matrix", "image": str(image), "abundances": str(abundances)}
    return (
        spec
        | {"wavelength_nm": wavelength[::8].tolist(), "fwhm_nm": fwhm[::8].tolist(), "window": 16}
        | values
    )


def test_matrix_adapter_column_and_row_major_with_argmax_labels(realdata: Path, tmp_path: Path) -> None:
    image, abundances, scene = _unmixing_files(realdata, tmp_path / "column", "column")
    data = load_data(_matrix_spec(realdata, image, abundances))
    whole = data.scenes[0].scene
    np.testing.assert_array_equal(whole.image, scene.cube)  # bands x pixels, MATLAB order, back on the grid
    np.testing.assert_array_equal(whole.labels, scene.labels)
    assert data.task == "segmentation" and data.num_classes == 4 and data.sensor.gsd_m is None
    # Stored pixel by pixel: pixel p of Y is (row p mod nRow, col p div nRow).
    raw = scipy.io.loadmat(image)
    np.testing.assert_array_equal(raw["Y"][:, 1], scene.cube[:, 1, 0])
    assert raw["nRow"].item() == 40 and raw["nCol"].item() == 56

    row_image, row_abundances, _ = _unmixing_files(realdata, tmp_path / "row", "row")
    row_data = load_data(_matrix_spec(realdata, row_image, row_abundances, order="row"))
    np.testing.assert_array_equal(row_data.scenes[0].scene.image, scene.cube)
    # Pixels x bands works too; the wrong order is caught when nRow != nCol only by content, so check the
    # counts: a wrong nRow is named in the error.
    scipy.io.savemat(tmp_path / "transposed.mat", {"Y": raw["Y"].T, "nRow": 40, "nCol": 56})
    transposed = load_data(_matrix_spec(realdata, tmp_path / "transposed.mat", abundances))
    np.testing.assert_array_equal(transposed.scenes[0].scene.image, scene.cube)
    scipy.io.savemat(tmp_path / "bad.mat", {"Y": raw["Y"], "nRow": 41, "nCol": 56})
    with pytest.raises(ValueError, match=r"bad.mat.*none of .* could be the 25 x 2296 matrix"):
        load_data(_matrix_spec(realdata, tmp_path / "bad.mat", abundances))
    # Pixels whose largest abundance is below min_abundance stay unlabelled.
    pure = load_data(_matrix_spec(realdata, image, abundances, min_abundance=0.9))
    kept = pure.scenes[0].scene.labels > 0
    np.testing.assert_array_equal(kept, scene.abundances.max(axis=0) >= 0.9)


def test_gsd_is_optional_and_positions_are_unscaled() -> None:
    info = SensorInfo(np.array([500.0, 600.0]), np.array([10.0, 10.0]), None)
    assert info.position_scale == 1.0 and info.batch_fields(3)["gsd"].tolist() == [1.0, 1.0, 1.0]
    assert SensorInfo(info.wavelength_nm, info.fwhm_nm, 30.0).batch_fields(1)["gsd"].tolist() == [30.0]


def test_seeds_draw_new_splits_and_report_mean_and_std(realdata: Path, tmp_path: Path) -> None:
    image, abundances, _ = _unmixing_files(realdata, tmp_path / "data")
    spec = _matrix_spec(realdata, image, abundances, block=8, test_fraction=0.3)
    config = DownstreamConfig(
        task="segmentation", data=spec, output=str(tmp_path / "runs"), mode="logreg", init="random"
    )
    summary = run_seeds(baseline, config, 3)
    runs = [json.loads((tmp_path / "runs" / f"seed{s}" / "metrics.json").read_text()) for s in range(3)]
    assert len({tuple(r["per_class"]["support"]) for r in runs}) == 3  # each seed drew its own split
    oa = [r["OA"] for r in runs]
    assert summary["OA"]["mean"] == pytest.approx(np.mean(oa)) and summary["OA"]["std"] == pytest.approx(
        np.std(oa, ddof=1)
    )
    assert json.loads((tmp_path / "runs" / "summary.json").read_text())["runs"] == 3
    for run in runs:
        assert run["absent_from_test"] == [] and min(run["per_class"]["support"]) > 0
        assert min(run["per_class"]["train_support"]) > 0 and run["protocol"].startswith("blocks (8 px")


def test_abundance_regression_task(realdata: Path, tmp_path: Path) -> None:
    image, abundances, scene = _unmixing_files(realdata, tmp_path / "data")
    spec = _matrix_spec(realdata, image, abundances, target="abundance", class_names=scene.names)
    data = load_data(spec)
    assert data.task == "abundance" and data.class_names == scene.names
    assert all(item.abundance.shape == (4, 16, 16) for item in data.train)
    forest = baseline(
        _config(tmp_path, "abundance", mode="rf", rf_trees=20, output=str(tmp_path / "rf")), data
    )
    test = data.scenes[0].test
    truth = scene.abundances[:, test].T
    trivial = np.sqrt(np.mean((truth - scene.abundances[:, data.scenes[0].train].mean(axis=1)) ** 2))
    assert forest["pixels"] == int(test.sum()) and forest["RMSE"] < 0.5 * trivial
    assert 0 <= forest["SAD"] < 0.5 and len(forest["per_endmember"]["RMSE"]) == 4
    tuned = finetune(_config(tmp_path, "abundance", steps=12, pixel_branch=True), data)
    history = np.loadtxt(tmp_path / "abundance" / "history.csv", delimiter=",", skiprows=1)[:, 1]
    assert history[-3:].mean() < history[:3].mean()
    assert tuned["RMSE"] > 0 and (tmp_path / "abundance" / "abundance.png").stat().st_size > 0
    with pytest.raises(ValueError, match="abundance task's spectral baseline is rf"):
        baseline(_config(tmp_path, "abundance", mode="logreg"), data)


# ---------------------------------------------------------------- per-pixel resolution and outputs


def test_whole_scene_window_progress_and_scene_map(
    realdata: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image, abundances, scene = _unmixing_files(realdata, tmp_path / "data")
    data = load_data(_matrix_spec(realdata, image, abundances, window="scene", block=8))
    assert data.window == (40, 56) and len(data.train) == len(data.test) == 1
    assert data.train[0].image.shape == (25, 40, 56)
    config = _config(tmp_path, "segmentation", steps=4, log_every=2)
    metrics = finetune(config, data)
    assert "finetune steps 4/4" in capsys.readouterr().err  # periodic lines without a TTY
    assert metrics["pixels"] == int(data.scenes[0].test.sum())
    assert metrics["run"].startswith("segmentation finetune (random")
    assert (tmp_path / "segmentation" / "maps.png").stat().st_size > 0
    again = evaluate(config, data)
    assert again["confusion_matrix"] == metrics["confusion_matrix"]
    with pytest.raises(ValueError, match="pixel_branch is for fine-tuning"):
        _config(tmp_path, "segmentation", mode="probe", pixel_branch=True)


def test_stitched_scene_prediction_masks_padding() -> None:
    image = np.random.default_rng(0).random((3, 10, 13)).astype(np.float32)
    split = SplitScene(
        LabelledImage(image, np.ones((10, 13), dtype=np.int64), "s"),
        np.ones((10, 13), bool),
        np.zeros((10, 13), bool),
    )
    calls = []

    def fake(items: list[LabelledImage]) -> list[np.ndarray]:
        calls.append(len(items))
        return [np.full(i.labels.shape, 1 + i.origin[0] // 8 + 2 * (i.origin[1] // 8)) for i in items]

    stitched = stitch_scene(split, (8, 8), fake)
    assert stitched.shape == (10, 13) and calls == [4]
    assert stitched[0, 0] == 1 and stitched[9, 0] == 2 and stitched[0, 12] == 3 and stitched[9, 12] == 4


@pytest.mark.parametrize("patch", [8, 4, 2])
def test_full_resolution_head_at_every_patch_size(patch: int) -> None:
    """Logits come out at the input's full resolution whatever the token grid, with and without the pixel branch."""
    from specaware.downstream.heads import PixelBranch, build_head_model
    from specaware.model.mae import build_model

    bands = 10
    batch = {
        "image": torch.rand(1, bands, 32, 40),
        **_sensor_like(bands).batch_fields(1),
    }
    for branch in (None, PixelBranch(torch.zeros(bands), torch.ones(bands), 8)):
        backbone = build_model("tiny", text="placeholder", **SMALL | {"patch_size": patch, "image_size": 32})
        model = build_head_model(
            backbone, "segmentation", 3, "finetune", 16, 16, [1, 2, 3, 6], 0.0, 16, branch
        )
        assert tuple(model(batch).shape) == (1, 3, 32, 40)


def _sensor_like(bands: int) -> SensorInfo:
    return SensorInfo(np.linspace(450, 2000, bands), np.full(bands, 10.0), None)


@pytest.mark.parametrize("patch", [4, 2])
def test_finetune_from_a_checkpoint_at_a_smaller_patch_size(tmp_path: Path, patch: int) -> None:
    """A pretrained k = 8 checkpoint fine-tunes at k = 4 and 2 (V generator resized) and predicts every pixel."""
    from specaware.downstream.runner import load_backbone
    from specaware.model import build_model, save_checkpoint

    checkpoint = save_checkpoint(build_model("tiny", text="placeholder", **SMALL), tmp_path / "model.pt")
    config = _config(tmp_path, "segmentation", steps=3, checkpoint=str(checkpoint), init="pretrained")
    moved = load_backbone(replace(config, patch_size=patch))
    assert moved.config.patch_size == patch and moved.encoder.patch_size == patch
    assert moved.config.position_gsd_scale == pytest.approx(
        patch / 8 * load_backbone(config).config.position_gsd_scale
    )
    data = _segmentation_data()
    metrics = finetune(replace(config, patch_size=patch), data)
    assert metrics["pixels"] == sum(int((item.labels > 0).sum()) for item in data.test)
    again = evaluate(replace(config, patch_size=patch), data)
    assert again["confusion_matrix"] == metrics["confusion_matrix"]
    with pytest.raises(ValueError, match="patch_size must be a positive"):
        replace(config, patch_size=0)


# ---------------------------------------------------------------- the benchmark's pretrained path


@pytest.fixture(scope="module")
def one_product_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-product build (AVIRIS-NG L2 on its real band grid, one 64-px tile), all of it training data."""
    return training_build(tmp_path_factory, [("aviris-ng", "L2", 64, 64, 5)])


def test_benchmark_pretrains_once_and_downstream_starts_from_the_pretrained_encoder(
    one_product_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The benchmark pretrains (2 steps), caches the checkpoint, and its pretrained rows start from exactly the
    checkpoint's encoder weights, its random rows from a fresh model of the same configuration."""
    from benchmarks import downstream as bench
    from specaware.downstream import runner

    config = bench.pretrain_config(one_product_corpus, tmp_path / "pretrain", steps=2)
    path, record = bench.pretrained_checkpoint(config)
    assert not record["cached"] and record["config"]["steps"] == 2 and record["config"]["crop"] == 32
    assert record["loss"]["first"]["step"] == 1 and record["loss"]["last"]["step"] == 2
    assert record["loss"]["last"]["loss"] > 0
    written = path.stat().st_mtime_ns
    again, cached = bench.pretrained_checkpoint(config)
    assert cached["cached"] and again == path and path.stat().st_mtime_ns == written
    with pytest.raises(SystemExit, match="pretrained with other settings"):
        bench.pretrained_checkpoint(replace(config, lr=5e-4))

    saved = torch.load(path, weights_only=True)["state_dict"]
    starts: dict[str, dict[str, torch.Tensor]] = {}
    original = runner.train_model

    def spy(
        model: torch.nn.Module, data: TaskData, config: DownstreamConfig, device: torch.device
    ) -> list[float]:
        state = model.features.model.state_dict()
        starts[f"{config.init} {config.mode}"] = {
            k: v.detach().clone() for k, v in state.items() if isinstance(v, torch.Tensor)
        }
        return original(model, data, config, device)

    monkeypatch.setattr(runner, "train_model", spy)
    base = DownstreamConfig(
        task="segmentation", data={}, output="", init="random", checkpoint=str(path), neck_width=8,
        head_channels=8, steps=2, warmup_steps=1, batch_size=2, rf_trees=5, class_weighting="balanced",
    )  # fmt: skip
    methods = [
        m for m in bench._methods(str(path), True, "balanced") if m[0].endswith("fine-tune + pixel branch")
    ]
    result = bench.compare("generated", 1, base, methods, tmp_path / "out")
    pretrained, random = starts["pretrained finetune"], starts["random finetune"]
    encoder = [k for k, v in saved.items() if k.startswith("encoder.") and isinstance(v, torch.Tensor)]
    assert encoder and all(torch.equal(pretrained[k], saved[k]) for k in encoder)
    assert not torch.equal(
        random["encoder.blocks.0.attn.qkv.weight"], saved["encoder.blocks.0.attn.qkv.weight"]
    )
    assert random["encoder.blocks.0.attn.qkv.weight"].shape == (
        3 * bench.SMALL["embed_dim"],
        bench.SMALL["embed_dim"],
    )
    for name in (
        "SpecAware pretrained: fine-tune + pixel branch",
        "SpecAware random: fine-tune + pixel branch",
    ):
        assert 0.0 <= result["methods"][name]["OA"]["mean"] <= 1.0


def test_balanced_class_weights_are_inverse_training_frequency(tmp_path: Path) -> None:
    from specaware.downstream.runner import class_weights, task_loss

    data = _segmentation_data()
    support = np.array(
        [sum(int((item.labels == c).sum()) for item in data.train) for c in (1, 2, 3)], dtype=float
    )
    weights = class_weights(data).numpy()
    assert support.min() > 0 and np.allclose(weights, support.sum() / (3 * support))
    assert np.isclose((weights * support).sum(), support.sum())  # the total weight stays the pixel count
    # A weighted loss counts a rare-class pixel as much as the common class's pixels put together.
    logits, target = torch.zeros(1, 2, 1, 4), torch.tensor([[[0, 0, 0, 1]]])
    weight = torch.tensor([1.0, 3.0])
    wrong_rare = task_loss(
        torch.tensor([[[[0.0, 0, 0, 5]], [[0.0, 0, 0, -5]]]]), target, "segmentation", weight
    )
    assert wrong_rare > task_loss(logits, target, "segmentation", weight)
    with pytest.raises(ValueError, match="class_weighting"):
        _config(tmp_path, "segmentation", class_weighting="inverse")
    metrics = finetune(_config(tmp_path, "segmentation", steps=3, class_weighting="balanced"), data)
    assert "balanced classes" in metrics["run"]
