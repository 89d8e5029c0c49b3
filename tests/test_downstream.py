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

from hyper400k.product import open_product
from specaware.downstream.datasets import (
    ChangeItem,
    LabelledImage,
    SensorInfo,
    TaskData,
    block_split,
    cube_segmentation_data,
    load_data,
    per_class_split,
    read_wavelength_table,
    scene_folder_data,
    tile_segmentation_data,
)
from specaware.downstream.heads import build_head_model, level_blocks
from specaware.downstream.metrics import change_metrics, classification_metrics, confusion_matrix
from specaware.downstream.runner import DownstreamConfig, baseline, evaluate, finetune, probe

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
    assert data.protocol == "blocks" and data.num_classes == 3
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
    # A class absent from truth and prediction has undefined (None) scores, left out of the means.
    m = classification_metrics(np.array([[2, 0, 0], [0, 0, 0], [1, 0, 1]]))
    assert m["per_class"]["IoU"][1] is None and m["mIoU"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert m["AA"] == pytest.approx(0.75)
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
        assert config.task in ("segmentation", "change", "scene")
    with pytest.raises(ValueError, match="unknown"):
        DownstreamConfig.from_yaml(paths[0], colour="red")


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
    settings |= {"model_overrides": SMALL, "neck_width": 8, "head_channels": 8, "steps": 12, "batch_size": 2}
    settings |= {"lr": 3e-3, "warmup_steps": 1, "dropout": 0.0, "augment": False}
    return DownstreamConfig(**(settings | values))


def test_finetune_segmentation_loss_falls_and_evaluate_matches(tmp_path: Path) -> None:
    data = _segmentation_data()
    config = _config(tmp_path, "segmentation", steps=15)
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
    metrics = finetune(_config(tmp_path, "change", steps=25, lr=5e-3), data)
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
    assert not torch.equal(ours["encoder.blocks.0.attn.qkv.weight"], theirs["encoder.blocks.0.attn.qkv.weight"])
    same = load_backbone(_config(tmp_path, "segmentation", checkpoint=str(path), init="pretrained"))
    key = "encoder.blocks.0.attn.qkv.weight"
    assert torch.equal(same.state_dict()[key], theirs[key])
