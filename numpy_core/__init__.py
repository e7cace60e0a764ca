"""A neural network from scratch in NumPy: layers, losses, MLP/Perceptron, SGD/Adam, data and training."""
from .data import Dataset, load_dataset, load_digits, make_moons, stratified_split
from .layers import Dense, LeakyReLU, ReLU, Sigmoid, Tanh, sigmoid
from .losses import binary_cross_entropy, softmax, softmax_cross_entropy
from .mnist import IDXFormatError, MNISTNotFoundError, load_mnist, read_idx
from .network import MLP, Perceptron
from .optim import SGD, Adam, make_optimizer
from .train import TrainingDivergedError, train

__all__ = [
    "MLP", "Perceptron", "Dense", "ReLU", "LeakyReLU", "Sigmoid", "Tanh",
    "sigmoid", "softmax", "softmax_cross_entropy", "binary_cross_entropy", "SGD", "Adam", "make_optimizer",
    "train", "TrainingDivergedError", "Dataset", "load_dataset", "load_digits", "make_moons",
    "stratified_split", "load_mnist", "read_idx", "MNISTNotFoundError", "IDXFormatError",
]
