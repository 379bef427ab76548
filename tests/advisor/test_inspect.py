from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from optiwise import knowledge
from optiwise.advisor.inspect import FAMILIES, family_task, inspect_model
from tests import models


@pytest.mark.parametrize(
    "factory, family",
    [
        (models.TinyResNet, "vision_cnn"),
        (models.DCGANGenerator, "vision_cnn"),
        (models.DCGANDiscriminator, "vision_cnn"),
        (models.TinyGPT, "causal_transformer"),
        (models.TinyBert, "language_transformer"),
        (models.LSTMLanguageModel, "rnn"),
        (models.TinyViT, "vision_transformer"),
        (models.PPOPolicy, "mlp"),
    ],
)
def test_families_of_real_architectures(factory: type[nn.Module], family: str) -> None:
    profile = inspect_model(factory())
    assert profile.family == family
    assert profile.evidence and abs(sum(profile.shares.values()) - 1) < 1e-9


def test_census_counts_shared_parameters_once() -> None:
    gpt = models.TinyGPT()
    profile = inspect_model(gpt)
    assert profile.n_params == sum(p.numel() for p in gpt.parameters())
    # the tied head counts as embedding, the q/k/v/proj linears as attention
    wte = gpt.transformer["wte"].weight.numel() + gpt.transformer["wpe"].weight.numel()
    assert profile.shares["embedding"] == pytest.approx(wte / profile.n_params)
    attn = sum(p.numel() for blk in gpt.transformer["h"] for p in blk.attn.parameters())
    assert profile.shares["attention"] == pytest.approx(attn / profile.n_params)


def test_attention_found_by_structure_and_softmax() -> None:
    gpt = inspect_model(models.TinyGPT())  # fused qkv + scaled_dot_product_attention
    assert gpt.attention == ("transformer.h.0.attn", "transformer.h.1.attn", "transformer.h.2.attn")
    bert = inspect_model(models.TinyBert())  # query/key/value + softmax, with a mask argument
    assert bert.attention[0] == "encoder.layer.0.attention.self"
    vit = inspect_model(models.TinyViT())  # nn.MultiheadAttention
    assert len(vit.attention) == 4 and vit.patch_embedding == "patch_embed"


class _ExpandMLP(nn.Module):
    """A d -> 3d -> d MLP: shaped like a fused qkv projection but no softmax."""

    def __init__(self, d: int = 16) -> None:
        super().__init__()
        self.up = nn.Linear(d, 3 * d)
        self.down = nn.Linear(3 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.gelu(self.up(x)))


def test_attention_with_wide_mlps_is_still_a_transformer() -> None:
    layer = nn.TransformerEncoderLayer(32, 4, dim_feedforward=2048, batch_first=True)
    model = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
    profile = inspect_model(model)
    assert profile.shares["attention"] < 0.1 and profile.family == "language_transformer"


def test_a_small_attention_block_in_a_cnn_keeps_it_a_cnn() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Sequential(nn.Conv2d(3, 64, 3), nn.BatchNorm2d(64), nn.Conv2d(64, 64, 3))
            self.attn = nn.MultiheadAttention(8, 2)

    assert inspect_model(Net()).family == "vision_cnn"


def test_qkv_shapes_without_softmax_are_not_attention() -> None:
    model = nn.Sequential(_ExpandMLP(), _ExpandMLP())
    profile = inspect_model(model)
    assert profile.attention == () and profile.family == "mlp"


class _DataDependentAttention(nn.Module):
    def __init__(self, d: int = 16) -> None:
        super().__init__()
        self.q, self.k, self.v = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:  # data-dependent control flow: torch.fx cannot trace this
            x = x * 2
        a = torch.softmax(self.q(x) @ self.k(x).transpose(-1, -2), dim=-1)
        return a @ self.v(x)


def test_untraceable_attention_counts_by_structure_and_says_so() -> None:
    model = nn.Sequential(nn.Embedding(10, 16), _DataDependentAttention())
    profile = inspect_model(model)
    assert profile.attention == ("1",) and profile.family == "language_transformer"
    assert any("could not be traced" in e for e in profile.evidence)


def test_family_comes_from_structure_not_the_class_name() -> None:
    class ResNet(models.LSTMLanguageModel):  # misleading name
        pass

    assert inspect_model(ResNet()).family == "rnn"


def test_embedding_heavy_and_unknown() -> None:
    rec = nn.ModuleDict(dict(users=nn.Embedding(5000, 32), products=nn.Embedding(3000, 32)))
    rec["score"] = nn.Linear(64, 1)
    assert inspect_model(rec).family == "embedding_heavy"

    class Raw(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.randn(32, 32))

    profile = inspect_model(Raw())
    assert profile.family == "unknown" and profile.task == "general"
    assert "no known kind" in profile.evidence[-2]


def test_blocks_and_heads() -> None:
    assert inspect_model(models.TinyResNet()).n_blocks == 3
    bert = inspect_model(models.TinyBert(classes=3))
    assert bert.n_blocks == 3 and bert.head == "classifier"
    assert inspect_model(models.TinyViT()).head == "head"
    gpt = inspect_model(models.TinyGPT())
    assert gpt.head is None and any("tied" in e for e in gpt.evidence)
    lstm = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    assert inspect_model(lstm).head == "2"


def test_norm_counts_and_dict_form() -> None:
    profile = inspect_model(models.TinyResNet())
    assert profile.batch_norms == 15 and profile.layer_norms == 0
    d = profile.to_dict()
    assert d["family"] == "vision_cnn" and d["head"] == "fc" and d["n_blocks"] == 3
    assert "vision_cnn" in profile.summary() and "conv" in profile.summary()


def test_family_task_mapping_and_bad_input() -> None:
    assert {family_task(f) for f in FAMILIES} <= set(knowledge.TASKS)
    assert family_task("causal_transformer") == "causal_lm"
    assert family_task("sparse_embedding") == "recommendation"
    assert family_task("adapter") == "adapter_fine_tuning"
    with pytest.raises(ValueError, match="Unknown model family 'cnn'"):
        family_task("cnn")
    with pytest.raises(TypeError, match=r"needs an nn\.Module"):
        inspect_model([1, 2])  # type: ignore[arg-type]
    frozen = nn.Linear(3, 3).requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        inspect_model(frozen)


@pytest.mark.parametrize(
    "factory, family",
    [
        (models.TinyUNet, "diffusion_unet"),
        (models.TinyDLRM, "sparse_embedding"),
        (models.TinyGCN, "graph"),
        (models.TinyLoRAModel, "adapter"),
        (models.TinySpeech, "speech"),
        (models.TinySeq2Seq, "seq2seq_transformer"),
        (models.CharGRU, "rnn"),
    ],
)
def test_families_of_todays_architectures(factory: type[nn.Module], family: str) -> None:
    profile = inspect_model(factory())
    assert profile.family == family, profile.evidence


def test_causal_mask_found_as_buffer_tril_call_or_config() -> None:
    class MaskedAttention(nn.Module):
        """nanoGPT's older attention: q/k/v projections and a registered tril mask."""

        def __init__(self, d: int = 16, t: int = 8) -> None:
            super().__init__()
            self.q, self.k, self.v = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
            self.register_buffer("bias", torch.tril(torch.ones(t, t)).view(1, 1, t, t))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            att = self.q(x) @ self.k(x).transpose(-2, -1)
            t = x.shape[1]
            att = att.masked_fill(self.bias[0, 0, :t, :t] == 0, float("-inf"))
            return F.softmax(att, dim=-1) @ self.v(x)

    class Decoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(20, 16)
            self.attn = MaskedAttention()
            self.out = nn.Linear(16, 20)

        def forward(self, idx: torch.Tensor) -> torch.Tensor:
            return self.out(self.attn(self.emb(idx)))

    profile = inspect_model(Decoder())
    assert profile.family == "causal_transformer"
    assert any("lower-triangular" in e for e in profile.evidence)

    class Config:
        is_decoder = False
        is_encoder_decoder = False
        architectures: tuple[str, ...] = ("LlamaForCausalLM",)

    bert = models.TinyBert()
    assert inspect_model(bert).family == "language_transformer"  # no mask: an encoder
    bert.config = Config()  # type: ignore[assignment]
    assert inspect_model(bert).family == "causal_transformer"
    Config.architectures = ("T5ForConditionalGeneration",)
    Config.is_encoder_decoder = True
    assert inspect_model(bert).family == "seq2seq_transformer"


def test_lookalikes_keep_their_family() -> None:
    # GroupNorm classifier without attention or up-sampling: still a CNN.
    gn_cnn = nn.Sequential(
        nn.Conv2d(3, 16, 3), nn.GroupNorm(4, 16), nn.ReLU(), nn.Conv2d(16, 16, 3),
        nn.GroupNorm(4, 16), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10),
    )  # fmt: skip
    assert inspect_model(gn_cnn).family == "vision_cnn"
    # A frozen backbone under a full-rank trainable head is linear probing, not adapters.
    probe = models.TinyResNet()
    for name, p in probe.named_parameters():
        p.requires_grad_(name.startswith("fc"))
    assert inspect_model(probe).family != "adapter"
    # Embeddings without sparse=True are not "sparse".
    dense = models.TinyDLRM()
    for t in dense.tables:
        t.sparse = False
    assert inspect_model(dense).family == "embedding_heavy"
    # A single-input MLP that sums over an index is not a graph layer.
    assert inspect_model(models.PPOPolicy()).family == "mlp"


def test_profile_lists_sparse_tables_and_frozen_parameters() -> None:
    rec = inspect_model(models.TinyDLRM())
    assert rec.sparse_tables == ("tables.0", "tables.1")
    lora = models.TinyLoRAModel()
    profile = inspect_model(lora)
    frozen = sum(p.numel() for p in lora.parameters() if not p.requires_grad)
    assert profile.frozen_params == frozen and profile.to_dict()["frozen_params"] == frozen
