"""What every figure shares: images turned into arrays matplotlib can draw, and user-supplied
text (class names, run names, titles) drawn literally.

Images of any channel count are drawn: one channel as grey, three as RGB, any other count
(e.g. two, or four) as the mean over the channels in grey. Text goes through
:func:`literal`, because matplotlib reads a pair of ``$`` as mathtext: a class named
``$5-$10`` would be typeset as a formula, and ``price $^$`` is not valid mathtext at all.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch


def literal(text: object) -> str:
    """``text`` as a string matplotlib draws as it is: every ``$`` escaped (``\\$``).

    Parameters
    ----------
    text : object
        Any object; it is converted with ``str``.

    Returns
    -------
    str
        The text with no unescaped ``$``, so matplotlib never parses it as mathtext and
        shows each ``$`` as a dollar sign.
    """
    return str(text).replace("$", r"\$")


def literals(texts: Iterable[object]) -> list[str]:
    """:func:`literal` of each item (tick labels, legend entries)."""
    return [literal(t) for t in texts]


def _pixels(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """A (C, H, W) image (or (H, W): one channel) as a float (C, H, W) array in [0, 1]."""
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().float().numpy()
    a = np.asarray(image, dtype=np.float32)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3 or a.shape[0] == 0:
        raise ValueError(f"expected a (C, H, W) image, got shape {a.shape}")
    return np.clip(a, 0.0, 1.0)


def display_array(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """A (C, H, W) image in pixel space as an array ``imshow`` can draw.

    Parameters
    ----------
    image : torch.Tensor or numpy.ndarray
        (C, H, W) with values in [0, 1] (clipped), or (H, W).

    Returns
    -------
    numpy.ndarray
        (H, W, 3) RGB when C == 3; otherwise (H, W) grey: the only channel when C == 1,
        the mean over the channels for any other C (e.g. 2 or 4 channels, which have no
        standard colour meaning). Draw a grey array with ``cmap="gray", vmin=0, vmax=1``
        (:func:`draw_image` does).
    """
    a = _pixels(image)
    if a.shape[0] == 3:
        return a.transpose(1, 2, 0)
    return a[0] if a.shape[0] == 1 else a.mean(0)


def rgb_array(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """A (C, H, W) image as an (H, W, 3) RGB array: :func:`display_array` with grey
    repeated over the three colour channels (for images multiplied by a map, or tinted)."""
    a = display_array(image)
    return np.repeat(a[..., None], 3, 2) if a.ndim == 2 else a


def draw_image(ax: Any, image: torch.Tensor | np.ndarray, **kwargs: Any) -> Any:
    """Draw a (C, H, W) image on ``ax`` (:func:`display_array`: grey unless C == 3) on the
    fixed [0, 1] pixel scale; ``kwargs`` go to ``imshow``. Returns the ``AxesImage``."""
    a = display_array(image)
    if a.ndim == 2:
        kwargs = {"cmap": "gray", "vmin": 0.0, "vmax": 1.0, **kwargs}
    return ax.imshow(a, **kwargs)
