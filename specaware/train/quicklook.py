"""Reconstruction quicklooks during pretraining: true colour of input vs. reconstruction, and a few spectra."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from hyper400k.figures import plt, save_figure
from hyper400k.quicklook import true_colour


def save_reconstruction(
    path: Path,
    image: torch.Tensor,
    prediction: torch.Tensor,
    pixels: torch.Tensor,
    wavelength: torch.Tensor,
    title: str,
) -> None:
    """One sample: input, reconstruction (masked patches predicted), and spectra of three masked pixels."""
    image_np = image.detach().float().cpu().numpy()
    pred_np = prediction.detach().float().cpu().numpy()
    masked = pixels.detach().cpu().numpy()
    wl = wavelength.detach().float().cpu().numpy()
    mixed = np.where(masked[None], pred_np, image_np)
    fig, axes = plt.subplots(1, 3, figsize=(12, 4))
    axes[0].imshow(true_colour(image_np, wl))
    axes[0].set_title("input")
    axes[1].imshow(true_colour(mixed, wl))
    axes[1].set_title("visible + reconstructed")
    rows, cols = np.nonzero(masked)
    order = np.argsort(wl)
    for i in np.linspace(0, len(rows) - 1, 3).astype(int) if len(rows) else []:
        r, c = rows[i], cols[i]
        line = axes[2].plot(wl[order], image_np[order, r, c], lw=1)[0]
        axes[2].plot(wl[order], pred_np[order, r, c], lw=1, ls="--", color=line.get_color())
    axes[2].set_xlabel("wavelength (nm)")
    axes[2].set_title("spectra: target (solid) vs reconstruction (dashed)")
    for ax in axes[:2]:
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path, dpi=70)
