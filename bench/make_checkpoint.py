#!/usr/bin/env python3
"""Writes a PyTorch checkpoint of about SIZE_MIB MiB: 16 float32 tensors, same names and pickle
structure whatever the size, so two sizes differ only in tensor bytes.
Usage: /usr/bin/python3 bench/make_checkpoint.py OUT SIZE_MIB"""
import sys
import torch

out, mib = sys.argv[1], float(sys.argv[2])
n = 16
per = int(mib * 1024 * 1024 / 4 / n)
g = torch.Generator().manual_seed(0)
sd = {'layer%02d.weight' % i: torch.randn(per, generator=g) for i in range(n)}
sd['step'] = torch.tensor(7)
torch.save(sd, out)
