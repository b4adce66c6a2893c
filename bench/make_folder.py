#!/usr/bin/env python3
"""Writes a folder of COUNT small models, half PyTorch state dicts (torch.save of a small MLP's
state_dict) and half joblib files (scikit-learn estimators and NumPy arrays), the mix of a model
zoo checkout. Deterministic. Usage: /usr/bin/python3 bench/make_folder.py OUT_DIR [COUNT]"""
import os
import sys

import joblib
import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

out = sys.argv[1]
count = int(sys.argv[2]) if len(sys.argv) > 2 else 200
os.makedirs(out, exist_ok=True)
torch.manual_seed(0)
rng = np.random.default_rng(0)
x = rng.normal(size=(40, 4))
y = (x[:, 0] > 0).astype(int)
for i in range(count // 2):
    width = 4 + i % 13
    net = torch.nn.Sequential(torch.nn.Linear(8, width), torch.nn.ReLU(), torch.nn.Linear(width, 2))
    torch.save(net.state_dict(), os.path.join(out, 'torch-%03d.pt' % i))
    kind = i % 3
    if kind == 0:
        model = LogisticRegression(max_iter=50).fit(x, y)
    elif kind == 1:
        model = StandardScaler().fit(x)
    else:
        model = {'weights': rng.normal(size=(8, 4 + i % 5)), 'bias': rng.normal(size=4 + i % 5), 'step': i}
    joblib.dump(model, os.path.join(out, 'sk-%03d.joblib' % i))
