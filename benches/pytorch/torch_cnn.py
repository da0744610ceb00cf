#!/usr/bin/env python3
"""The study's network (or any gpu-cnn --arch, LeNet-5's among them) in PyTorch, beside which BENCHMARKS.md measures
gpu-cnn, and the maker of the checkpoints the tests read (tests/fixtures/torch_cnn_e5.safetensors,
tests/fixtures/lenet5_torch_e1.safetensors).

    study:  conv1 Conv2d(1, 16, 3, padding=1) + ReLU -> MaxPool2d(2) -> conv2 Conv2d(16, 32, 3, padding=1) + ReLU
            -> MaxPool2d(2) -> flatten (channel-major, 1568) -> fc1 Linear(1568, 128) + ReLU -> fc2 Linear(128, 10)
    lenet5: conv1 Conv2d(1, 6, 5, padding=2) + ReLU -> AvgPool2d(2) -> conv2 Conv2d(6, 16, 5) + ReLU -> AvgPool2d(2)
            -> flatten (400) -> fc1 Linear(400, 120) + ReLU -> fc2 Linear(120, 84) + ReLU -> fc3 Linear(84, 10)

Softmax cross-entropy, SGD with momentum (PyTorch's semantics, as gpu-cnn's), inputs scaled to [0, 1] and normalized
by the training set's mean and standard deviation rounded to 4 decimals, as gpu-cnn does (MNIST's: 0.1307, 0.3081),
PyTorch's default initialization. 28x28 grey images from the four gzipped IDX files in --data-dir (the repository's
data/mnist by default; data/fashion-mnist after data/fashion_mnist.py). Needs: pip install torch numpy safetensors.

    python3 benches/pytorch/torch_cnn.py --epochs 5                      # CPU, 2 threads, as BENCHMARKS.md's rows
    python3 benches/pytorch/torch_cnn.py --device cuda --batch-size 1024 # a GPU
    python3 benches/pytorch/torch_cnn.py --eval PATH                     # a safetensors checkpoint (gpu-cnn's names)
    python3 benches/pytorch/torch_cnn.py --arch lenet5 --epochs 1 --save lenet5.safetensors
    python3 benches/pytorch/torch_cnn.py --device cuda --forms all       # PyTorch's forms, as gpu-cnn bench measures

Prints one line per epoch on stderr and, last on stdout, one JSON object (also written to --json-out).

--forms measures throughput the way `gpu-cnn bench` does (steady state, --repeats samples of at least --seconds each,
median) at each of --batch-sizes, in each of PyTorch's forms: `eager` (PyTorch's defaults: on a GPU cuDNN convolutions
use TF32 tensor cores, matmuls do not), `eager-f32` (TF32 off everywhere: the f32 arithmetic gpu-cnn does), `graph` and
`graph-f32` (the whole training step, or the inference forward, captured once in a CUDA graph and replayed: PyTorch's
documented whole-network capture; CUDA only) and `compile` (torch.compile's default mode, where it runs). Inference
likewise, over the test set in chunks of 1000. A form that cannot run says why in the JSON.
"""

import argparse
import gzip
import json
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
NAMES = ["conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    magic, count = struct.unpack(">II", data[:8])
    if magic == 2051:
        rows, cols = struct.unpack(">II", data[8:16])
        return np.frombuffer(data, np.uint8, count * rows * cols, 16).reshape(count, 1, rows, cols)
    if magic == 2049:
        return np.frombuffer(data, np.uint8, count, 8)
    raise ValueError(f"{path}: not an IDX image or label file (magic {magic})")


def load_split(data_dir, prefix, device):
    def find(stem):
        for name in (stem + ".gz", stem):
            if os.path.exists(os.path.join(data_dir, name)):
                return os.path.join(data_dir, name)
        raise FileNotFoundError(f"{stem}(.gz) not in {data_dir}")

    x = read_idx(find(f"{prefix}-images-idx3-ubyte"))
    y = torch.from_numpy(read_idx(find(f"{prefix}-labels-idx1-ubyte")).astype(np.int64))
    return x, y.to(device)


def normalization(pixels):
    """The mean and standard deviation of pixels / 255, rounded to 4 decimals (gpu-cnn's model::Normalization::of)."""
    v = pixels.astype(np.float64) / 255.0
    return round(float(v.mean()), 4), round(float(v.std()), 4)


def normalized(pixels, mean, std, device):
    return ((torch.from_numpy(pixels.astype(np.float32) / 255.0) - mean) / std).to(device)


PRESETS = {
    "study": "conv16-pool-conv32-pool-fc128-fc10",
    "tiny": "conv4-pool-conv8-pool-fc32-fc10",
    "wide": "conv64-pool-conv128-pool-fc512-fc10",
    "lenet5": "conv6k5-avgpool-conv16k5p0-avgpool-fc120-fc84-fc10",
}


def parse_arch(text):
    """gpu-cnn's --arch grammar (model::Arch::parse) on MNIST's 1x28x28: a preset or layers joined by '-': convC[kK][pP]
    (a KxK convolution, K = 3 unless given, padding P = K // 2 unless given, then ReLU), pool (2x2 max), avgpool (2x2
    average), fcN (ReLU after all but the last). Returns [("conv", out, k, pad) | ("pool", "max"|"avg") | ("fc", n)]."""
    layers = []
    for part in PRESETS.get(text, text).split("-"):
        if part in ("pool", "avgpool"):
            layers.append(("pool", "max" if part == "pool" else "avg"))
        elif part.startswith("conv"):
            rest, _, pad = part[4:].partition("p")
            out, _, k = rest.partition("k")
            k = int(k) if k else 3
            layers.append(("conv", int(out), k, int(pad) if pad else k // 2))
        elif part.startswith("fc"):
            layers.append(("fc", int(part[2:])))
        else:
            raise ValueError(f"`{part}` is not a layer (convC[kK][pP], pool, avgpool or fcN)")
    return layers


class Net(nn.Module):
    """The network of an --arch description, with gpu-cnn's parameter names (conv1, conv2, ..., fc1, fc2, ...):
    nn.Conv2d(cin, C, K, padding=P) + ReLU, nn.MaxPool2d(2) / nn.AvgPool2d(2), flatten, nn.Linear + ReLU but the last.
    Modules are made in layer order, so PyTorch's default initialization draws them as before for the study's."""

    def __init__(self, arch="study", channels=1, side=28):
        super().__init__()
        self.steps = []
        c, h, w, flat = channels, side, side, None
        convs = fcs = 0
        layers = parse_arch(arch)
        for i, layer in enumerate(layers):
            if layer[0] == "conv":
                _, out, k, pad = layer
                convs += 1
                setattr(self, f"conv{convs}", nn.Conv2d(c, out, k, padding=pad))
                self.steps.append(("conv", f"conv{convs}"))
                c, h, w = out, h + 2 * pad - k + 1, w + 2 * pad - k + 1
            elif layer[0] == "pool":
                self.steps.append(("pool", layer[1]))
                h, w = h // 2, w // 2
            else:
                fcs += 1
                inp = flat if flat is not None else c * h * w
                setattr(self, f"fc{fcs}", nn.Linear(inp, layer[1]))
                self.steps.append(("fc", f"fc{fcs}", i + 1 < len(layers)))
                flat = layer[1]

    def forward(self, x):
        for step in self.steps:
            if step[0] == "conv":
                x = F.relu(getattr(self, step[1])(x))
            elif step[0] == "pool":
                x = F.max_pool2d(x, 2) if step[1] == "max" else F.avg_pool2d(x, 2)
            else:
                x = getattr(self, step[1])(x.flatten(1))
                if step[2]:
                    x = F.relu(x)
        return x


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


@torch.no_grad()
def evaluate(model, x, y, batch=1000):
    model.eval()
    loss, correct = 0.0, 0
    for i in range(0, len(x), batch):
        logits = model(x[i:i + batch])
        loss += F.cross_entropy(logits, y[i:i + batch], reduction="sum").item()
        correct += (logits.argmax(1) == y[i:i + batch]).sum().item()
    return {"accuracy": correct / len(x), "loss": loss / len(x)}


FORMS = ["eager", "eager-f32", "graph", "graph-f32", "compile"]


def set_tf32(form, defaults):
    """PyTorch's TF32 settings for a form: its defaults, or off everywhere for the -f32 forms."""
    matmul, cudnn = (False, False) if form.endswith("-f32") else defaults
    torch.backends.cuda.matmul.allow_tf32 = matmul
    torch.backends.cudnn.allow_tf32 = cudnn
    return {"matmul": matmul, "cudnn": cudnn}


def timed(run, images, repeats, seconds, device):
    """Images/s of `run` (one call: `images` images): a warm-up, then `repeats` samples of at least `seconds` each."""
    run()
    sync(device)
    rates = []
    for _ in range(repeats):
        calls, t0 = 0, time.perf_counter()
        while True:
            run()
            calls += 1
            if calls % 8 == 0 or device.type != "cuda":
                sync(device)
                if time.perf_counter() - t0 >= seconds:
                    break
        rates.append(calls * images / (time.perf_counter() - t0))
    rates.sort()
    return {"median": rates[len(rates) // 2], "min": rates[0], "max": rates[-1], "samples": rates}


def training_step(form, model, opt, x, y, batch, gen, device):
    """One call = one training step of `batch` images drawn at random, in `form` (the graph forms capture it once)."""
    idx = torch.randint(0, len(x), (batch,), generator=gen).to(device)

    def eager():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x.index_select(0, idx)), y.index_select(0, idx)).backward()
        opt.step()

    if not form.startswith("graph"):
        return eager
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up on a side stream, as the capture recipe asks (creates momentum buffers)
        for _ in range(3):
            eager()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    opt.zero_grad(set_to_none=True)
    with torch.cuda.graph(graph):
        F.cross_entropy(model(x.index_select(0, idx)), y.index_select(0, idx)).backward()
        opt.step()
    return graph.replay


def inference_pass(form, model, x, device, chunk=1000):
    """One call = a forward pass over all of `x` in chunks of `chunk`, in `form`."""
    model.eval()
    if not form.startswith("graph"):
        def run():
            with torch.no_grad():
                for i in range(0, len(x), chunk):
                    model(x[i:i + chunk])
        return run
    static = x[:chunk].clone()
    with torch.no_grad():
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                model(static)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            model(static)

    def replay():
        for i in range(0, len(x) - len(x) % chunk, chunk):
            static.copy_(x[i:i + chunk])
            graph.replay()
    return replay


def measure_forms(a, device, x_train, y_train, x_test):
    forms = FORMS if a.forms == "all" else a.forms.split(",")
    unknown = [f for f in forms if f not in FORMS]
    if unknown:
        raise SystemExit(f"--forms: {', '.join(unknown)} not among {', '.join(FORMS)} (or all)")
    defaults = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    out = []
    for form in forms:
        row = {"form": form}
        try:
            if form.startswith("graph") and device.type != "cuda":
                raise RuntimeError("CUDA graphs need --device cuda")
            row["tf32"] = set_tf32(form, defaults)
            torch.manual_seed(a.seed)
            model = Net(a.arch, x_train.shape[1], x_train.shape[2]).to(device)
            run_model = torch.compile(model) if form == "compile" else model
            row["training"] = []
            for batch in [int(b) for b in a.batch_sizes.split(",")]:
                model.train()
                opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=a.momentum)
                gen = torch.Generator().manual_seed(a.seed)
                step = training_step(form, run_model, opt, x_train, y_train, batch, gen, device)
                rate = timed(step, batch, a.repeats, a.seconds, device)
                row["training"].append({"batch_size": batch, "images_per_sec": rate})
                print(f"{form}: training at batch {batch}: {rate['median']:.0f} images/s "
                      f"[{rate['min']:.0f}-{rate['max']:.0f}]", file=sys.stderr)
            run = inference_pass(form, run_model, x_test, device)
            rate = timed(run, len(x_test) - len(x_test) % 1000, a.repeats, a.seconds, device)
            row["inference"] = {"chunk": 1000, "images_per_sec": rate}
            print(f"{form}: inference: {rate['median']:.0f} images/s", file=sys.stderr)
        except Exception as e:  # a form that cannot run here (no CUDA, no compiler) is recorded, not fatal
            row["error"] = f"{type(e).__name__}: {e}"
            print(f"{form}: not measured: {row['error']}", file=sys.stderr)
        out.append(row)
    set_tf32("eager", defaults)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default=os.path.join(HERE, "..", "..", "data", "mnist"))
    p.add_argument("--arch", default="study", help="a preset (study, tiny, wide, lenet5) or layers, as gpu-cnn's --arch")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--eval", metavar="PATH", help="evaluate this safetensors checkpoint instead of training")
    p.add_argument("--save", metavar="PATH", help="save the trained weights here (safetensors, gpu-cnn's names)")
    p.add_argument("--json-out", metavar="PATH")
    p.add_argument("--forms", metavar="LIST",
                   help="measure throughput in these forms (eager, eager-f32, graph, graph-f32, compile, or all) "
                        "instead of training epochs")
    p.add_argument("--batch-sizes", default="16,64,256,1024", help="with --forms: training batch sizes")
    p.add_argument("--repeats", type=int, default=5, help="with --forms: timed samples per measurement (median)")
    p.add_argument("--seconds", type=float, default=1.0, help="with --forms: the least time one sample runs")
    a = p.parse_args()

    torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    x_train, y_train = load_split(a.data_dir, "train", device)
    x_test, y_test = load_split(a.data_dir, "t10k", device)
    mean, std = normalization(x_train)
    x_train, x_test = normalized(x_train, mean, std, device), normalized(x_test, mean, std, device)
    torch.manual_seed(a.seed)
    model = Net(a.arch, x_train.shape[1], x_train.shape[2]).to(device)
    result = {"script": "torch_cnn.py", "torch": torch.__version__, "device": str(device), "threads": a.threads,
              "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None, "args": vars(a)}

    if a.forms:
        result["forms"] = measure_forms(a, device, x_train, y_train, x_test)
        line = json.dumps(result)
        if a.json_out:
            with open(a.json_out, "w") as f:
                f.write(line + "\n")
        print(line)
        return
    if a.eval:
        from safetensors.torch import load_file
        model.load_state_dict(load_file(a.eval), strict=True)
        result["eval"] = evaluate(model, x_test, y_test)
    else:
        result["forward_only"] = evaluate(model, x_test, y_test)
        opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=a.momentum)
        gen = torch.Generator().manual_seed(a.seed)
        epochs = []
        for epoch in range(1, a.epochs + 1):
            model.train()
            order = torch.randperm(len(x_train), generator=gen).to(device)
            loss_sum = torch.zeros((), device=device)
            sync(device)
            t0 = time.perf_counter()
            for i in range(0, len(x_train), a.batch_size):
                idx = order[i:i + a.batch_size]
                opt.zero_grad(set_to_none=True)
                loss = F.cross_entropy(model(x_train[idx]), y_train[idx])
                loss.backward()
                opt.step()
                loss_sum += loss.detach() * len(idx)
            sync(device)
            seconds = time.perf_counter() - t0
            test = evaluate(model, x_test, y_test)
            row = {"epoch": epoch, "train_loss": loss_sum.item() / len(x_train), "test_loss": test["loss"],
                   "test_accuracy": test["accuracy"], "seconds": seconds, "images_per_sec": len(x_train) / seconds}
            epochs.append(row)
            print(f"epoch {epoch}: train loss {row['train_loss']:.4f}, test loss {test['loss']:.4f}, test accuracy "
                  f"{100 * test['accuracy']:.2f} %, {seconds:.2f} s, {row['images_per_sec']:.0f} images/s", file=sys.stderr)
        result["epochs"] = epochs
        if a.save:
            from safetensors.torch import save_file
            weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
            save_file(weights, a.save, metadata={"format": "pt", "torch_arch": a.arch})
            result["saved"] = a.save

    # Inference throughput over the test set, batches of 1000, best of 3 after a warm-up.
    with torch.no_grad():
        model.eval()
        model(x_test[:1000])
        times = []
        for _ in range(3):
            sync(device)
            t0 = time.perf_counter()
            for i in range(0, len(x_test), 1000):
                model(x_test[i:i + 1000])
            sync(device)
            times.append(time.perf_counter() - t0)
    result["inference_images_per_sec"] = len(x_test) / min(times)
    print(f"inference: {result['inference_images_per_sec']:.0f} images/s (best of 3)", file=sys.stderr)
    line = json.dumps(result)
    if a.json_out:
        with open(a.json_out, "w") as f:
            f.write(line + "\n")
    print(line)


if __name__ == "__main__":
    main()
