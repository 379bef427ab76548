"""The benchmark's model factories: an MLP, a small ResNet-style CNN with BatchNorm, a small
GPT-style transformer and an LSTM language model."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["MLP", "CharGPT", "CharLSTM", "SmallResNet"]


class MLP(nn.Module):
    """``Linear -> ReLU`` hidden layers, then a linear head; flattens its input."""

    def __init__(self, inputs: int, hidden: tuple[int, ...], outputs: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = inputs
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, outputs))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.flatten(1))


class _Residual(nn.Module):
    """Two 3x3 conv-BN layers with an identity (or strided 1x1 conv-BN) shortcut."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv_a = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.norm_a = nn.BatchNorm2d(cout)
        self.conv_b = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.norm_b = nn.BatchNorm2d(cout)
        self.skip: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.skip = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: Tensor) -> Tensor:
        y = self.norm_b(self.conv_b(F.relu(self.norm_a(self.conv_a(x)))))
        return F.relu(y + self.skip(x))


class SmallResNet(nn.Module):
    """A ResNet-style CNN for 28x28 grey images: a conv-BN stem, three stages of one
    residual block each (widths ``w``, ``2w``, ``4w``; the last two halve the resolution),
    global average pooling and a linear head.

    Weights and activations use the channels-last memory format, which trains about a
    quarter faster on CPU (oneDNN's convolution backward prefers it); the results are the
    same up to float rounding.
    """

    def __init__(self, classes: int = 10, width: int = 16, channels: int = 1) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()
        )
        self.stages = nn.Sequential(
            _Residual(width, width, 1),
            _Residual(width, 2 * width, 2),
            _Residual(2 * width, 4 * width, 2),
        )
        self.head = nn.Linear(4 * width, classes)
        self.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # not in the stubs

    def forward(self, x: Tensor) -> Tensor:
        x = self.stages(self.stem(x.contiguous(memory_format=torch.channels_last)))
        return self.head(x.mean(dim=(2, 3)))


class _Block(nn.Module):
    """Pre-norm transformer block: causal multi-head self-attention, then a GELU MLP."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm_attn = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: Tensor) -> Tensor:
        b, t, d = x.shape
        qkv = self.qkv(self.norm_attn(x)).view(b, t, 3, self.heads, d // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        att = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.out(att.transpose(1, 2).reshape(b, t, d))
        return x + self.mlp(self.norm_mlp(x))


class CharGPT(nn.Module):
    """A small GPT-style character model: token and learned position embeddings,
    ``layers`` pre-norm blocks, a final LayerNorm and an output head tied to the token
    embedding; residual projections start scaled by ``1/sqrt(2 * layers)`` (GPT-2)."""

    def __init__(
        self, vocab: int, context: int = 64, dim: int = 128, layers: int = 4, heads: int = 4
    ) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim={dim} must be a multiple of heads={heads}")
        self.context = context
        self.token = nn.Embedding(vocab, dim)
        self.position = nn.Embedding(context, dim)
        self.blocks = nn.ModuleList(_Block(dim, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab, bias=False)
        self.head.weight = self.token.weight
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        for block in self.blocks:
            assert isinstance(block, _Block)
            nn.init.normal_(block.out.weight, std=0.02 / math.sqrt(2 * layers))
            mlp_out = block.mlp[2]
            assert isinstance(mlp_out, nn.Linear)
            nn.init.normal_(mlp_out.weight, std=0.02 / math.sqrt(2 * layers))

    def forward(self, idx: Tensor) -> Tensor:
        if idx.shape[1] > self.context:
            raise ValueError(f"sequence of {idx.shape[1]} exceeds the context of {self.context}")
        pos = torch.arange(idx.shape[1], device=idx.device)
        x = self.token(idx) + self.position(pos)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))


class CharLSTM(nn.Module):
    """An LSTM character model: embedding, ``layers`` LSTM layers, a linear head."""

    def __init__(self, vocab: int, dim: int = 64, hidden: int = 256, layers: int = 2) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.lstm = nn.LSTM(dim, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, idx: Tensor) -> Tensor:
        out, _ = self.lstm(self.embed(idx))
        return self.head(out)
