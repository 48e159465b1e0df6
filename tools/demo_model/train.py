#!/usr/bin/env python3
"""Train the built-in demo model: a small Qwen3-MoE that answers arithmetic in the real Qwen3 tokenizer.

Needs torch, transformers (written against 5.17), safetensors and a CUDA GPU for training (minutes on one H100);
the export, the transformers evaluation and the goldens run on the same machine.

What it does:
  1. Renders training conversations from data.py through the Qwen3 chat template (a Python rendering of the
     template, checked equal to transformers' apply_chat_template on the first conversations) and tokenizes
     them with the real tokenizer; the loss covers the assistant turns only.
  2. Trains its own compact PyTorch implementation of the Qwen3-MoE decoder (RMSNorm, q/k-norm, RoPE, GQA,
     softmax top-k router with renormalised weights, SiLU experts, tied embeddings) with AdamW, bf16 autocast
     and fp32 master weights, plus the usual load-balancing loss so that every expert is used.
     Only the embedding rows of tokens that occur in the training data are trained; every other row is exactly
     zero (its logit is exactly 0). The loss is the full-vocabulary cross-entropy, computed exactly without
     materialising the zero logits: logsumexp over [used logits, log(V - U)].
  3. Exports the weights in the Qwen3-MoE layout, loads them into transformers' Qwen3MoeForCausalLM, checks
     that transformers' logits equal our model's (float32), and saves the checkpoint with save_pretrained
     (bf16, tied embeddings: no lm_head.weight).
  4. Reloads the saved files in float32 with transformers and answers the held-out set greedily (the reference
     answers, written beside the questions), and writes goldens for real chat prompts with the same code as
     tools/goldens/make_goldens.py.

Usage (repository root):
  python3 tools/demo_model/train.py --out OUTDIR [--steps N | --train-seconds S] [--batch B] [--stage all]
Stages: `train` (GPU, or --device cpu; --tokenizer build/segpipe where transformers is not installed) writes
OUTDIR/trained.pt; `finish` (needs transformers) exports, checks parity, answers the held-out set and writes
the goldens; `all` does both. Outputs in OUTDIR: trained.pt, train_log.jsonl (loss per 25 steps),
report.json (settings, timings, parity, held-out accuracy), and the checkpoint folder OUTDIR/qwen3-moe-demo
with its goldens/ and eval/heldout.jsonl (questions, expected answers, transformers' answers).
"""

import argparse
import json
import math
import os
import shutil
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tools", "goldens"))
import data  # noqa: E402

TOKENIZER_DIR = os.path.join(ROOT, "orchestrator", "tokenizer", "qwen3")
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
THINK_EMPTY = "<think>\n\n</think>\n\n"

# The model. vocab_size is the Qwen3 checkpoints' (151,936 rows; the tokenizer's ids end at 151,668).
CONFIG = dict(
    vocab_size=151936, hidden_size=64, num_hidden_layers=6, num_attention_heads=4, num_key_value_heads=2,
    head_dim=32, intermediate_size=256, moe_intermediate_size=128, num_experts=16, num_experts_per_tok=2,
    norm_topk_prob=True, decoder_sparse_step=1, mlp_only_layers=[], rms_norm_eps=1e-6,
    max_position_embeddings=4096, rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
    tie_word_embeddings=True, bos_token_id=151643, eos_token_id=151645, router_aux_loss_coef=0.001,
    attention_bias=False, initializer_range=0.02,
)
AUX_COEF = 0.01  # load-balancing loss weight used in training (a tiny model needs more than the config's 0.001)


# ------------------------------------------------------------------------------------------------------------
# chat rendering


def render(msgs, add_generation_prompt=False, enable_thinking=True):
    """The Qwen3 chat template for user/assistant conversations without system prompt or tools.
    Returns (text, target spans): each span is the part of an assistant turn the model must produce, from just
    after '<|im_start|>assistant\\n' through '<|im_end|>'."""
    last_query = max(i for i, m in enumerate(msgs) if m["role"] == "user")
    out, spans = [], []
    pos = 0

    def put(s):
        nonlocal pos
        out.append(s)
        pos += len(s)

    for i, m in enumerate(msgs):
        if m["role"] == "user":
            put(f"{IM_START}user\n{m['content']}{IM_END}\n")
        elif m["role"] == "assistant":
            put(f"{IM_START}assistant\n")
            start = pos
            body = (THINK_EMPTY + m["content"]) if (i > last_query and i == len(msgs) - 1) else m["content"]
            put(body + IM_END)
            spans.append((start, pos))
            put("\n")
        else:
            raise ValueError(m["role"])
    if add_generation_prompt:
        put(f"{IM_START}assistant\n")
        if not enable_thinking:
            put(THINK_EMPTY)
    return "".join(out), spans


def load_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(TOKENIZER_DIR)


class HfEncoder:
    """Batch encoding through transformers' tokenizer (the reference)."""

    def __init__(self, tok):
        self.tok = tok

    def __call__(self, texts):
        return self.tok(list(texts), add_special_tokens=False)["input_ids"]


class SegpipeEncoder:
    """Batch encoding through `segpipe tokenize --jsonl` (ids identical to Hugging Face tokenizers, which the
    project's tokenizer parity tests check): for training where transformers is not installed."""

    def __init__(self, exe):
        self.exe = exe

    def __call__(self, texts):
        import subprocess
        import tempfile

        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False, encoding="utf-8") as f:
            json.dump(list(texts), f, ensure_ascii=False)
            path = f.name
        try:
            out = subprocess.run([self.exe, "tokenize", "--tokenizer", TOKENIZER_DIR, "--file", path, "--jsonl"],
                                 check=True, capture_output=True, text=True).stdout
        finally:
            os.unlink(path)
        rows = [json.loads(l) for l in out.splitlines() if l.strip()]
        if len(rows) != len(texts):
            raise RuntimeError("segpipe tokenize returned a different number of rows")
        return rows


def check_render(tok, convs):
    for c in convs:
        ours, _ = render(c)
        ref = tok.apply_chat_template(c, tokenize=False)
        if ours != ref:
            raise RuntimeError(f"chat rendering differs from the template:\nours {ours!r}\nref  {ref!r}")
        for think in (True, False):
            ours, _ = render(c[:-1], add_generation_prompt=True, enable_thinking=think)
            ref = tok.apply_chat_template(c[:-1], tokenize=False, add_generation_prompt=True, enable_thinking=think)
            if ours != ref:
                raise RuntimeError(f"generation prompt differs:\nours {ours!r}\nref  {ref!r}")


def encode_conversations(encode, convs):
    """Token ids and a 0/1 loss mask per conversation (1 on the tokens of the assistant targets). The mask
    comes from encoding the text up to each target's start and end: both must be prefixes of the whole
    text's tokens (target boundaries fall on token boundaries), which is checked for every conversation."""
    texts, spans = zip(*(render(c) for c in convs))
    pieces = []
    for t, sp in zip(texts, spans):
        pieces.append(t)
        for a, b in sp:
            pieces += [t[:a], t[:b]]
    enc = encode(pieces)
    ids, masks = [], []
    k = 0
    for t, sp in zip(texts, spans):
        full = enc[k]
        k += 1
        m = np.zeros(len(full), dtype=np.uint8)
        for _ in sp:
            a, b = enc[k], enc[k + 1]
            k += 2
            if full[:len(a)] != a or full[:len(b)] != b:
                raise RuntimeError(f"an assistant target boundary splits a token in {t!r}")
            m[len(a):len(b)] = 1
        ids.append(np.asarray(full, dtype=np.int32))
        masks.append(m)
    return ids, masks


# ------------------------------------------------------------------------------------------------------------
# the model (our own implementation, checked against transformers at export)


class RMSNorm(torch.nn.Module):
    def __init__(self, n, eps):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(n))
        self.eps = eps

    def forward(self, x):
        dt = x.dtype
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(dt)


def rope_cos_sin(T, hd, theta, device):
    inv = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.int64, device=device).float() / hd))
    f = torch.outer(torch.arange(T, device=device).float(), inv)
    emb = torch.cat([f, f], -1)
    return emb.cos(), emb.sin()


def rotate_half(x):
    x1, x2 = x.chunk(2, -1)
    return torch.cat([-x2, x1], -1)


class Layer(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        H, nh, nkv, hd, E, I = (c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"],
                                c["num_experts"], c["moe_intermediate_size"])
        self.nh, self.nkv, self.hd, self.E, self.k = nh, nkv, hd, E, c["num_experts_per_tok"]
        self.norm_topk = c["norm_topk_prob"]
        self.sparse = False  # set by Model.set_sparse_experts
        eps = c["rms_norm_eps"]
        std = c["initializer_range"]
        self.input_layernorm = RMSNorm(H, eps)
        self.post_attention_layernorm = RMSNorm(H, eps)
        self.q_norm = RMSNorm(hd, eps)
        self.k_norm = RMSNorm(hd, eps)
        p = lambda *s: torch.nn.Parameter(torch.randn(*s) * std)  # noqa: E731
        self.q_proj, self.k_proj, self.v_proj = p(nh * hd, H), p(nkv * hd, H), p(nkv * hd, H)
        self.o_proj = p(H, nh * hd)
        self.gate = p(E, H)  # router
        self.w_gate, self.w_up, self.w_down = p(E, I, H), p(E, I, H), p(E, H, I)

    def forward(self, x, cos, sin):
        B, T, H = x.shape
        h = self.input_layernorm(x)
        q = self.q_norm(F.linear(h, self.q_proj).view(B, T, self.nh, self.hd)).transpose(1, 2)
        k = self.k_norm(F.linear(h, self.k_proj).view(B, T, self.nkv, self.hd)).transpose(1, 2)
        v = F.linear(h, self.v_proj).view(B, T, self.nkv, self.hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        rep = self.nh // self.nkv
        k = k.repeat_interleave(rep, 1)
        v = v.repeat_interleave(rep, 1)
        if hasattr(F, "scaled_dot_product_attention"):
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:  # torch < 2.0
            att = (q @ k.transpose(-1, -2)) * (self.hd ** -0.5)
            causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
            a = torch.softmax(att.masked_fill(~causal, float("-inf")), -1) @ v
        x = x + F.linear(a.transpose(1, 2).reshape(B, T, -1), self.o_proj)

        h = self.post_attention_layernorm(x).reshape(B * T, H)
        logits = F.linear(h, self.gate)
        probs = torch.softmax(logits, -1, dtype=torch.float32)
        w, sel = torch.topk(probs, self.k, -1)
        if self.norm_topk:
            w = w / w.sum(-1, keepdim=True)
        if self.sparse:
            # Each token through its k experts only (the CPU's way; the same function as below).
            N = h.shape[0]
            flat_e = sel.reshape(-1)
            order = torch.argsort(flat_e, stable=True)
            tok = torch.arange(N, device=h.device).repeat_interleave(self.k)[order]
            counts = torch.bincount(flat_e, minlength=self.E).tolist()
            parts = []
            for e, xs in enumerate(torch.split(h[tok], counts)):
                if counts[e]:
                    parts.append(F.linear(F.silu(F.linear(xs, self.w_gate[e])) * F.linear(xs, self.w_up[e]),
                                          self.w_down[e]))
            y = torch.cat(parts) * w.reshape(-1)[order].to(h.dtype)[:, None]
            out = torch.zeros_like(h).index_add(0, tok, y)
        else:
            # Every expert on every token, weighted by the (mostly zero) routing weights: few large products,
            # which a GPU runs faster than many small gathered ones.
            dense_w = torch.zeros_like(probs).scatter(1, sel, w).to(h.dtype)  # [N, E]
            g = torch.einsum("nh,eih->nei", h, self.w_gate)
            u = torch.einsum("nh,eih->nei", h, self.w_up)
            y = torch.einsum("nei,ehi->neh", F.silu(g) * u, self.w_down)
            out = torch.einsum("neh,ne->nh", y, dense_w)
        # load balancing (Switch / transformers' load_balancing_loss_func): E * sum_e f_e * P_e
        f = torch.zeros_like(probs).scatter(1, sel, 1.0).mean(0)
        aux = self.E * (f * probs.mean(0)).sum() / self.k
        return x + out.view(B, T, H), aux, logits


class Model(torch.nn.Module):
    def __init__(self, c, used_ids):
        super().__init__()
        self.c = c
        self.register_buffer("used_ids", torch.as_tensor(used_ids, dtype=torch.int64), persistent=False)
        # full id -> row in the used table (-1: a zero row)
        lut = torch.full((c["vocab_size"],), -1, dtype=torch.int64)
        lut[self.used_ids] = torch.arange(len(used_ids))
        self.register_buffer("lut", lut, persistent=False)
        self.embed = torch.nn.Parameter(torch.randn(len(used_ids), c["hidden_size"]) * c["initializer_range"])
        self.layers = torch.nn.ModuleList(Layer(c) for _ in range(c["num_hidden_layers"]))
        self.norm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])

    def set_sparse_experts(self, on):
        for layer in self.layers:
            layer.sparse = on

    def hidden(self, ids):
        rows = self.lut[ids]
        x = self.embed[rows.clamp(min=0)] * (rows >= 0).unsqueeze(-1).to(self.embed.dtype)
        T = ids.shape[1]
        cos, sin = rope_cos_sin(T, self.c["head_dim"], self.c["rope_parameters"]["rope_theta"], ids.device)
        aux = 0.0
        for layer in self.layers:
            x, a, _ = layer(x, cos, sin)
            aux = aux + a
        return self.norm(x), aux / len(self.layers)

    def used_logits(self, h):
        return F.linear(h, self.embed.to(h.dtype))

    def full_logits(self, h):
        """[.., V] logits with the zero rows' exact 0."""
        lu = self.used_logits(h).float()
        out = torch.zeros(*h.shape[:-1], self.c["vocab_size"], device=h.device, dtype=torch.float32)
        out[..., self.used_ids] = lu
        return out


def loss_fn(model, ids, mask):
    """Full-vocabulary cross-entropy on the masked positions (next-token targets), exactly: the V - U zero rows
    have logit 0, so their softmax mass is (V - U) * exp(0)."""
    h, aux = model.hidden(ids[:, :-1])
    tgt = ids[:, 1:]
    m = mask[:, 1:].bool()
    hs = h[m]
    lu = model.used_logits(hs).float()
    n_zero = model.c["vocab_size"] - model.used_ids.numel()
    lse = torch.logsumexp(torch.cat([lu, torch.full_like(lu[:, :1], math.log(n_zero))], 1), 1)
    t_rows = model.lut[tgt[m]]
    assert bool((t_rows >= 0).all()), "a target token has no embedding row"
    ce = (lse - lu.gather(1, t_rows[:, None])[:, 0]).mean()
    acc = (lu.argmax(1) == t_rows).float().mean()
    return ce, aux, acc


# ------------------------------------------------------------------------------------------------------------
# export


def export_state(model):
    """Our parameters under the transformers Qwen3-MoE names (float32, full vocabulary rows)."""
    c = model.c
    sd = {}
    E_full = torch.zeros(c["vocab_size"], c["hidden_size"])
    E_full[model.used_ids.cpu()] = model.embed.detach().float().cpu()
    sd["model.embed_tokens.weight"] = E_full
    for i, L in enumerate(model.layers):
        p = f"model.layers.{i}."
        g = lambda t: t.detach().float().cpu().contiguous()  # noqa: E731
        sd[p + "input_layernorm.weight"] = g(L.input_layernorm.weight)
        sd[p + "post_attention_layernorm.weight"] = g(L.post_attention_layernorm.weight)
        sd[p + "self_attn.q_proj.weight"] = g(L.q_proj)
        sd[p + "self_attn.k_proj.weight"] = g(L.k_proj)
        sd[p + "self_attn.v_proj.weight"] = g(L.v_proj)
        sd[p + "self_attn.o_proj.weight"] = g(L.o_proj)
        sd[p + "self_attn.q_norm.weight"] = g(L.q_norm.weight)
        sd[p + "self_attn.k_norm.weight"] = g(L.k_norm.weight)
        sd[p + "mlp.gate.weight"] = g(L.gate)
        for e in range(c["num_experts"]):
            sd[p + f"mlp.experts.{e}.gate_proj.weight"] = g(L.w_gate[e])
            sd[p + f"mlp.experts.{e}.up_proj.weight"] = g(L.w_up[e])
            sd[p + f"mlp.experts.{e}.down_proj.weight"] = g(L.w_down[e])
    sd["model.norm.weight"] = model.norm.weight.detach().float().cpu()
    return sd


def import_checkpoint(ckpt, log):
    """The inverse of export_state: our model from a checkpoint this script wrote (`local` or `finish`), so that
    `finish` can run on a model trained earlier without its trained.pt. The trained vocabulary rows are the
    non-zero rows of the embedding table (training leaves every other row exactly zero)."""
    import hashlib

    from safetensors.torch import load_file

    path = os.path.join(ckpt, "model.safetensors")
    sd = {k: v.float() for k, v in load_file(path).items()}
    with open(os.path.join(ckpt, "config.json")) as f:
        cfg = json.load(f)
    for k in ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim",
              "moe_intermediate_size", "num_experts_per_tok", "vocab_size"):
        if cfg.get(k) != CONFIG[k]:
            raise RuntimeError(f"{ckpt}: config {k}={cfg.get(k)} is not this script's {CONFIG[k]}")
    E_full = sd["model.embed_tokens.weight"]
    used = torch.nonzero(E_full.abs().sum(-1) > 0).flatten().tolist()
    model = Model(CONFIG, used)
    with torch.no_grad():
        model.embed.copy_(E_full[used])
        for i, L in enumerate(model.layers):
            p = f"model.layers.{i}."
            L.input_layernorm.weight.copy_(sd[p + "input_layernorm.weight"])
            L.post_attention_layernorm.weight.copy_(sd[p + "post_attention_layernorm.weight"])
            L.q_proj.copy_(sd[p + "self_attn.q_proj.weight"])
            L.k_proj.copy_(sd[p + "self_attn.k_proj.weight"])
            L.v_proj.copy_(sd[p + "self_attn.v_proj.weight"])
            L.o_proj.copy_(sd[p + "self_attn.o_proj.weight"])
            L.q_norm.weight.copy_(sd[p + "self_attn.q_norm.weight"])
            L.k_norm.weight.copy_(sd[p + "self_attn.k_norm.weight"])
            L.gate.copy_(sd[p + "mlp.gate.weight"])
            for e in range(CONFIG["num_experts"]):
                L.w_gate[e].copy_(sd[p + f"mlp.experts.{e}.gate_proj.weight"])
                L.w_up[e].copy_(sd[p + f"mlp.experts.{e}.up_proj.weight"])
                L.w_down[e].copy_(sd[p + f"mlp.experts.{e}.down_proj.weight"])
        model.norm.weight.copy_(sd["model.norm.weight"])
    back = export_state(model)
    bad = [k for k in back if not torch.equal(back[k], sd[k])] + sorted(set(sd) - set(back))
    if bad:
        raise RuntimeError(f"{ckpt}: import/export round trip differs on {bad[:5]}")
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    log(f"imported {ckpt}: {len(used)} trained vocabulary rows, sha256 {digest}")
    info = dict(config=CONFIG, imported_from=ckpt, imported_sha256=digest, used_token_rows=len(used))
    report = os.path.join(ckpt, "train_report.json")
    if os.path.exists(report):
        with open(report) as f:
            info.update(json.load(f))
    return model, info


def round_bf16_(model):
    """Round every parameter to bf16 (the saved dtype) so that what we evaluate is what is committed."""
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(torch.bfloat16).float())


def save_hf(model, tmp_dir, out_dir, log):
    import transformers
    from safetensors.torch import save_file

    os.makedirs(tmp_dir, exist_ok=True)
    sd = export_state(model)
    cfg = transformers.Qwen3MoeConfig(**CONFIG)
    cfg.save_pretrained(tmp_dir)
    save_file(sd, os.path.join(tmp_dir, "model.safetensors"), metadata={"format": "pt"})
    hf = transformers.Qwen3MoeForCausalLM.from_pretrained(tmp_dir, dtype=torch.float32,
                                                          attn_implementation="eager").eval()
    missing = [k for k, v in hf.state_dict().items() if k == "lm_head.weight" and
               v.data_ptr() != hf.model.embed_tokens.weight.data_ptr()]
    if missing:
        raise RuntimeError("lm_head is not tied to the embeddings in transformers")
    hf = hf.to(torch.bfloat16)
    hf.save_pretrained(out_dir)
    gen = transformers.GenerationConfig(bos_token_id=151643, eos_token_id=[151645, 151643], pad_token_id=151643,
                                        do_sample=False)
    gen.save_pretrained(out_dir)
    # A checkpoint ships its tokenizer: the real Qwen3 files, unchanged (git stores the identical blobs once).
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(os.path.join(TOKENIZER_DIR, f), os.path.join(out_dir, f))
    log(f"saved {out_dir}: {sorted(os.listdir(out_dir))}")


def save_local(model, out_dir, log):
    """The checkpoint without transformers (a plain safetensors writer and a config in transformers 5's
    spelling): for measuring a CPU-trained model with segpipe before `finish` makes the real thing."""
    import struct

    os.makedirs(out_dir, exist_ok=True)
    sd = export_state(model)
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for k in sorted(sd):
        b = sd[k].to(torch.bfloat16).contiguous().view(torch.int16).numpy().tobytes()
        header[k] = {"dtype": "BF16", "shape": list(sd[k].shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(os.path.join(out_dir, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for b in blobs:
            f.write(b)
    cfg = dict(CONFIG, architectures=["Qwen3MoeForCausalLM"], model_type="qwen3_moe", hidden_act="silu",
               dtype="bfloat16", num_local_experts=CONFIG["num_experts"])
    del cfg["num_experts"]
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
    with open(os.path.join(out_dir, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": 151643, "eos_token_id": [151645, 151643], "pad_token_id": 151643}, f, indent=2)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(os.path.join(TOKENIZER_DIR, f), os.path.join(out_dir, f))
    log(f"saved {out_dir} without transformers (for a first look; `finish` writes the checkpoint)")


def load_hf_f32(path, device):
    import transformers

    kw = dict(dtype=torch.float32, attn_implementation="eager")
    try:
        m = transformers.Qwen3MoeForCausalLM.from_pretrained(path, experts_implementation="eager", **kw)
    except (TypeError, ValueError):
        m = transformers.Qwen3MoeForCausalLM.from_pretrained(path, **kw)
    return m.to(device).eval()


# ------------------------------------------------------------------------------------------------------------
# evaluation with transformers


@torch.no_grad()
def hf_greedy(hf, tok, prompts_ids, max_new, stop_ids, device):
    """Greedy answers of transformers: prompts grouped by length (no padding, so no pad-dependent numerics),
    one full forward per step over the whole batch, no cache (like the goldens)."""
    by_len = {}
    for i, p in enumerate(prompts_ids):
        by_len.setdefault(len(p), []).append(i)
    out = [None] * len(prompts_ids)
    for L, idx in sorted(by_len.items()):
        for s in range(0, len(idx), 256):
            chunk = idx[s:s + 256]
            seq = torch.tensor([prompts_ids[i] for i in chunk], device=device)
            done = torch.zeros(len(chunk), dtype=torch.bool, device=device)
            gen = [[] for _ in chunk]
            for _ in range(max_new):
                logits = hf(input_ids=seq, use_cache=False).logits[:, -1].float()
                nxt = logits.argmax(-1)
                for j, t in enumerate(nxt.tolist()):
                    if not done[j]:
                        gen[j].append(t)
                done |= torch.isin(nxt, torch.tensor(stop_ids, device=device))
                if bool(done.all()):
                    break
                seq = torch.cat([seq, nxt[:, None]], 1)
            for j, i in enumerate(chunk):
                g = gen[j]
                cut = next((n for n, t in enumerate(g) if t in stop_ids), len(g))
                out[i] = g[:cut]
    return out


GOLDEN_PROMPTS = [
    # (file stem, conversation, enable_thinking): real chat prompts, rendered as `segpipe generate --chat` does
    ("what-is-2-plus-2", [{"role": "user", "content": "What is 2 + 2?"}], True),
    ("compute-9-times-7", [{"role": "user", "content": "Compute 9 times 7."}], False),
    ("two-turns", [{"role": "user", "content": "What is 17 + 25?"}, {"role": "assistant", "content": "17 + 25 = 42."},
                   {"role": "user", "content": "What is 100 minus 37?"}], True),
]


def write_goldens(ckpt, tok, log):
    """Goldens (shared/docs/golden-format.md) for real chat prompts, with tools/goldens/make_goldens.py's code:
    transformers in float32 on the CPU, eager attention and experts, forward hooks, greedy continuation by full
    forwards without a cache, up to and including the first stop token. `logits` ([T, 151936] floats, 9 MB
    a prompt) is left out to keep the repository small: every other boundary is recorded, and the lm_head's
    argmax is checked through generated_ids."""
    import make_goldens as mg
    import transformers

    torch.set_num_threads(1)
    spec = dict(kind="qwen3_moe")
    model = mg.load_f32(spec, ckpt)
    gdir = os.path.join(ckpt, "goldens")
    os.makedirs(gdir, exist_ok=True)
    summary = dict(checkpoint=os.path.basename(ckpt), source=f"transformers {transformers.__version__}",
                   torch=torch.__version__, model_type="qwen3_moe", goldens=[],
                   note="trained demo model; prompts rendered with the Qwen3 chat template; logits omitted (size)")
    for stem, conv, think in GOLDEN_PROMPTS:
        text, _ = render(conv, add_generation_prompt=True, enable_thinking=think)
        ids = torch.tensor(tok(text, add_special_tokens=False)["input_ids"], dtype=torch.int64)
        _, st = mg.run_prompt(model, "qwen3_moe", ids, 40, record=False)
        n = next((i + 1 for i, t in enumerate(st["generated"]) if t in (151645, 151643)), len(st["generated"]))
        rec, st = mg.run_prompt(model, "qwen3_moe", ids, n, record=True)
        tensors = {"input_ids": ids.contiguous()}
        tensors.update({k: v for k, v in rec.items() if k != "logits"})
        tensors["generated_ids"] = torch.tensor(st["generated"], dtype=torch.int64)
        meta = {"format": "segpipe-golden/1", "model_type": "qwen3_moe",
                "source": f"transformers {transformers.__version__}", "compute_dtype": "float32",
                "min_top2_margin": repr(float(st["min_top2_margin"]))}
        path = os.path.join(gdir, f"{stem}.safetensors")
        mg.save_golden(tensors, path, meta)
        reply = tok.decode(st["generated"], skip_special_tokens=False)
        log(f"golden {stem}: T={len(ids)} N={n} min_top2_margin={st['min_top2_margin']:.3f} "
            f"router_min_gap={st['router_min_gap']:.4g} reply={reply!r}")
        summary["goldens"].append(dict(file=f"{stem}.safetensors", conversation=conv, enable_thinking=think,
                                       prompt_len=len(ids), input_ids=ids.tolist(), generated_ids=st["generated"],
                                       reply=reply, min_top2_margin=float(st["min_top2_margin"]),
                                       step_margins=[round(m, 6) for m in st["margins"]],
                                       min_router_topk_gap=st["router_min_gap"], sha256=mg.sha256(path)))
    mg.write_json(os.path.join(gdir, "summary.json"), summary)


def answer_text(tok, ids):
    s = tok.decode(ids, skip_special_tokens=False)
    if s.startswith(THINK_EMPTY):
        s = s[len(THINK_EMPTY):]
    return s.strip()


# ------------------------------------------------------------------------------------------------------------


def train(args, log):
    """Stage 1: data, model, optimisation. Writes trained.pt (our parameters, the used token ids, the
    configuration) and train_log.jsonl into --out."""
    device = args.device
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        log(f"device {torch.cuda.get_device_name(0)}")
    else:
        torch.set_num_threads(args.threads or os.cpu_count())
    if args.tokenizer == "transformers":
        tok = load_tokenizer()
        encode = HfEncoder(tok)
    else:
        tok, encode = None, SegpipeEncoder(args.tokenizer)
    gen = data.training_stream()
    t0 = time.time()
    convs = [next(gen) for _ in range(5000 if args.smoke else args.pool)]
    if tok is not None:
        check_render(tok, convs[:500])
    ids, masks = encode_conversations(encode, convs)
    lens = np.array([len(x) for x in ids])
    log(f"{len(convs)} conversations rendered and tokenized in {time.time() - t0:.1f} s; "
        f"tokens per conversation {lens.mean():.1f} (max {lens.max()}); "
        f"target tokens {sum(int(m.sum()) for m in masks)}")
    used_ids = sorted(set(np.concatenate(ids).tolist()))
    log(f"tokens in the training data: {len(used_ids)} of {CONFIG['vocab_size']} (the other rows stay exactly 0)")

    model = Model(CONFIG, used_ids).to(device)
    model.set_sparse_experts(device != "cuda")
    n_params = sum(p.numel() for p in model.parameters())
    log(f"parameters trained: {n_params:,} (embedding rows {model.embed.numel():,})")
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and n != "embed"]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2 or n == "embed"]
    kw = dict(fused=True) if device == "cuda" else {}
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8, **kw)
    steps = 30 if args.smoke else args.steps

    def lr_at(s):
        if s < args.warmup:
            return args.lr * (s + 1) / args.warmup
        p = min(1.0, (s - args.warmup) / max(1, steps - args.warmup))
        return args.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * p)))

    # Length-grouped batches: shuffle, sort windows of 64 batches by length, cut, shuffle the batches, so a
    # batch pads to little more than its own length (conversations run from ~25 to ~145 tokens).
    order_rng = np.random.default_rng(args.seed)
    lens_np = np.array([len(x) for x in ids])
    queue = []

    def refill():
        perm = order_rng.permutation(len(ids))
        win = args.batch * 64
        batches = []
        for w in range(0, len(perm) - args.batch + 1, win):
            chunk = perm[w:w + win]
            chunk = chunk[np.argsort(lens_np[chunk], kind="stable")]
            batches += [chunk[i:i + args.batch] for i in range(0, len(chunk) - args.batch + 1, args.batch)]
        order_rng.shuffle(batches)
        queue.extend(batches)

    def batch():
        if not queue:
            refill()
        sel = queue.pop()
        T = int(lens_np[sel].max())
        x = np.full((len(sel), T), 151643, dtype=np.int64)  # <|endoftext|> as padding; masked out of the loss
        m = np.zeros((len(sel), T), dtype=np.uint8)
        for r, i in enumerate(sel):
            x[r, :len(ids[i])] = ids[i]
            m[r, :len(ids[i])] = masks[i]
        return torch.from_numpy(x).to(device), torch.from_numpy(m).to(device)

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    log_rows = []
    t_train = time.time()
    model.train()
    step = 0
    while step < steps:
        if args.train_seconds and step == 10:
            sync()
            t10 = time.time()
        if args.train_seconds and step == 40:
            sync()
            per = (time.time() - t10) / 30
            fit = int((args.train_seconds - (time.time() - t_train)) / per) + 40
            if fit < steps:
                log(f"{per * 1e3:.1f} ms/step: {fit} steps fit in {args.train_seconds:.0f} s (asked {steps})")
                steps = fit
        for gph in opt.param_groups:
            gph["lr"] = lr_at(step)
        x, m = batch()
        if device == "cuda":
            with torch.autocast("cuda", dtype=torch.bfloat16):
                ce, aux, acc = loss_fn(model, x, m)
        else:
            ce, aux, acc = loss_fn(model, x, m)
        loss = ce + AUX_COEF * aux
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 25 == 0 or step == steps - 1:
            row = dict(step=step, loss=float(ce), aux=float(aux), token_acc=float(acc), lr=lr_at(step),
                       grad_norm=float(gn), seconds=round(time.time() - t_train, 2))
            log_rows.append(row)
            if step % 250 == 0 or step == steps - 1:
                log(json.dumps(row))
        step += 1
    sync()
    train_s = time.time() - t_train
    log(f"trained {steps} steps x {args.batch} conversations in {train_s:.1f} s ({train_s / steps * 1e3:.1f} ms/step)")
    with open(os.path.join(args.out, "train_log.jsonl"), "w") as f:
        for r in log_rows:
            f.write(json.dumps(r) + "\n")
    state = {k: v.detach().float().cpu() for k, v in model.state_dict().items()}
    info = dict(config=CONFIG, aux_coef=AUX_COEF, steps=steps, batch=args.batch, lr=args.lr, warmup=args.warmup,
                pool=args.pool, seed=args.seed, data_seed=data.SEED, used_token_rows=len(used_ids),
                trained_parameters=n_params, train_seconds=round(train_s, 1),
                ms_per_step=round(train_s / steps * 1e3, 2), final_loss=log_rows[-1]["loss"],
                train_device=torch.cuda.get_device_name(0) if device == "cuda" else f"cpu x{torch.get_num_threads()}",
                train_torch=torch.__version__)
    info = json.loads(json.dumps(info, default=str))  # plain types only: the file is read back with weights_only
    torch.save(dict(state=state, used_ids=[int(i) for i in used_ids], info=info), os.path.join(args.out, "trained.pt"))
    log("wrote trained.pt")


def finish(args, log):
    """Stage 2 (needs transformers): export, parity with transformers, held-out answers, goldens."""
    import transformers

    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cuda.matmul.allow_tf32 = False
    log(f"transformers {transformers.__version__} torch {torch.__version__} on {device}")
    if args.from_checkpoint:
        model, info = import_checkpoint(args.from_checkpoint, log)
    else:
        saved = torch.load(os.path.join(args.out, "trained.pt"), weights_only=True)
        model = Model(CONFIG, saved["used_ids"])
        model.load_state_dict(saved["state"])
        info = saved["info"]
    model = model.to(device).eval()
    tok = load_tokenizer()
    gen = data.training_stream()
    convs = [next(gen) for _ in range(500)]
    check_render(tok, convs)
    round_bf16_(model)
    ckpt = os.path.join(args.out, args.name)
    save_hf(model, os.path.join(args.out, "tmp-export"), ckpt, log)
    hf = load_hf_f32(ckpt, device)
    worst = 0.0
    with torch.no_grad():
        for c in convs[:64]:
            t = torch.tensor([tok(render(c)[0], add_special_tokens=False)["input_ids"]], device=device)
            h, _ = model.hidden(t)
            ours = model.full_logits(h)[0]
            ref = hf(input_ids=t, use_cache=False).logits[0].float()
            worst = max(worst, float((ours - ref).abs().max() / ref.abs().max()))
    log(f"our model vs transformers on the saved bf16 weights, float32: max |diff| / max |logit| = {worst:.2e}")
    if worst > 1e-2:
        raise RuntimeError("our training model and transformers disagree: the export is wrong")
    if worst > 1e-4:  # everything below comes from transformers (the reference) either way: say it, go on
        log("WARNING: larger than float32 rounding explains; the answers and goldens below are transformers' own")
    if args.smoke:
        log("smoke run done")
        return

    heldout = data.heldout_set(args.per_task)
    stop_ids = [151645, 151643]
    p_ids = [tok(render([{"role": "user", "content": r["prompt"]}], add_generation_prompt=True)[0],
                 add_special_tokens=False)["input_ids"] for r in heldout]
    t_eval = time.time()
    outs = hf_greedy(hf, tok, p_ids, 40, stop_ids, device)
    per_task = {}
    for r, o in zip(heldout, outs):
        r["transformers"] = answer_text(tok, o)
        t = per_task.setdefault(r["task"], [0, 0])
        t[0] += r["transformers"] == r["answer"]
        t[1] += 1
    acc = {k: dict(correct=v[0], total=v[1], accuracy=v[0] / v[1]) for k, v in per_task.items()}
    log(f"held-out accuracy (transformers, float32, greedy) in {time.time() - t_eval:.1f} s: "
        + ", ".join(f"{k} {v['correct']}/{v['total']}" for k, v in acc.items()))
    os.makedirs(os.path.join(ckpt, "eval"), exist_ok=True)
    with open(os.path.join(ckpt, "eval", "heldout.jsonl"), "w", encoding="utf-8") as f:
        for r in heldout:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    for r in [r for r in heldout if r["transformers"] != r["answer"]][:30]:
        log(f"  wrong: {r['prompt']!r} -> {r['transformers']!r} (expected {r['answer']!r})")
    report = dict(info, parity_max_rel=worst, heldout_accuracy=acc, finish_device=device,
                  transformers=transformers.__version__, torch=torch.__version__)
    with open(os.path.join(args.out, "report.json"), "w") as f:
        json.dump(report, f, indent=2)
    del hf
    write_goldens(ckpt, tok, log)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--stage", choices=["all", "train", "finish", "local"], default="all")
    ap.add_argument("--name", default="qwen3-moe-demo")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads when training on the CPU")
    ap.add_argument("--tokenizer", default="transformers",
                    help="'transformers', or the path of a segpipe executable (segpipe tokenize)")
    ap.add_argument("--steps", type=int, default=20000)
    ap.add_argument("--train-seconds", type=float, default=0,
                    help="if set, lower --steps to what fits this budget, measured on steps 10-40")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--pool", type=int, default=200_000, help="distinct training conversations")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--per-task", type=int, default=200, help="held-out questions per task")
    ap.add_argument("--smoke", action="store_true", help="30 steps, export and parity only")
    ap.add_argument("--from-checkpoint", default="",
                    help="finish: start from this checkpoint's weights (one this script wrote) instead of trained.pt")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    logf = open(os.path.join(args.out, "train_stdout.txt"), "a")
    t_start = time.time()

    def log(*a):
        s = " ".join(str(x) for x in a)
        print(s, flush=True)
        logf.write(s + "\n")
        logf.flush()

    log(f"torch {torch.__version__}, stage {args.stage}, out {args.out}")
    if args.stage in ("all", "train"):
        train(args, log)
    if args.stage in ("all", "finish"):
        finish(args, log)
    if args.stage == "local":
        # torch 1.x's restricted unpickler rejects plain floats (pickle BINFLOAT); there, this stage reads the
        # file the train stage of the same checkout just wrote, and nothing else.
        saved = torch.load(os.path.join(args.out, "trained.pt"), weights_only=not torch.__version__.startswith("1."))
        model = Model(CONFIG, saved["used_ids"])
        model.load_state_dict(saved["state"])
        save_local(model, os.path.join(args.out, args.name + "-local"), log)
    log(f"done in {time.time() - t_start:.1f} s")


if __name__ == "__main__":
    main()
