"""The policy tests share the tiny models of tests/conftest.py; this folder runs torch on one
thread so its timings do not depend on the machine's other load."""
import torch

torch.set_num_threads(1)
