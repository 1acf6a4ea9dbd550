"""Train the shipped ``xv_digits`` model (deterministic, CPU, under a minute).

    python models/train_digits.py [-o models/xv_digits.safetensors]

Prints the held-out accuracy, which the README records.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from xvdeploy import zoo
from xvdeploy.checkpoint import save_checkpoint
from xvdeploy.data import digits_split

EPOCHS = 30
BATCH = 64
SEED = 0


def train(epochs: int = EPOCHS) -> tuple[torch.nn.Module, float]:
    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    x_train, y_train, x_test, y_test = digits_split()
    model = zoo.create("xv_digits")
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=epochs * -(-len(x_train) // BATCH))
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    gen = torch.Generator().manual_seed(SEED)
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(xt), generator=gen).split(BATCH):
            loss = torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    with torch.no_grad():
        pred = model(torch.from_numpy(x_test)).argmax(1).numpy()
    return model, float(np.mean(pred == y_test))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, default=Path(__file__).with_name("xv_digits.safetensors"))
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    args = parser.parse_args()
    start = time.perf_counter()
    model, accuracy = train(args.epochs)
    save_checkpoint(model, args.output, test_accuracy=accuracy, epochs=args.epochs, seed=SEED)
    print(f"held-out accuracy {accuracy:.4f} ({time.perf_counter() - start:.1f} s) -> {args.output}")


if __name__ == "__main__":
    main()
