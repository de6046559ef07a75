"""fastbert's Triton kernels, installed as ``fastbert.kernels``.

One kernel family per module; each module keeps a pure-PyTorch ``*_ref`` beside its launcher.
"""
