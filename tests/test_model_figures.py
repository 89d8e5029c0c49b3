"""Pretraining quicklooks and downstream maps read without the code: units on the spectra, class names on maps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from specaware.downstream import metrics
from specaware.train import quicklook


def _capture(monkeypatch, module) -> list:
    figures = []
    monkeypatch.setattr(module, "save_figure", lambda fig, path, dpi=100: figures.append(fig) or Path(path))
    return figures


def test_reconstruction_spectra_are_labelled_with_units_and_the_title_fits(monkeypatch):
    figures = _capture(monkeypatch, quicklook)
    image = torch.rand(40, 16, 16)
    masked = torch.zeros(16, 16, dtype=torch.bool)
    masked[:8, :8] = True
    title = "step 150: ang20150827t181437_rfl_v2p9_img_r64_c64 (loss 0.915)"
    label = quicklook.value_label("L1", normalized=False)
    quicklook.save_reconstruction(Path("q.png"), image, image + 0.1, masked, torch.linspace(400, 2500, 40), title, label)
    (fig,) = figures
    spectra = fig.axes[2]
    assert spectra.get_xlabel() == "wavelength (nm)"
    assert spectra.get_ylabel() == "radiance (µW cm⁻² sr⁻¹ nm⁻¹)"
    assert [t.get_text() for t in spectra.get_legend().get_texts()] == ["target", "reconstruction"]
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    width = fig.bbox.width
    for text in [fig._suptitle, *(ax.title for ax in fig.axes)]:
        box = text.get_window_extent(renderer)
        assert box.x0 >= 0 and box.x1 <= width, text.get_text()  # no title runs off the figure


def test_value_labels():
    assert quicklook.value_label("L2", normalized=False) == "reflectance (0-1)"
    assert "z-score" in quicklook.value_label("L1", normalized=True)


def test_maps_have_a_legend_naming_every_class(monkeypatch):
    figures = _capture(monkeypatch, metrics)
    labels = np.array([[0, 1], [2, 3]])
    valid = np.ones_like(labels, dtype=bool)
    metrics.plot_maps([labels], [labels], [valid], ["tile"], ["roof", "tree", "water"], "maps.png")
    (fig,) = figures
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert texts == ["roof", "tree", "water", "unlabelled", "no data"]
