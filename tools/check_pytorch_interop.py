"""Load sparsegrad's export into the equivalent PyTorch model and compare test accuracy."""
import gzip, struct, sys
import numpy as np, torch, torch.nn as nn, torch.nn.functional as F
from safetensors.torch import load_file
import json

path = sys.argv[1]
sd = load_file(path)
class LeNet300(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 300); self.fc2 = nn.Linear(300, 100); self.fc3 = nn.Linear(100, 10)
    def forward(self, x):
        x = x.flatten(1); return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))
m = LeNet300(); m.load_state_dict(sd, strict=True); m.eval()
def idx(p):
    b = gzip.open(p).read(); nd = b[3]; dims = struct.unpack('>' + 'I' * nd, b[4:4 + 4 * nd])
    return np.frombuffer(b[4 + 4 * nd:], np.uint8).reshape(dims)
x = idx('data/mnist-10k/t10k-images-idx3-ubyte.gz').astype(np.float32) / 255.0
y = idx('data/mnist-10k/t10k-labels-idx1-ubyte.gz')
from safetensors import safe_open
with safe_open(path, 'pt') as f: meta = json.loads(f.metadata()['sparsegrad'])
mean, std = meta['info']['normalize_mean'][0], meta['info']['normalize_std'][0]
xt = torch.from_numpy((x - mean) / std).unsqueeze(1)
with torch.no_grad(): acc = (m(xt).argmax(1).numpy() == y).mean()
print(f"pytorch load_state_dict(strict=True) ok; test_accuracy={acc:.4f}")
