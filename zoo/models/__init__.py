"""Model families, one file each. Importing a family registers its models."""

from . import resnet  # noqa: F401
