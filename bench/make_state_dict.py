#!/usr/bin/env python3
"""Writes a PyTorch (zip format) checkpoint shaped like a transformer's state dict: LAYERS blocks of
12 tensors each (two layer norms, attention in/out, MLP up/down, each with a bias), float32,
hidden size chosen so the file holds about SIZE_MIB MiB. The defaults (12 layers, 393 MiB) give the
144-tensor, 393 MiB file of issue 15's safeLoad measurement.
Usage: /usr/bin/python3 bench/make_state_dict.py OUT [SIZE_MIB [LAYERS]]"""
import math
import sys
import torch

out = sys.argv[1]
mib = float(sys.argv[2]) if len(sys.argv) > 2 else 393.0
layers = int(sys.argv[3]) if len(sys.argv) > 3 else 12
# Per block: 12*h*h weight elements + 13*h bias/norm elements, 4 bytes each.
target = mib * 1024 * 1024 / 4 / layers
h = int((-13 + math.sqrt(169 + 48 * target)) / 24)
g = torch.Generator().manual_seed(0)
sd = {}
for i in range(layers):
    p = 'h.%d.' % i
    sd[p + 'ln_1.weight'] = torch.randn(h, generator=g)
    sd[p + 'ln_1.bias'] = torch.randn(h, generator=g)
    sd[p + 'attn.c_attn.weight'] = torch.randn(h, 3 * h, generator=g)
    sd[p + 'attn.c_attn.bias'] = torch.randn(3 * h, generator=g)
    sd[p + 'attn.c_proj.weight'] = torch.randn(h, h, generator=g)
    sd[p + 'attn.c_proj.bias'] = torch.randn(h, generator=g)
    sd[p + 'ln_2.weight'] = torch.randn(h, generator=g)
    sd[p + 'ln_2.bias'] = torch.randn(h, generator=g)
    sd[p + 'mlp.c_fc.weight'] = torch.randn(h, 4 * h, generator=g)
    sd[p + 'mlp.c_fc.bias'] = torch.randn(4 * h, generator=g)
    sd[p + 'mlp.c_proj.weight'] = torch.randn(4 * h, h, generator=g)
    sd[p + 'mlp.c_proj.bias'] = torch.randn(h, generator=g)
torch.save(sd, out)
print(len(sd), sum(t.numel() * 4 for t in sd.values()))
