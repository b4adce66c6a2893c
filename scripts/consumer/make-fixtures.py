# Fixtures for scripts/consumer-check.mjs, written at check time with the real PyTorch:
#   benign.pt   a plain state dict (float32, int64, float16, bfloat16 tensors)
#   evil.pt     a checkpoint whose pickle calls os.system; the payload only writes a marker
#               file in this folder, and building the pickle does not run it
#   expected.json  each benign tensor's dtype, shape and sha256 of its raw little-endian bytes
import hashlib, json, os, sys
import torch

out = sys.argv[1]
torch.manual_seed(14)
state = {
    "layer.weight": torch.randn(3, 4),
    "layer.bias": torch.randn(4),
    "ids": torch.arange(-3, 9, dtype=torch.int64).reshape(3, 4),
    "half": torch.randn(5).half(),
    "bf16": torch.randn(2, 3).to(torch.bfloat16),
}
torch.save(state, os.path.join(out, "benign.pt"))
expected = {}
for name, t in state.items():
    raw = t.contiguous().view(torch.uint8).numpy().tobytes()
    expected[name] = {"dtype": str(t.dtype).replace("torch.", ""), "shape": list(t.shape), "sha256": hashlib.sha256(raw).hexdigest()}
with open(os.path.join(out, "expected.json"), "w") as f:
    json.dump(expected, f)

marker = os.path.join(out, "PWNED-marker")
class Payload:
    def __reduce__(self):
        return (os.system, ("echo PWNED > " + marker,))
torch.save({"weight": torch.ones(2), "extra": Payload()}, os.path.join(out, "evil.pt"))
assert not os.path.exists(marker)
