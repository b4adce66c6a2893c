"""Sample inference server for the modelguard Dockerfile.

Loads /models/model.pt (a state_dict, loaded with weights_only=True), serves POST /predict with a
JSON list of 16 floats, and answers with the logits. Standard library + PyTorch only.
"""
import json
import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

import torch

MODEL_PATH = os.environ.get("MODEL_PATH", "/models/model.pt")
PORT = int(os.environ.get("PORT", "8000"))

model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
model.load_state_dict(torch.load(MODEL_PATH, weights_only=True))
model.eval()


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        if self.path != "/predict":
            self.send_error(404)
            return
        length = int(self.headers.get("Content-Length", "0"))
        values = json.loads(self.rfile.read(length) or b"[]")
        with torch.no_grad():
            out = model(torch.tensor([values], dtype=torch.float32))[0].tolist()
        body = json.dumps({"logits": out}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def stop(signum, frame):
    print(f"serve.py: signal {signum}, shutting down", flush=True)
    sys.exit(0)


signal.signal(signal.SIGTERM, stop)
print(f"serve.py: {MODEL_PATH} loaded, listening on :{PORT}", flush=True)
HTTPServer(("0.0.0.0", PORT), Handler).serve_forever()
