"""Test-wide settings.

torch runs on one intra-op thread in tests: the simulations' tensors are small enough that a
second thread gains little, and on a shared 2-core machine a 2-thread pool waits on a busy core at
every op (the simulation tests measured 60 s on one thread against 148 s on two under load).
"""

import torch

torch.set_num_threads(1)
