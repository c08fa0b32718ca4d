"""Data sets, loaded once as tensors (MNIST, CIFAR) or streamed (ImageNet)."""
