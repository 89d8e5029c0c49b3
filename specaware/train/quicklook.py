"""Reconstruction quicklooks during pretraining: true colour of input vs. reconstruction, and a few spectra."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from matplotlib.lines import Line2D

from hyper400k.figures import plt, save_figure
from hyper400k.quicklook import true_colour


def save_reconstruction(
    path: Path,
    image: torch.Tensor,
    prediction: torch.Tensor,
    pixels: torch.Tensor,
    wavelength: torch.Tensor,
    title: str,
    value_label: str,
) -> None:
    """One sample: input, reconstruction (masked patches predicted), and spectra of three masked pixels.

    ``value_label`` names the spectra's y axis with its units, e.g. ``radiance (µW cm⁻² sr⁻¹ nm⁻¹)``
    (see :func:`value_label`)."""
    image_np = image.detach().float().cpu().numpy()
    pred_np = prediction.detach().float().cpu().numpy()
    masked = pixels.detach().cpu().numpy()
    wl = wavelength.detach().float().cpu().numpy()
    mixed = np.where(masked[None], pred_np, image_np)
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.6), gridspec_kw={"width_ratios": (1, 1, 1.6)})
    axes[0].imshow(true_colour(image_np, wl))
    axes[0].set_title("input")
    axes[1].imshow(true_colour(mixed, wl))
    axes[1].set_title("visible + reconstructed (masked patches)")
    rows, cols = np.nonzero(masked)
    order = np.argsort(wl)
    for i in np.linspace(0, len(rows) - 1, 3).astype(int) if len(rows) else []:
        r, c = rows[i], cols[i]
        line = axes[2].plot(wl[order], image_np[order, r, c], lw=1)[0]
        axes[2].plot(wl[order], pred_np[order, r, c], lw=1, ls="--", color=line.get_color())
    axes[2].set_xlabel("wavelength (nm)")
    axes[2].set_ylabel(value_label)
    axes[2].set_title("spectra of 3 masked pixels (one colour each)")
    styles = [Line2D([], [], color="black", lw=1, label="target"), Line2D([], [], color="black", lw=1, ls="--")]
    styles[1].set_label("reconstruction")
    axes[2].legend(handles=styles, fontsize=8, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.14))
    for ax in axes[:2]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=70)


def value_label(level: str, normalized: bool) -> str:
    """The y-axis label of a sample's spectra: standardised values, or radiance / reflectance with units."""
    if normalized:
        return "standardised value (per-band z-score)"
    return "radiance (µW cm⁻² sr⁻¹ nm⁻¹)" if level == "L1" else "reflectance (0-1)"
