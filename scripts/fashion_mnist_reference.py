"""The quickstart's student (or teacher) trained from scratch in PyTorch + timm, for comparison
with `funmatch train` (run by hand, never by CI; needs scripts/requirements-reference.txt).

    python scripts/fashion_mnist_reference.py student 500

Adam (lr 0.003, 200 warmup steps, cosine to 0), batch 128, label smoothing 0.1, random
horizontal flips, no crops, 2 threads; prints the test top-1 on the 10 000 test images.
The models are bench_reference.py's, built as funmatch builds the recipes' models.
"""
import gzip, math, os, sys, time
import numpy as np, torch, torch.nn.functional as F
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_reference as b
torch.manual_seed(0); torch.set_num_threads(2)
def idx(p):
    d = gzip.open(p).read()
    if d[2] == 8 and d[3] == 3:
        return np.frombuffer(d, np.uint8, offset=16).reshape(-1, 28, 28)
    return np.frombuffer(d, np.uint8, offset=8)
r = os.environ.get("FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist") + "/"
xtr, ytr = idx(r + "train-images-idx3-ubyte.gz"), idx(r + "train-labels-idx1-ubyte.gz")
xte, yte = idx(r + "t10k-images-idx3-ubyte.gz"), idx(r + "t10k-labels-idx1-ubyte.gz")
prep = lambda x: ((torch.tensor(x, dtype=torch.float32) / 255 - 0.5) / 0.5).unsqueeze(1).repeat(1, 3, 1, 1)
teacher = len(sys.argv) > 1 and sys.argv[1] == "teacher"
m, _, _, _ = b.build("fmnist-teacher" if teacher else "fmnist-student")
steps = int(sys.argv[2]) if len(sys.argv) > 2 else 500
opt = torch.optim.Adam(m.parameters(), lr=0.003)
warm = 200
sched = lambda s: min(1, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))
g = torch.Generator().manual_seed(0)
t0 = time.time()
for s in range(steps):
    for pg in opt.param_groups: pg["lr"] = 0.003 * sched(s)
    i = torch.randint(0, 60000, (128,), generator=g)
    x = prep(xtr[i.numpy()]); y = torch.tensor(ytr[i.numpy()], dtype=torch.long)
    flip = torch.rand(128, generator=g) < 0.5
    x[flip] = x[flip].flip(-1)
    loss = F.cross_entropy(m(x), y, label_smoothing=0.1)
    opt.zero_grad(); loss.backward(); opt.step()
    if s % 100 == 0: print(s, loss.item(), f"{(s+1)*128/(time.time()-t0):.0f} img/s", flush=True)
m.eval(); correct = 0
with torch.no_grad():
    for j in range(0, 10000, 500):
        correct += (m(prep(xte[j:j+500])).argmax(1).numpy() == yte[j:j+500]).sum()
print("test top-1", correct / 100, "%")
