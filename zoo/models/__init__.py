"""Model families, one file each. Importing a family registers its models."""

from . import (
    densenet,  # noqa: F401
    resnet,  # noqa: F401
    vit,  # noqa: F401
)
