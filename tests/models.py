"""Small but real architectures for the tests: a ResNet-style CNN with BatchNorm, a GPT-style
transformer with tied embeddings, an LSTM language model, a ViT with a patch-embedding
conv, class token and position embedding, a BERT-style encoder (``encoder.layer.N``) with an
MLM or a classification head, a DCGAN generator and discriminator, and a PPO policy MLP."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class TinyResNet(nn.Module):
    """ResNet layout: stem, layer1..layer3 of two blocks each, pooled linear head."""

    def __init__(self, channels: int = 1, classes: int = 10, width: int = 8) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.layer1 = nn.Sequential(BasicBlock(width, width), BasicBlock(width, width))
        self.layer2 = nn.Sequential(
            BasicBlock(width, 2 * width, 2), BasicBlock(2 * width, 2 * width)
        )
        self.layer3 = nn.Sequential(
            BasicBlock(2 * width, 4 * width, 2), BasicBlock(4 * width, 4 * width)
        )
        self.fc = nn.Linear(4 * width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class CausalSelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=2)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(b, t, d))


class GPTBlock(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim)
        self.attn = CausalSelfAttention(dim, heads)
        self.ln_2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class TinyGPT(nn.Module):
    """GPT-2 layout: transformer.{wte, wpe, h.N, ln_f}, lm_head tied to wte."""

    def __init__(
        self, vocab: int = 50, block: int = 16, dim: int = 32, layers: int = 3, heads: int = 4
    ) -> None:
        super().__init__()
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(vocab, dim),
                wpe=nn.Embedding(block, dim),
                h=nn.ModuleList(GPTBlock(dim, heads) for _ in range(layers)),
                ln_f=nn.LayerNorm(dim),
            )
        )
        self.lm_head = nn.Linear(dim, vocab, bias=False)
        self.lm_head.weight = self.transformer["wte"].weight  # tied

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(idx.shape[1], device=idx.device)
        x = self.transformer["wte"](idx) + self.transformer["wpe"](pos)
        for blk in self.transformer["h"]:
            x = blk(x)
        return self.lm_head(self.transformer["ln_f"](x))


class LSTMLanguageModel(nn.Module):
    def __init__(self, vocab: int = 40, dim: int = 16, hidden: int = 32) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.lstm = nn.LSTM(dim, hidden, num_layers=2, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(self.embed(idx))
        return self.head(out)


class ViTBlock(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class TinyViT(nn.Module):
    """ViT layout: patch_embed conv, cls_token, pos_embed, blocks.N, norm, head."""

    def __init__(
        self,
        image: int = 16,
        patch: int = 4,
        dim: int = 32,
        depth: int = 4,
        heads: int = 4,
        classes: int = 10,
    ) -> None:
        super().__init__()
        self.patch_embed = nn.Conv2d(3, dim, patch, patch)
        n = (image // patch) ** 2
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, n + 1, dim) * 0.02)
        self.blocks = nn.ModuleList(ViTBlock(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.norm(x)[:, 0])


class BertSelfAttention(nn.Module):
    """Separate query/key/value projections and an explicit softmax over the tokens."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        b, t, d = x.shape
        h = self.heads

        def split(z: torch.Tensor) -> torch.Tensor:
            return z.view(b, t, h, d // h).transpose(1, 2)

        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        scores = q @ k.transpose(-1, -2) / (d // h) ** 0.5
        if mask is not None:
            scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
        probs = torch.softmax(scores, dim=-1)
        return (probs @ v).transpose(1, 2).reshape(b, t, d)


class BertLayer(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.attention = nn.ModuleDict(
            dict(
                self=BertSelfAttention(dim, heads),
                output=nn.ModuleDict(dict(dense=nn.Linear(dim, dim), LayerNorm=nn.LayerNorm(dim))),
            )
        )
        self.intermediate = nn.Linear(dim, 4 * dim)
        self.output = nn.Linear(4 * dim, dim)
        self.output_norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        out = self.attention["output"]
        a = out["dense"](self.attention["self"](x, mask))
        x = out["LayerNorm"](x + a)
        return self.output_norm(x + self.output(F.gelu(self.intermediate(x))))


class BertEmbeddings(nn.Module):
    def __init__(self, vocab: int, positions: int, dim: int) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab, dim)
        self.position_embeddings = nn.Embedding(positions, dim)
        self.token_type_embeddings = nn.Embedding(2, dim)
        self.LayerNorm = nn.LayerNorm(dim)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(idx.shape[1], device=idx.device)
        x = self.word_embeddings(idx) + self.position_embeddings(pos)
        return self.LayerNorm(x + self.token_type_embeddings(torch.zeros_like(idx)))


class TinyBert(nn.Module):
    """BERT layout: embeddings, encoder.layer.N, pooler; an MLM head tied to the word
    embeddings (``classes=None``) or a classifier on the pooled first token."""

    def __init__(
        self,
        vocab: int = 60,
        positions: int = 16,
        dim: int = 32,
        layers: int = 3,
        heads: int = 4,
        classes: int | None = None,
    ) -> None:
        super().__init__()
        self.embeddings = BertEmbeddings(vocab, positions, dim)
        self.encoder = nn.Module()
        self.encoder.layer = nn.ModuleList(BertLayer(dim, heads) for _ in range(layers))
        self.pooler = nn.Linear(dim, dim)
        self.classifier: nn.Module | None = None
        self.mlm: nn.Linear | None = None
        if classes is None:
            self.mlm = nn.Linear(dim, vocab)
            self.mlm.weight = self.embeddings.word_embeddings.weight  # tied
        else:
            self.classifier = nn.Sequential(nn.Dropout(0.1), nn.Linear(dim, classes))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.embeddings(idx)
        for layer in self.encoder.layer:  # type: ignore[union-attr]
            x = layer(x)
        if self.classifier is None:
            assert self.mlm is not None
            return self.mlm(x)
        return self.classifier(torch.tanh(self.pooler(x[:, 0])))


class DCGANGenerator(nn.Module):
    """DCGAN generator: transposed convolutions with BatchNorm and ReLU, tanh output."""

    def __init__(self, latent: int = 16, width: int = 8, channels: int = 3) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.ConvTranspose2d(latent, 4 * width, 4, 1, 0, bias=False),
            nn.BatchNorm2d(4 * width),
            nn.ReLU(True),
            nn.ConvTranspose2d(4 * width, 2 * width, 4, 2, 1, bias=False),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(True),
            nn.ConvTranspose2d(2 * width, channels, 4, 2, 1, bias=False),
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class DCGANDiscriminator(nn.Module):
    """DCGAN discriminator: strided convolutions, BatchNorm, LeakyReLU, a logit."""

    def __init__(self, width: int = 8, channels: int = 3) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, width, 4, 2, 1, bias=False),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(width, 2 * width, 4, 2, 1, bias=False),
            nn.BatchNorm2d(2 * width),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(2 * width, 1, 4, 1, 0, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten(1)


class PPOPolicy(nn.Module):
    """PPO actor-critic MLP: two tanh layers of 64, a policy head and a value head."""

    def __init__(self, obs: int = 8, actions: int = 4, hidden: int = 64) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(obs, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh()
        )
        self.policy = nn.Linear(hidden, actions)
        self.value = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x)
        return self.policy(h), self.value(h)


# --------------------------------------------------------------------------------------------
# The families of today's workloads; each has demo_loss(), a loss on a random input, so a
# recipe built for it can take a step.
# --------------------------------------------------------------------------------------------


class TinyUNet(nn.Module):
    """DDPM-style denoiser: GroupNorm conv blocks, a self-attention block at the bottom, a
    transposed-conv up-sampling and a time embedding."""

    def __init__(self, ch: int = 16) -> None:
        super().__init__()
        self.inp = nn.Conv2d(3, ch, 3, padding=1)
        self.down = nn.Sequential(
            nn.GroupNorm(4, ch), nn.SiLU(), nn.Conv2d(ch, 2 * ch, 3, stride=2, padding=1)
        )
        self.time = nn.Sequential(nn.Linear(1, 2 * ch), nn.SiLU(), nn.Linear(2 * ch, 2 * ch))
        self.mid_norm = nn.GroupNorm(4, 2 * ch)
        self.attn = nn.MultiheadAttention(2 * ch, 2, batch_first=True)
        self.up = nn.ConvTranspose2d(2 * ch, ch, 4, stride=2, padding=1)
        self.out = nn.Sequential(nn.GroupNorm(4, ch), nn.SiLU(), nn.Conv2d(ch, 3, 3, padding=1))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        h = self.down(self.inp(x)) + self.time(t[:, None])[:, :, None, None]
        b, c, hh, ww = h.shape
        s = self.mid_norm(h).flatten(2).transpose(1, 2)
        h = h + self.attn(s, s, s, need_weights=False)[0].transpose(1, 2).reshape(b, c, hh, ww)
        return self.out(self.up(h))

    def demo_loss(self) -> torch.Tensor:
        x = torch.randn(2, 3, 8, 8)
        return (self(x, torch.rand(2)) - x).pow(2).mean()


class TinyDLRM(nn.Module):
    """DLRM-style recommender: sparse EmbeddingBag tables (sparse=True) and dense towers."""

    def __init__(self, rows: int = 1000, dim: int = 16, dense: int = 4) -> None:
        super().__init__()
        self.tables = nn.ModuleList(
            nn.EmbeddingBag(rows, dim, mode="sum", sparse=True) for _ in range(2)
        )
        self.bottom = nn.Sequential(nn.Linear(dense, dim), nn.ReLU())
        self.top = nn.Sequential(nn.Linear(3 * dim, 16), nn.ReLU(), nn.Linear(16, 1))

    def forward(self, dense: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        parts = [self.bottom(dense), *(t(ids[:, i]) for i, t in enumerate(self.tables))]
        return self.top(torch.cat(parts, dim=1)).squeeze(1)

    def demo_loss(self) -> torch.Tensor:
        ids = torch.randint(0, self.tables[0].num_embeddings, (8, 2, 3))
        logits = self(torch.randn(8, 4), ids)
        return F.binary_cross_entropy_with_logits(logits, torch.ones(8))


class GCNLayer(nn.Module):
    """A graph convolution: transform node features, sum them over incoming edges."""

    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__()
        self.lin = nn.Linear(d_in, d_out)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        h = self.lin(x)
        return torch.zeros_like(h).index_add_(0, edge_index[1], h[edge_index[0]]) + h


class TinyGCN(nn.Module):
    """Two-layer GCN for node classification (Kipf & Welling 2017)."""

    def __init__(self, d_in: int = 16, hidden: int = 16, classes: int = 4) -> None:
        super().__init__()
        self.conv1 = GCNLayer(d_in, hidden)
        self.conv2 = GCNLayer(hidden, classes)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        return self.conv2(F.relu(self.conv1(x, edge_index)), edge_index)

    def demo_loss(self) -> torch.Tensor:
        x, edges = torch.randn(10, 16), torch.randint(0, 10, (2, 30))
        return F.cross_entropy(self(x, edges), torch.randint(0, 4, (10,)))


class LoRALinear(nn.Module):
    """A frozen linear layer plus a trainable low-rank update B A (B starts at zero)."""

    def __init__(self, d_in: int, d_out: int, rank: int = 4) -> None:
        super().__init__()
        self.base = nn.Linear(d_in, d_out).requires_grad_(False)
        self.lora_A = nn.Linear(d_in, rank, bias=False)
        self.lora_B = nn.Linear(rank, d_out, bias=False)
        nn.init.zeros_(self.lora_B.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.lora_B(self.lora_A(x))


class TinyLoRAModel(nn.Module):
    """A frozen embedding and head around two LoRA-adapted linear blocks."""

    def __init__(self, vocab: int = 50, dim: int = 128) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, dim).requires_grad_(False)
        self.blocks = nn.ModuleList(LoRALinear(dim, dim) for _ in range(2))
        self.head = nn.Linear(dim, vocab).requires_grad_(False)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.emb(idx)
        for blk in self.blocks:
            x = x + F.gelu(blk(x))
        return self.head(x)

    def demo_loss(self) -> torch.Tensor:
        idx = torch.randint(0, 50, (2, 8))
        return F.cross_entropy(self(idx).flatten(0, 1), idx.flatten())


class TinySpeech(nn.Module):
    """wav2vec 2.0-style: a strided Conv1d feature encoder, a transformer encoder, a CTC head."""

    def __init__(self, dim: int = 32, vocab: int = 30) -> None:
        super().__init__()
        self.frontend = nn.Sequential(
            nn.Conv1d(1, dim, 10, stride=5), nn.GELU(), nn.Conv1d(dim, dim, 3, stride=2), nn.GELU()
        )
        layer = nn.TransformerEncoderLayer(dim, 4, 4 * dim, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(dim, vocab)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.frontend(wav[:, None]).transpose(1, 2)))

    def demo_loss(self) -> torch.Tensor:
        logits = self(torch.randn(2, 400))
        return F.cross_entropy(
            logits.flatten(0, 1), torch.randint(0, 30, (logits.shape[0] * logits.shape[1],))
        )


class TinySeq2Seq(nn.Module):
    """Transformer for translation: source/target embeddings, nn.Transformer, output layer."""

    def __init__(self, vocab: int = 40, dim: int = 32) -> None:
        super().__init__()
        self.src_emb = nn.Embedding(vocab, dim)
        self.tgt_emb = nn.Embedding(vocab, dim)
        self.transformer = nn.Transformer(dim, 4, 2, 2, 64, batch_first=True)
        self.head = nn.Linear(dim, vocab)

    def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        mask = nn.Transformer.generate_square_subsequent_mask(tgt.shape[1])
        h = self.transformer(self.src_emb(src), self.tgt_emb(tgt), tgt_mask=mask)
        return self.head(h)

    def demo_loss(self) -> torch.Tensor:
        src, tgt = torch.randint(0, 40, (2, 7)), torch.randint(0, 40, (2, 6))
        return F.cross_entropy(self(src, tgt).flatten(0, 1), tgt.flatten())


class TinyDETR(nn.Module):
    """DETR-style detector: a BatchNorm conv backbone, a transformer decoder over learned
    object queries, class and box heads."""

    def __init__(self, dim: int = 32, queries: int = 5, classes: int = 3) -> None:
        super().__init__()
        self.backbone = nn.Sequential(
            nn.Conv2d(3, dim, 3, stride=2, padding=1), nn.BatchNorm2d(dim), nn.ReLU()
        )
        self.queries = nn.Embedding(queries, dim)
        layer = nn.TransformerDecoderLayer(dim, 4, 2 * dim, batch_first=True)
        self.decoder = nn.TransformerDecoder(layer, 2)
        self.cls = nn.Linear(dim, classes + 1)
        self.box = nn.Linear(dim, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        memory = self.backbone(x).flatten(2).transpose(1, 2)
        q = self.queries.weight[None].expand(x.shape[0], -1, -1)
        h = self.decoder(q, memory)
        return self.cls(h), self.box(h).sigmoid()

    def demo_loss(self) -> torch.Tensor:
        logits, boxes = self(torch.randn(2, 3, 16, 16))
        return F.cross_entropy(logits.flatten(0, 1), torch.zeros(10, dtype=torch.long)) + (
            boxes.mean()
        )


class CharGRU(nn.Module):
    """A character GRU language model of ~200k parameters."""

    def __init__(self, vocab: int = 65, dim: int = 64, hidden: int = 192) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.rnn = nn.GRU(dim, hidden, num_layers=1, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(self.emb(idx))[0])

    def demo_loss(self) -> torch.Tensor:
        idx = torch.randint(0, 65, (2, 12))
        return F.cross_entropy(self(idx).flatten(0, 1), idx.flatten())


class SimCLRNet(nn.Module):
    """A ResNet-style encoder with SimCLR's 2-layer projection head."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = TinyResNet(channels=3)
        self.encoder.fc = nn.Identity()  # type: ignore[assignment]
        self.projection = nn.Sequential(nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 16))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.projection(self.encoder(x)), dim=1)

    def demo_loss(self) -> torch.Tensor:
        z = self(torch.randn(4, 3, 16, 16))
        sim = z @ z.T / 0.5
        return F.cross_entropy(sim - 1e9 * torch.eye(4), torch.tensor([1, 0, 3, 2]))
