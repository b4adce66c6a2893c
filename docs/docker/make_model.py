"""Writes the demo model the sample server loads (a plain state_dict)."""
import sys

import torch

torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
torch.save(model.state_dict(), sys.argv[1] if len(sys.argv) > 1 else "/models/model.pt")
