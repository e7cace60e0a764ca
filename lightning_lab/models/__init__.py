"""The one LightningModule (`Classifier`) and the networks it trains."""
from lightning_lab.models.classifier import Classifier, NetFactory, SchedulerFactory
from lightning_lab.models.cnn import ParametricCNN
from lightning_lab.models.mlp import MLP
from lightning_lab.models.nonfinite import NonFiniteLossError
from lightning_lab.models.resnet import ResNet18

__all__ = ["Classifier", "NetFactory", "SchedulerFactory", "ParametricCNN", "MLP", "ResNet18", "NonFiniteLossError"]
