"""Model families, one file each. Importing a family registers its models."""

from . import (
    deeplab,  # noqa: F401
    densenet,  # noqa: F401
    fcos,  # noqa: F401
    resnet,  # noqa: F401
    vit,  # noqa: F401
)
