"""What every zoo model shares: input checks, the feature interface, ``reset_classifier``,
``features_only``, and building a registered model as another's backbone."""

from __future__ import annotations

import torch
import torch.nn as nn

from .._registry import get_entry


class ZooModel(nn.Module):
    """Base class: one face for every model.

    Subclasses set ``num_classes``, ``in_chans``, ``num_features`` (the classifier's input
    width), ``feature_info`` (one dict per stage with ``num_chs``, ``reduction`` and
    ``module``), ``first_conv_name`` and ``classifier_name`` (dotted module paths, used when
    pretrained weights are adapted), and implement ``forward_intermediates``,
    ``forward_features`` and ``forward_head``. ``reset_classifier`` puts a new linear layer
    (or ``Identity`` for 0 classes) at ``classifier_name``; dense predictors override it.

    A composite built on a registered backbone (``self.backbone``, see ``create_backbone``)
    also sets ``backbone_arch`` (the backbone's registered name) and ``backbone_args`` (the
    arguments it was built with that classification weights must share, e.g. ``norm``), so
    ``create_model(..., backbone_weights=...)`` can fill it; that records what it loaded in
    ``backbone_weights`` (``{"name", "sha256"}``).
    """

    num_classes: int
    in_chans: int
    num_features: int
    feature_info: list[dict]
    first_conv_name: str = ""
    classifier_name: str = ""
    fixed_input_size: tuple[int, int] | None = None  # (H, W) for models that only take one size
    backbone_arch: str = ""  # the registered backbone a composite is built on; "" for none
    backbone_weights: dict[str, str] | None = None  # what the backbone started from, when loaded

    def __init__(self) -> None:
        super().__init__()
        self.features_only = False
        self.out_indices: tuple[int, ...] = ()

    # -- input checks --------------------------------------------------------------------
    def check_input(self, x: torch.Tensor) -> None:
        """Raise a clear error for input the model cannot take, naming expected and actual."""
        name = type(self).__name__
        if not isinstance(x, torch.Tensor):
            raise TypeError(
                f"{name} expects a torch.Tensor of shape (N, {self.in_chans}, H, W), got {type(x).__name__}"
            )
        if not x.is_floating_point():
            raise TypeError(
                f"{name} expects a floating-point image tensor, scaled to [0, 1] and normalised with "
                f"the weights' mean and std (zoo.weights.eval_transforms gives those steps), got dtype "
                f"{x.dtype}; convert it first, e.g. v2.ToDtype(torch.float32, scale=True) then Normalize"
            )
        if x.ndim != 4:
            raise ValueError(
                f"{name} expects a 4-D tensor (N, {self.in_chans}, H, W), got {x.ndim}-D shape {tuple(x.shape)}"
            )
        if x.shape[1] != self.in_chans:
            raise ValueError(
                f"{name} expects {self.in_chans} input channels, got {x.shape[1]} (input shape {tuple(x.shape)})"
            )
        if self.fixed_input_size is not None and tuple(x.shape[-2:]) != tuple(self.fixed_input_size):
            raise ValueError(
                f"{name} was built for {self.fixed_input_size[0]}x{self.fixed_input_size[1]} images, got "
                f"{x.shape[-2]}x{x.shape[-1]} (input shape {tuple(x.shape)}); pass img_size= to create_model"
            )

    # -- the interface every model implements ----------------------------------------------
    def forward_intermediates(self, x: torch.Tensor) -> list[torch.Tensor]:
        """One feature map per ``feature_info`` entry, finest first."""
        raise NotImplementedError

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        raise NotImplementedError

    def reset_classifier(self, num_classes: int) -> None:
        """A new, freshly initialised classifier for ``num_classes`` (0: none, ``Identity``)."""
        self.num_classes = num_classes
        parent, _, name = self.classifier_name.rpartition(".")
        setattr(self.get_submodule(parent), name, classifier_or_identity(self.num_features, num_classes))

    def get_classifier(self) -> nn.Module:
        """The layer that produces the logits (``classifier_name``)."""
        return self.get_submodule(self.classifier_name)

    def forward(self, x: torch.Tensor):
        self.check_input(x)
        if self.features_only:
            features = self.forward_intermediates(x)
            return [features[i] for i in self.out_indices]
        return self.forward_head(self.forward_features(x))

    # -- features_only ---------------------------------------------------------------------
    def as_features(self, out_indices: tuple[int, ...] | None = None) -> ZooModel:
        """Turn into a backbone returning the feature maps of ``out_indices`` (all stages by default).

        The classifier is removed (its parameters too) and ``feature_info`` lists only the
        returned maps; parameter names stay as they are, so backbone weights load unchanged.
        """
        n = len(self.feature_info)
        out_indices = tuple(range(n)) if out_indices is None else tuple(out_indices)
        if not out_indices or any(not -n <= i < n for i in out_indices):
            raise ValueError(f"out_indices must index the {n} stages of feature_info, got {out_indices}")
        out_indices = tuple(i % n for i in out_indices)
        self.reset_classifier(0)
        self.features_only = True
        self.out_indices = out_indices
        self.feature_info = [self.feature_info[i] for i in out_indices]
        return self


def classifier_or_identity(in_features: int, num_classes: int) -> nn.Module:
    """A linear classifier, or ``Identity`` when ``num_classes`` is 0 (features only)."""
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 0:
        raise ValueError(f"num_classes must be an int >= 0 (0 for no classifier), got {num_classes!r}")
    return nn.Linear(in_features, num_classes) if num_classes > 0 else nn.Identity()


def check_drop_path_rate(rate: float) -> None:
    """Stochastic depth drops a residual branch with this probability: it must be in [0, 1)."""
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < 1:
        raise ValueError(f"drop_path_rate must be a number in [0, 1) (a probability), got {rate!r}")


def create_backbone(name: str, out_indices: tuple[int, ...], **kwargs) -> ZooModel:
    """The registered model ``name`` as a feature extractor (``features_only``), for composites.

    A composite names its first conv after the backbone's: ``f"backbone.{backbone.first_conv_name}"``.
    """
    return get_entry(name).fn(**kwargs).as_features(out_indices)
