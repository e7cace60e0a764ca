"""LightningModules (training logic) and the plain nn.Modules they train."""
from lightning_lab.models.classifier import ClassifierModule, NonFiniteLossError
from lightning_lab.models.classifiers import CNNClassifier, MLPClassifier, ResNet18Classifier
from lightning_lab.models.cnn import ParametricCNN
from lightning_lab.models.mlp import MLPNet
from lightning_lab.models.resnet import build_resnet18

__all__ = ["ClassifierModule", "CNNClassifier", "MLPClassifier", "ResNet18Classifier", "ParametricCNN", "MLPNet",
           "build_resnet18", "NonFiniteLossError"]
