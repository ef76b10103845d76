"""The tutorial's PyTorch XOR (Part 10), reproduced for propscope's tests: prints the trained predictions.

`python xor_torch.py --seed S --epochs N` seeds torch, builds Linear(2, 4) → sigmoid → Linear(4, 1) → sigmoid
(layers created in that order, so the initial weights are the tutorial's), and trains with Adam (lr 0.1) on
MSELoss over the XOR table. It prints one prediction per line with 10 decimals.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn


def trained_predictions(seed: int, epochs: int) -> torch.Tensor:
    torch.manual_seed(seed)
    x = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    target = torch.tensor([[0.0], [1.0], [1.0], [0.0]])
    hidden, output = nn.Linear(2, 4), nn.Linear(4, 1)

    def model(inputs: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(output(torch.sigmoid(hidden(inputs))))

    optimizer = torch.optim.Adam([*hidden.parameters(), *output.parameters()], lr=0.1)
    loss_fn = nn.MSELoss()
    for _ in range(epochs):
        optimizer.zero_grad()
        loss_fn(model(x), target).backward()
        optimizer.step()
    with torch.no_grad():
        return model(x)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=1000)
    args = parser.parse_args()
    for value in trained_predictions(args.seed, args.epochs).reshape(-1).tolist():
        print(f"{value:.10f}")
