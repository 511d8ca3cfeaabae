"""bncourse: Batch Normalization, tested.

Reference implementations for the course book, each checked against PyTorch.

Modules
-------
standardize   input standardization with training statistics (chapter 1)
batchnorm     NumPy forward/backward, torch-compatible functional and layer
layer         the NumPy layer BatchNorm (re-exported as bncourse.batchnorm.BatchNorm)
ewa           exponentially weighted averages with bias correction
gradcheck     finite differences and relative error
torch_bn      the hand-derived backward inside a torch.autograd.Function
fold          folding BatchNorm into the preceding Linear/Conv2d
"""

__version__ = "0.1.0"
