"""Lightning data modules, one per dataset (``base.py``: shared conventions; ``images.py``: the image pipeline)."""
from lightning_lab.data.base import BaseDataModule
from lightning_lab.data.cats_dogs import CatsDogsDataModule
from lightning_lab.data.cifar10 import CIFAR10DataModule
from lightning_lab.data.digits import DigitsDataModule
from lightning_lab.data.images import ImageDataModule
from lightning_lab.data.mnist import MNISTDataModule
from lightning_lab.data.moons import MoonsDataModule

__all__ = ["BaseDataModule", "CIFAR10DataModule", "CatsDogsDataModule", "DigitsDataModule", "ImageDataModule",
           "MNISTDataModule", "MoonsDataModule"]
