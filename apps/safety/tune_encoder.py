"""Fine-tuning MiniLM's top layers for the input classifier (used by `apps.safety.train_classifier`).

Frozen sentence embeddings place a message by its topic: "how do I spot a card skimmer" and "how do I
set up a card skimmer" sit close together, and a linear head on them cannot separate intent without
also blocking the awareness question. Training the encoder's top `k` layers with the classifier's
loss makes intent part of the representation. On the corpus's grouped out-of-fold data, at a 3%
benign false-positive budget, this raised the harmful examples caught from 61% (linear head on the
frozen encoder) to 69% with the top layer tuned and 81% with the top two (LoRA rank 8 on the top two,
`lora_rank`: 85%, but its scores saturate near 1, thresholds 0.97-0.99, and it blocked more of the
evaluation's benign questions); injection
81% -> 99%, off-scope 72% -> 81%. The shipped head (top two layers, 2% budget) catches 75% / 97% / 73%
out of fold where the frozen encoder's head caught 51% / 67% / 58% at the same budget.

Method: the frozen bottom `6 - k` layers run once for every example (float32 weights) and the hidden
states entering layer `6 - k` are kept; only the top `k` layers (dropout 0.1 in training), the mean
pooling and a linear head are trained, the head starting from the linear probe on the frozen float32
embeddings of the same training set. Class-balanced cross-entropy, AdamW (encoder 5e-5 with weight
decay 0.01, head 1e-3), batches of 32 messages of similar length, a linear decay to zero over 2 epochs,
fixed seeds. At inference the tuned layers are a `embeddings.Branch`: the shared layers run once and
the base top (pack scope, nearest-example signal) and the tuned top (the head) both run from there.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

HIDDEN = 384
HEADS = 12
EPS = 1e-12
LINEARS = ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
           "intermediate.dense", "output.dense")
NORMS = ("attention.output.LayerNorm", "output.LayerNorm")


@dataclass(frozen=True)
class TuneConfig:
    """Hyperparameters of one fine-tuning run."""

    top_layers: int = 2
    epochs: int = 2
    batch: int = 32
    lr: float = 5e-5
    head_lr: float = 1e-3
    weight_decay: float = 0.01
    dropout: float = 0.1
    lora_rank: int = 0         # > 0: train low-rank adapters on the six linear maps instead of the layers
    lora_lr: float = 1e-3


class LoRALinear(torch.nn.Module):
    """A frozen linear map plus a trainable low-rank delta (B A) * alpha / r, with alpha = 2r; B starts
    at zero, so training starts from the frozen layer."""

    def __init__(self, base: torch.nn.Linear, rank: int) -> None:
        super().__init__()
        self.base = base
        for parameter in base.parameters():
            parameter.requires_grad_(False)
        self.lora_a = torch.nn.Parameter(torch.randn(rank, base.in_features) / math.sqrt(base.in_features))
        self.lora_b = torch.nn.Parameter(torch.zeros(base.out_features, rank))
        self.scale = 2.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (x @ self.lora_a.T @ self.lora_b.T) * self.scale

    @property
    def weight(self) -> torch.Tensor:
        return self.base.weight + (self.lora_b @ self.lora_a) * self.scale

    @property
    def bias(self) -> torch.Tensor:
        return self.base.bias


class Layer(torch.nn.Module):
    """One post-LayerNorm BERT layer, computed as `MiniLM.layer` computes it, with dropout in training."""

    def __init__(self, weights: dict[str, torch.Tensor], index: int, dropout: float) -> None:
        super().__init__()
        prefix = f"encoder.layer.{index}"
        self.linears = torch.nn.ModuleDict()
        for key in LINEARS:
            weight = weights[f"{prefix}.{key}.weight"]
            linear = torch.nn.Linear(weight.shape[1], weight.shape[0])
            linear.weight.data.copy_(weight)
            linear.bias.data.copy_(weights[f"{prefix}.{key}.bias"])
            self.linears[key.replace(".", "_")] = linear
        self.norms = torch.nn.ModuleDict()
        for key in NORMS:
            norm = torch.nn.LayerNorm(HIDDEN, eps=EPS)
            norm.weight.data.copy_(weights[f"{prefix}.{key}.weight"])
            norm.bias.data.copy_(weights[f"{prefix}.{key}.bias"])
            self.norms[key.replace(".", "_")] = norm
        self.prefix = prefix
        self.dropout = dropout

    def _lin(self, key: str, x: torch.Tensor) -> torch.Tensor:
        return self.linears[key.replace(".", "_")](x)

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        bsz, seq, _ = x.shape
        head_dim = HIDDEN // HEADS

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(bsz, seq, HEADS, head_dim).transpose(1, 2)

        drop = self.dropout if self.training else 0.0
        attended = F.scaled_dot_product_attention(
            split(self._lin(LINEARS[0], x)), split(self._lin(LINEARS[1], x)), split(self._lin(LINEARS[2], x)),
            attn_mask=bias, dropout_p=drop, scale=1.0 / math.sqrt(head_dim))
        attended = attended.transpose(1, 2).reshape(bsz, seq, HIDDEN)
        x = self.norms["attention_output_LayerNorm"](x + F.dropout(self._lin(LINEARS[3], attended), drop, self.training))
        inner = F.gelu(self._lin(LINEARS[4], x))
        return self.norms["output_LayerNorm"](x + F.dropout(self._lin(LINEARS[5], inner), drop, self.training))

    def add_lora(self, rank: int) -> None:
        """Freeze the layer and put low-rank adapters on its six linear maps."""
        for parameter in self.parameters():
            parameter.requires_grad_(False)
        for name in list(self.linears):
            self.linears[name] = LoRALinear(self.linears[name], rank)

    def state(self) -> dict[str, torch.Tensor]:
        """The layer's weights under the checkpoint's (safetensors) names, adapters merged."""
        out = {}
        for key in LINEARS:
            linear = self.linears[key.replace(".", "_")]
            out[f"{self.prefix}.{key}.weight"] = linear.weight.detach().clone()
            out[f"{self.prefix}.{key}.bias"] = linear.bias.detach().clone()
        for key in NORMS:
            norm = self.norms[key.replace(".", "_")]
            out[f"{self.prefix}.{key}.weight"] = norm.weight.detach().clone()
            out[f"{self.prefix}.{key}.bias"] = norm.bias.detach().clone()
        return out


def mask_bias(mask: torch.Tensor) -> torch.Tensor | None:
    """The additive attention mask for padded keys, or None without padding."""
    if bool(mask.all()):
        return None
    return (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min


def pool(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.unsqueeze(-1).float()
    return F.normalize((x * weights).sum(1) / weights.sum(1).clamp(min=1e-9), p=2, dim=1)


def pad(states: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    seq = max(s.shape[0] for s in states)
    x = torch.zeros(len(states), seq, HIDDEN)
    mask = torch.zeros(len(states), seq, dtype=torch.long)
    for row, state in enumerate(states):
        x[row, : state.shape[0]] = state
        mask[row, : state.shape[0]] = 1
    return x, mask


def length_batches(indices: np.ndarray, lengths: np.ndarray, size: int,
                   rng: random.Random | None) -> list[np.ndarray]:
    """Batches of messages of similar length (little padding); shuffled when `rng` is given."""
    keys = [(lengths[i], rng.random() if rng else 0.0) for i in indices]
    order = indices[np.array(sorted(range(len(indices)), key=lambda j: keys[j]), dtype=int)]
    batches = [order[s: s + size] for s in range(0, len(order), size)]
    if rng:
        rng.shuffle(batches)
    return batches


@dataclass
class Cache:
    """Hidden states entering the first tuned layer (one (tokens, 384) tensor per text) and the
    frozen float32 encoder's pooled embeddings."""

    states: list[torch.Tensor]
    pooled: torch.Tensor
    lengths: np.ndarray
    first_layer: int


@torch.no_grad()
def build_cache(texts: list[str], weights: dict[str, torch.Tensor], tokenizer, layers: int,
                first_layer: int) -> Cache:
    """Run the frozen float32 encoder over `texts` once (see `Cache`)."""
    tokenizer.no_padding()
    encoded = tokenizer.encode_batch(texts)
    lengths = np.array([len(e.ids) for e in encoded])
    frozen = [Layer(weights, i, 0.0).eval() for i in range(layers)]
    states: list[torch.Tensor] = [torch.empty(0)] * len(texts)
    pooled = torch.zeros(len(texts), HIDDEN)
    for batch in length_batches(np.arange(len(texts)), lengths, 64, None):
        seq = int(lengths[batch].max())
        ids = torch.zeros(len(batch), seq, dtype=torch.long)
        mask = torch.zeros(len(batch), seq, dtype=torch.long)
        for row, i in enumerate(batch):
            ids[row, : lengths[i]] = torch.tensor(encoded[i].ids)
            mask[row, : lengths[i]] = 1
        x = (weights["embeddings.word_embeddings.weight"][ids]
             + weights["embeddings.position_embeddings.weight"][torch.arange(seq)][None]
             + weights["embeddings.token_type_embeddings.weight"][torch.zeros_like(ids)])
        x = F.layer_norm(x, (HIDDEN,), weights["embeddings.LayerNorm.weight"], weights["embeddings.LayerNorm.bias"], EPS)
        bias = mask_bias(mask)
        for i in range(layers):
            if i == first_layer:
                for row, j in enumerate(batch):
                    states[j] = x[row, : lengths[j]].clone()
            x = frozen[i](x, bias)
        pooled[torch.from_numpy(batch)] = pool(x, mask)
    return Cache(states, pooled, lengths, first_layer)


class Model(torch.nn.Module):
    """The tuned top layers, pooling and the linear head."""

    def __init__(self, weights: dict[str, torch.Tensor], first_layer: int, layers: int, classes: int,
                 head: tuple[np.ndarray, np.ndarray], dropout: float, lora_rank: int = 0) -> None:
        super().__init__()
        self.layers = torch.nn.ModuleList([Layer(weights, i, dropout) for i in range(first_layer, layers)])
        if lora_rank:
            for layer in self.layers:
                layer.add_lora(lora_rank)
        self.head = torch.nn.Linear(HIDDEN, classes)
        self.head.weight.data.copy_(torch.from_numpy(np.asarray(head[0])))
        self.head.bias.data.copy_(torch.from_numpy(np.asarray(head[1])))

    def embed(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        bias = mask_bias(mask)
        for layer in self.layers:
            x = layer(x, bias)
        return pool(x, mask)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x, mask))

    def branch_weights(self) -> dict[str, torch.Tensor]:
        """The tuned layers' full weights (adapters merged), under the checkpoint's names."""
        out: dict[str, torch.Tensor] = {}
        for layer in self.layers:
            out.update(layer.state())
        return out

    def adapters(self) -> dict[str, torch.Tensor]:
        """With LoRA: only the adapters (`<linear>.lora_a` / `.lora_b`), all that differs from the base
        encoder; `merge_adapters` rebuilds the layers from them. Empty without LoRA."""
        out: dict[str, torch.Tensor] = {}
        for layer in self.layers:
            for key in LINEARS:
                linear = layer.linears[key.replace(".", "_")]
                if isinstance(linear, LoRALinear):
                    out[f"{layer.prefix}.{key}.lora_a"] = linear.lora_a.detach().clone()
                    out[f"{layer.prefix}.{key}.lora_b"] = (linear.lora_b * linear.scale).detach().clone()
        return out


def merge_adapters(base: dict[str, torch.Tensor], stored: dict[str, torch.Tensor], first_layer: int) -> dict[str, torch.Tensor]:
    """The weights of layers `first_layer`.. from the base encoder's plus what `stored` holds: full
    tensors replace the base's, `lora_a` / `lora_b` pairs (scale folded into b) add `b @ a`."""
    merged = {k: v.float().clone() for k, v in base.items()
              if k.startswith("encoder.layer.") and int(k.split(".")[2]) >= first_layer}
    for key, value in stored.items():
        if key.endswith(".lora_a"):
            name = key.removesuffix(".lora_a")
            merged[f"{name}.weight"] += stored[f"{name}.lora_b"].float() @ value.float()
        elif not key.endswith(".lora_b"):
            merged[key] = value.float()
    return merged


def fit(cache: Cache, labels: torch.Tensor, train_idx: np.ndarray, weights: dict[str, torch.Tensor],
        config: TuneConfig, *, layers: int, seed: int, class_weight: torch.Tensor,
        probe: tuple[np.ndarray, np.ndarray], progress=None) -> Model:
    """Fine-tune the top layers and the head on `train_idx` (see the module docstring)."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    model = Model(weights, cache.first_layer, layers, int(class_weight.shape[0]), probe, config.dropout,
                  config.lora_rank)
    encoder = [p for p in model.layers.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW([
        {"params": encoder, "lr": config.lora_lr if config.lora_rank else config.lr,
         "weight_decay": 0.0 if config.lora_rank else config.weight_decay},
        {"params": model.head.parameters(), "lr": config.head_lr, "weight_decay": 0.0}])
    total = math.ceil(len(train_idx) / config.batch) * config.epochs
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: max(0.0, 1.0 - step / total))
    for _ in range(config.epochs):
        model.train()
        for batch in length_batches(train_idx, cache.lengths, config.batch, rng):
            x, mask = pad([cache.states[i] for i in batch])
            loss = F.cross_entropy(model(x, mask), labels[torch.from_numpy(batch)], weight=class_weight)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            if progress is not None:
                progress(float(loss.detach()))
    model.eval()
    return model


@torch.no_grad()
def predict(model: Model, cache: Cache, idx: np.ndarray) -> np.ndarray:
    """Class probabilities of the examples `idx` (float32 path)."""
    model.eval()
    out = np.zeros((len(idx), model.head.out_features), dtype=np.float32)
    position = {int(i): row for row, i in enumerate(idx)}
    for batch in length_batches(idx, cache.lengths, 128, None):
        x, mask = pad([cache.states[i] for i in batch])
        out[[position[int(i)] for i in batch]] = torch.softmax(model(x, mask), dim=1).numpy()
    return out
