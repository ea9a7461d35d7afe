"""The differentiable ops: one :class:`cnnlab.autograd.Function` per op, grouped by kind.

    pointwise.py   + - * / ** neg, exp, log, sqrt, abs, relu, leaky_relu, sigmoid, tanh,
                   clamp, maximum, where, dtype/device copies
    reduce.py      sum, mean, max/min (with and without a dim)
    shape.py       reshape (view, flatten), permute (t, transpose), expand, indexing,
                   cat, stack
    nn.py          matmul and linear (the matmul kernel), conv2d, conv_transpose2d,
                   max/avg/adaptive-avg pooling, batch_norm, softmax, log_softmax
    loss.py        cross_entropy, nll_loss, mse_loss, binary_cross_entropy_with_logits

forward and backward take and return arrays (NumPy or torch); ``cnnlab._array.ns(a)`` gives
the functions the two families spell differently. A backward never writes into its
``grad`` or into saved arrays (the engine may hand one gradient to several inputs).
"""
