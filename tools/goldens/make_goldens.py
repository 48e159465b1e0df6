#!/usr/bin/env python3
"""Build tiny random-weight Qwen3 / Qwen3-MoE / Qwen3-Omni checkpoints and their golden files.

Needs torch, transformers (written against 5.17) and safetensors; no network. Runs on the CPU in float32.

For every checkpoint in CHECKPOINTS:
  1. seed everything, build the model from a tiny config, give its text weights deliberate scales
     (see SCALES) so that greedy steps and router top-k choices are decisive;
  2. screen the seed: the bf16-rounded weights must give a greedy top-2 logit margin >= MARGIN_MIN at every
     step, router top-k gaps >= ROUTER_GAP_MIN and varied generated ids; else the next seed is tried
     (deterministically, so reruns pick the same seed);
  3. save it as transformers saves it (bf16 unless stated, `save_pretrained`, sharded where asked), optionally
     rewrite config.json into the transformers-4 hub spelling (rope_theta / rope_scaling / torch_dtype);
  4. reload the saved files in float32 with attn_implementation="eager" (experts "eager"), check the reloaded
     weights equal the saved ones, and write one golden file per prompt (format: shared/docs/golden-format.md)
     to models/<name>/goldens/<prompt>.safetensors, plus models/<name>/goldens/summary.json.

Usage (from the repository root):  python3 tools/goldens/make_goldens.py [--out models] [--only NAME ...]
"""

import argparse
import copy
import hashlib
import json
import math
import os
import shutil
import struct
import sys
import tempfile
import time

import torch
import torch.nn.functional as F
import transformers
from safetensors import safe_open
from safetensors.torch import save_file

N_NEW = 8  # generated tokens per golden
MARGIN_MIN = 0.05  # greedy top-1 minus top-2 logit, every step
ROUTER_GAP_MIN = 2e-3  # router logit gap between the k-th and (k+1)-th expert, every token, every forward
MIN_DISTINCT_GENERATED = 3  # distinct ids among the N_NEW generated
MAX_ATTEMPTS = 40
PROMPT_SEED = 20251126

# Standard deviations used for the text model's weights (everything else keeps transformers' own init).
SCALES = dict(
    embed=0.5,  # embed_tokens (also the lm_head when tied)
    lm_head=0.5,  # logits std ~ 0.5 * sqrt(H): top-2 gaps of order 1
    router=0.3,  # mlp.gate.weight: router logits std ~ 0.3 * sqrt(H)
    proj=0.1,  # q/k/v/o, dense MLP and expert projections: every layer moves the residual stream
    norm_jitter=0.25,  # every RMSNorm weight = 1 + 0.25 * N(0,1), so a missing weight multiply shows
    bias=0.3,  # q/k/v biases (Qwen2-MoE): large enough that a dropped bias changes every layer
)

BF16 = torch.bfloat16
F32 = torch.float32


def rope(theta, **extra):
    d = {"rope_type": "default", "rope_theta": float(theta)}
    d.update(extra)
    return d


def omni_config(text, thinker_hidden, vocab_talker=256):
    """A full Qwen3-Omni layout with tiny sub-configs (shapes shrunk from the transformers defaults)."""
    audio = dict(
        num_mel_bins=16, encoder_layers=1, encoder_attention_heads=2, encoder_ffn_dim=64, d_model=32,
        output_dim=thinker_hidden, max_source_positions=64, n_window=8, n_window_infer=32, conv_chunksize=16,
        downsample_hidden_size=8,
    )
    vision = dict(
        depth=2, hidden_size=32, intermediate_size=64, num_heads=2, in_channels=3, patch_size=4,
        spatial_merge_size=2, temporal_patch_size=2, out_hidden_size=thinker_hidden, num_position_embeddings=16,
        deepstack_visual_indexes=[0],
    )
    talker_text = dict(
        vocab_size=vocab_talker, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, head_dim=16, moe_intermediate_size=16, shared_expert_intermediate_size=32,
        num_experts=4, num_experts_per_tok=2, norm_topk_prob=False, max_position_embeddings=2048,
        rope_parameters=rope(1e6, mrope_section=[4, 2, 2], interleaved=True, mrope_interleaved=True),
    )
    code_predictor = dict(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, head_dim=16, num_code_groups=4, max_position_embeddings=2048,
    )
    talker = dict(
        text_config=talker_text, code_predictor_config=code_predictor, num_code_groups=4,
        thinker_hidden_size=thinker_hidden, accept_hidden_layer=1, spatial_merge_size=2,
    )
    code2wav = dict(
        codebook_size=64, hidden_size=32, max_position_embeddings=512, num_attention_heads=2, num_key_value_heads=2,
        sliding_window=8, intermediate_size=64, num_hidden_layers=1, num_quantizers=4, upsample_rates=[2, 2],
        upsampling_ratios=[2], decoder_dim=32,
    )
    return dict(
        thinker_config=dict(text_config=text, audio_config=audio, vision_config=vision),
        talker_config=talker,
        code2wav_config=code2wav,
    )


CHECKPOINTS = [
    dict(
        name="tiny-qwen3-moe",
        kind="qwen3_moe",
        seed=1000,
        shard_bytes=700_000,
        save_dtype=BF16,
        spelling="v5",
        prompts=[("short", 3), ("mid", 17), ("long", 40)],
        config=dict(
            vocab_size=1000, hidden_size=96, intermediate_size=160, moe_intermediate_size=48, num_hidden_layers=5,
            num_attention_heads=6, num_key_value_heads=2, head_dim=32, num_experts=8, num_experts_per_tok=2,
            norm_topk_prob=False, decoder_sparse_step=1, mlp_only_layers=[1], rms_norm_eps=1e-6,
            max_position_embeddings=2048, rope_parameters=rope(1e6), tie_word_embeddings=False,
            bos_token_id=998, eos_token_id=999,
        ),
    ),
    dict(
        name="tiny-qwen3-moe-hub",
        kind="qwen3_moe",
        seed=2000,
        shard_bytes=None,
        save_dtype=BF16,
        spelling="hub",
        hub_version="4.51.0",
        hub_extra={"max_window_layers": 4},
        expect_theta=50000.0,
        prompts=[("short", 3), ("long", 40)],
        config=dict(
            vocab_size=640, hidden_size=72, intermediate_size=144, moe_intermediate_size=40, num_hidden_layers=4,
            num_attention_heads=4, num_key_value_heads=1, head_dim=24, num_experts=8, num_experts_per_tok=2,
            norm_topk_prob=True, decoder_sparse_step=2, mlp_only_layers=[], rms_norm_eps=1e-6,
            max_position_embeddings=2048, rope_parameters=rope(50000.0), tie_word_embeddings=False,
            bos_token_id=638, eos_token_id=639,
        ),
    ),
    dict(
        name="tiny-qwen3-omni",
        kind="qwen3_omni_moe",
        seed=3000,
        shard_bytes=600_000,
        save_dtype=BF16,
        spelling="hub",
        hub_version="4.57.0.dev0",
        expect_theta=200000.0,
        prompts=[("short", 3), ("long", 40)],
        config=omni_config(
            dict(
                vocab_size=1200, hidden_size=64, intermediate_size=128, moe_intermediate_size=32,
                num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2, head_dim=16, num_experts=8,
                num_experts_per_tok=2, norm_topk_prob=True, decoder_sparse_step=1, mlp_only_layers=[],
                rms_norm_eps=1e-6, max_position_embeddings=4096,
                rope_parameters=rope(200000.0, mrope_section=[4, 2, 2], interleaved=True, mrope_interleaved=True),
            ),
            thinker_hidden=64,
        ),
    ),
    dict(
        name="tiny-qwen3-omni-v5",
        kind="qwen3_omni_moe",
        seed=4000,
        shard_bytes=None,
        save_dtype=BF16,
        spelling="v5",
        expect_theta=1e6,
        prompts=[("short", 3), ("long", 40)],
        config=omni_config(
            dict(
                vocab_size=900, hidden_size=48, intermediate_size=96, moe_intermediate_size=24,
                num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=1, head_dim=24, num_experts=6,
                num_experts_per_tok=3, norm_topk_prob=False, decoder_sparse_step=1, mlp_only_layers=[1],
                rms_norm_eps=1e-6, max_position_embeddings=4096,
                rope_parameters=rope(1e6, mrope_section=[4, 4, 4], interleaved=True, mrope_interleaved=True),
            ),
            thinker_hidden=48,
        ),
    ),
    dict(
        name="tiny-qwen3-dense",
        kind="qwen3",
        seed=5000,
        shard_bytes=None,
        save_dtype=BF16,
        spelling="v5",
        # tied embeddings: the layers must outweigh the token's own embedding, or greedy repeats the input token
        scales=dict(proj=0.25),
        prompts=[("short", 3), ("long", 40)],
        config=dict(
            vocab_size=512, hidden_size=80, intermediate_size=192, num_hidden_layers=3, num_attention_heads=5,
            num_key_value_heads=5, head_dim=16, rms_norm_eps=1e-6, max_position_embeddings=2048,
            rope_parameters=rope(1e6), tie_word_embeddings=True, bos_token_id=510, eos_token_id=511,
        ),
    ),
    dict(
        name="tiny-qwen3-moe-f32",
        kind="qwen3_moe",
        seed=6000,
        shard_bytes=None,
        save_dtype=F32,
        spelling="v5",
        prompts=[("short", 3), ("long", 40)],
        config=dict(
            vocab_size=700, hidden_size=64, intermediate_size=128, moe_intermediate_size=32, num_hidden_layers=3,
            num_attention_heads=4, num_key_value_heads=2, head_dim=32, num_experts=16, num_experts_per_tok=4,
            norm_topk_prob=True, decoder_sparse_step=1, mlp_only_layers=[], rms_norm_eps=1e-5,
            max_position_embeddings=2048, rope_parameters=rope(10000.0), tie_word_embeddings=False,
            bos_token_id=698, eos_token_id=699,
        ),
    ),
    dict(
        # Qwen2-MoE as Qwen1.5-MoE-A2.7B ships it: transformers-4 hub spelling (rope_theta, torch_dtype, no head_dim,
        # no qkv_bias key), full multi-head attention with q/k/v biases, a shared expert behind a sigmoid gate,
        # norm_topk_prob false, one dense layer through mlp_only_layers, sliding window present but off, sharded.
        name="tiny-qwen2-moe",
        kind="qwen2_moe",
        seed=7000,
        shard_bytes=500_000,
        save_dtype=BF16,
        spelling="hub",
        hub_version="4.39.0.dev0",
        hub_extra={"max_window_layers": 21, "sliding_window": 32768, "use_sliding_window": False},
        hub_drop=("qkv_bias", "layer_types"),
        expect_theta=1e6,
        prompts=[("short", 3), ("long", 40)],
        config=dict(
            vocab_size=800, hidden_size=64, intermediate_size=160, moe_intermediate_size=32,
            shared_expert_intermediate_size=96, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=4,
            num_experts=8, num_experts_per_tok=4, norm_topk_prob=False, decoder_sparse_step=1, mlp_only_layers=[2],
            rms_norm_eps=1e-6, max_position_embeddings=2048, rope_parameters=rope(1e6), tie_word_embeddings=False,
            bos_token_id=798, eos_token_id=799,
        ),
    ),
    dict(
        # Qwen2-MoE in transformers 5's own spelling, shaped like Qwen2-57B-A14B: grouped-query attention,
        # dense layers through decoder_sparse_step 2, normalised top-k, tied embeddings (a layout the hub models
        # do not use, but the config allows).
        name="tiny-qwen2-moe-v5",
        kind="qwen2_moe",
        seed=8000,
        shard_bytes=None,
        save_dtype=BF16,
        spelling="v5",
        scales=dict(proj=0.2),  # tied embeddings: the layers must outweigh the token's own embedding
        prompts=[("short", 3), ("long", 40)],
        config=dict(
            vocab_size=600, hidden_size=96, intermediate_size=192, moe_intermediate_size=24,
            shared_expert_intermediate_size=64, num_hidden_layers=4, num_attention_heads=6, num_key_value_heads=2,
            num_experts=12, num_experts_per_tok=3, norm_topk_prob=True, decoder_sparse_step=2, mlp_only_layers=[],
            rms_norm_eps=1e-5, max_position_embeddings=2048, rope_parameters=rope(10000.0),
            tie_word_embeddings=True, bos_token_id=598, eos_token_id=599,
        ),
    ),
]


# ----------------------------------------------------------------------------------------------------------------
# model construction and access


def model_class(kind):
    if kind == "qwen2_moe":
        return transformers.Qwen2MoeConfig, transformers.Qwen2MoeForCausalLM
    if kind == "qwen3_moe":
        return transformers.Qwen3MoeConfig, transformers.Qwen3MoeForCausalLM
    if kind == "qwen3":
        return transformers.Qwen3Config, transformers.Qwen3ForCausalLM
    if kind == "qwen3_omni_moe":
        return transformers.Qwen3OmniMoeConfig, transformers.Qwen3OmniMoeForConditionalGeneration
    raise ValueError(kind)


def text_parts(model, kind):
    """(text decoder model, lm_head, forward(ids[1,T]) -> logits[1,T,V])."""
    if kind == "qwen3_omni_moe":
        th = model.thinker
        return th.model, th.lm_head, lambda ids: th(input_ids=ids, use_cache=False).logits
    return model.model, model.lm_head, lambda ids: model(input_ids=ids, use_cache=False).logits


def text_config_of(model, kind):
    return model.config.thinker_config.text_config if kind == "qwen3_omni_moe" else model.config


def is_moe_mlp(mlp):
    return hasattr(mlp, "gate") and hasattr(mlp, "experts")


def build_model(spec, seed):
    cfg_cls, model_cls = model_class(spec["kind"])
    torch.manual_seed(seed)
    cfg = cfg_cls(**copy.deepcopy(spec["config"]))
    model = model_cls(cfg).to(F32).eval()
    force_eager_experts(model)
    text, lm_head, _ = text_parts(model, spec["kind"])
    tied = lm_head.weight.data_ptr() == text.embed_tokens.weight.data_ptr()
    want_tied = bool(spec["config"].get("tie_word_embeddings", False))
    if tied != want_tied:
        raise RuntimeError(f"{spec['name']}: lm_head tied={tied}, config asks {want_tied}")
    gen = torch.Generator().manual_seed(seed)
    sc = dict(SCALES, **spec.get("scales", {}))

    def randn(shape):
        return torch.randn(shape, generator=gen, dtype=F32)

    with torch.no_grad():
        for name, p in text.named_parameters():
            if name.endswith("norm.weight"):  # input/post_attention_layernorm, q_norm, k_norm, final norm
                p.copy_(1.0 + sc["norm_jitter"] * randn(p.shape))
            elif name == "embed_tokens.weight":
                p.copy_(sc["embed"] * randn(p.shape))
            elif name.endswith("mlp.gate.weight"):
                p.copy_(sc["router"] * randn(p.shape))
            elif name.endswith("_proj.bias"):  # Qwen2-MoE's q/k/v biases
                p.copy_(sc["bias"] * randn(p.shape))
            elif p.dim() >= 2:
                p.copy_(sc["proj"] * randn(p.shape))
            else:
                raise RuntimeError(f"unexpected 1-D text parameter {name} {tuple(p.shape)}")
        if not tied:
            lm_head.weight.copy_(sc["lm_head"] * randn(lm_head.weight.shape))
        if spec["kind"] == "qwen3_omni_moe":
            # transformers 5.17 leaves the talker's routed experts (torch.empty) uninitialised: give them values,
            # or the saved checkpoint holds whatever memory was there (not reproducible, possibly not finite)
            g2 = torch.Generator().manual_seed(seed + 100_000)
            for name, p in model.talker.named_parameters():
                if ".mlp.experts." in name:
                    p.copy_(0.02 * torch.randn(p.shape, generator=g2, dtype=F32))
    return model


def check_build_deterministic(spec, seed):
    """Two builds from one seed must agree bit for bit, and every weight must be finite."""
    a = build_model(spec, seed).state_dict()
    b = build_model(spec, seed).state_dict()
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    bad = [k for k in a if a[k].is_floating_point() and not torch.isfinite(a[k]).all()]
    if differ or bad:
        raise RuntimeError(f"{spec['name']}: weights not reproducible {differ[:10]} / not finite {bad[:10]}")


def force_eager_experts(model):
    seen = set()
    for m in model.modules():
        cfg = getattr(m, "config", None)
        if cfg is not None and id(cfg) not in seen and hasattr(cfg, "_experts_implementation"):
            seen.add(id(cfg))
            if cfg._experts_implementation != "eager":
                try:
                    cfg._experts_implementation = "eager"
                except Exception as e:  # noqa: BLE001
                    print(f"    could not set experts implementation on {type(cfg).__name__}: {e}")


def experts_impls(model):
    out = set()
    for m in model.modules():
        if type(m).__name__.endswith("Experts") and hasattr(m, "config"):
            out.add(getattr(m.config, "_experts_implementation", "?"))
    return sorted(out)


def load_f32(spec, path):
    _, model_cls = model_class(spec["kind"])
    kw = dict(dtype=F32, attn_implementation="eager")
    try:
        model = model_cls.from_pretrained(path, experts_implementation="eager", **kw)
    except (TypeError, ValueError) as e:
        print(f"    from_pretrained(experts_implementation=...) refused ({e}); setting it afterwards")
        model = model_cls.from_pretrained(path, **kw)
    force_eager_experts(model)
    return model.eval()


# ----------------------------------------------------------------------------------------------------------------
# running a prompt


def run_prompt(model, kind, ids, n_new, record=True):
    """One full forward of the prompt with hooks, then n_new greedy steps by full forwards without a cache."""
    text, lm_head, fwd = text_parts(model, kind)
    rec = {}
    stats = {"router_min_gap": math.inf, "router_sel_mismatch": 0, "router_out_maxdiff": 0.0, "expert_hits": {}}
    state = {"record": record}
    hooks = []

    def keep(name, t):
        if state["record"]:
            t = t.detach()
            if t.dim() == 3:
                assert t.shape[0] == 1, t.shape
                t = t[0]
            rec[name] = t.to(F32).contiguous().clone()

    hooks.append(text.embed_tokens.register_forward_hook(lambda m, i, o: keep("embeddings", o)))
    for li, layer in enumerate(text.layers):
        def layer_hook(m, i, o, li=li):
            keep(f"layers.{li}.output", o[0] if isinstance(o, tuple) else o)

        hooks.append(layer.register_forward_hook(layer_hook))
        if is_moe_mlp(layer.mlp):
            gate = layer.mlp.gate
            top_k = getattr(gate, "top_k", None) or text.config.num_experts_per_tok

            def router_hook(m, i, o, li=li, top_k=top_k):
                x = i[0].reshape(-1, m.weight.shape[1])
                logits = F.linear(x, m.weight)  # raw router logits, before softmax
                if isinstance(o, tuple):
                    stats["router_out_maxdiff"] = max(
                        stats["router_out_maxdiff"], float((o[0].reshape(logits.shape) - logits).abs().max())
                    )
                    if len(o) >= 3:
                        sel = o[2].reshape(logits.shape[0], -1)
                        mine = torch.topk(logits, top_k, dim=-1).indices
                        same = (sel.sort(-1).values == mine.sort(-1).values).all(-1)
                        stats["router_sel_mismatch"] += int((~same).sum())
                s = logits.sort(dim=-1, descending=True).values
                gap = float((s[:, top_k - 1] - s[:, top_k]).min())
                stats["router_min_gap"] = min(stats["router_min_gap"], gap)
                if state["record"]:
                    hits = torch.bincount(torch.topk(logits, top_k, -1).indices.reshape(-1),
                                          minlength=logits.shape[1])
                    stats["expert_hits"][li] = hits.tolist()
                keep(f"layers.{li}.router_logits", logits)

            hooks.append(gate.register_forward_hook(router_hook))
    hooks.append(text.norm.register_forward_hook(lambda m, i, o: keep("norm", o)))
    hooks.append(lm_head.register_forward_hook(lambda m, i, o: keep("logits", o)))

    margins, generated = [], []
    try:
        with torch.no_grad():
            logits = fwd(ids[None])[0]
            if record and not torch.equal(rec["logits"], logits):
                raise RuntimeError("lm_head hook output differs from the model's logits")
            state["record"] = False
            seq = ids.clone()
            last = logits[-1]
            for step in range(n_new):
                top2 = torch.topk(last, 2).values
                margins.append(float(top2[0] - top2[1]))
                nxt = int(torch.argmax(last))
                generated.append(nxt)
                seq = torch.cat([seq, torch.tensor([nxt], dtype=torch.int64)])
                if step + 1 < n_new:
                    last = fwd(seq[None])[0, -1]
    finally:
        for h in hooks:
            h.remove()
    stats["min_top2_margin"] = min(margins)
    stats["margins"] = margins
    stats["generated"] = generated
    return rec, stats


def prompt_ids(spec, length):
    vocab = text_vocab(spec)
    g = torch.Generator().manual_seed(PROMPT_SEED + 7919 * length + vocab)
    return torch.randint(0, vocab - 2, (length,), generator=g, dtype=torch.int64)  # keep clear of bos/eos


def text_vocab(spec):
    if spec["kind"] == "qwen3_omni_moe":
        return spec["config"]["thinker_config"]["text_config"]["vocab_size"]
    return spec["config"]["vocab_size"]


def eos_of(spec):
    if spec["kind"] == "qwen3_omni_moe":
        return None
    return spec["config"].get("eos_token_id")


def acceptable(spec, all_stats):
    moe = any(math.isfinite(s["router_min_gap"]) for s in all_stats)
    margin = min(s["min_top2_margin"] for s in all_stats)
    router = min(s["router_min_gap"] for s in all_stats) if moe else math.inf
    distinct = min(len(set(s["generated"])) for s in all_stats)
    eos = eos_of(spec)
    eos_hit = eos is not None and any(eos in s["generated"] for s in all_stats)
    ok = margin >= MARGIN_MIN and router >= ROUTER_GAP_MIN and distinct >= MIN_DISTINCT_GENERATED and not eos_hit
    score = min(margin / MARGIN_MIN, router / ROUTER_GAP_MIN, distinct / MIN_DISTINCT_GENERATED)
    if eos_hit:
        score = min(score, 0.0)
    return ok, score, dict(margin=margin, router=router, distinct=distinct, eos_hit=eos_hit)


# ----------------------------------------------------------------------------------------------------------------
# config spelling


def to_hub_spelling(cfg, version, extra, drop=()):
    """transformers-5 config.json -> the spelling transformers 4 wrote on the hub (keys that transformers 5 adds
    and the hub files lack, such as Qwen2-MoE's qkv_bias and layer_types, are named in `drop`)."""

    def conv(d):
        if isinstance(d, list):
            return [conv(x) for x in d]
        if not isinstance(d, dict):
            return d
        out = {}
        for k, v in d.items():
            if k == "rope_parameters" and isinstance(v, dict) and v.get("rope_type", "default") == "default":
                v = dict(v)
                out["rope_theta"] = v.pop("rope_theta")
                if any(kk != "rope_type" for kk in v):  # M-RoPE keys stay in rope_scaling, as on the hub
                    v.setdefault("rope_type", "default")
                    v["type"] = v["rope_type"]
                    out["rope_scaling"] = v
                else:
                    out["rope_scaling"] = None
            elif k == "dtype":
                out["torch_dtype"] = v
            elif k == "num_local_experts":  # transformers 5 writes the attribute_map target; the hub has num_experts
                out["num_experts"] = v
            else:
                out[k] = conv(v)
        return out

    out = conv(cfg)
    for k in drop:
        out.pop(k, None)
    out.update(extra or {})
    out["transformers_version"] = version
    return out


def read_json(path):
    with open(path) as f:
        return json.load(f)


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")


# ----------------------------------------------------------------------------------------------------------------
# checks and reporting


def check_rope(spec, model):
    text = text_parts(model, spec["kind"])[0]
    cfg = text.config
    rp = getattr(cfg, "rope_parameters", None)
    theta = rp["rope_theta"] if isinstance(rp, dict) else getattr(cfg, "rope_theta", None)
    hd = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    inv = text.rotary_emb.inv_freq.to(F32)
    expect = 1.0 / (float(theta) ** (torch.arange(0, hd, 2, dtype=torch.int64).to(F32) / hd))
    print(f"    rope_parameters={rp} head_dim={hd} inv_freq matches theta: {torch.allclose(inv, expect)}"
          f" mrope_section={getattr(text.rotary_emb, 'mrope_section', None)}")
    want = spec.get("expect_theta")
    if want is not None and float(theta) != want:
        raise RuntimeError(f"{spec['name']}: reloaded rope theta {theta}, expected {want}")
    if want is not None and not torch.allclose(inv, expect):
        raise RuntimeError(f"{spec['name']}: inv_freq does not follow theta {theta}")
    return float(theta)


def compare_weights(saved, reloaded):
    a = saved.state_dict()
    b = reloaded.state_dict()
    only_a = sorted(set(a) - set(b))
    only_b = sorted(set(b) - set(a))
    bad = [k for k in a if k in b and not torch.equal(a[k].to(F32), b[k].to(F32))]
    if only_a or only_b or bad:
        raise RuntimeError(f"reload mismatch: only saved {only_a[:8]}, only reloaded {only_b[:8]}, differ {bad[:8]}")
    return len(a)


def saved_tensor_summary(path):
    files = sorted(f for f in os.listdir(path) if f.endswith(".safetensors"))
    names, dtypes = [], set()
    for f in files:
        with safe_open(os.path.join(path, f), framework="pt") as sf:
            for k in sf.keys():
                names.append(k)
                dtypes.add(str(sf.get_slice(k).get_dtype()))
    return files, sorted(names), sorted(dtypes)


def save_golden(tensors, path, meta):
    """safetensors.torch.save_file, then the JSON header re-serialised with sorted keys: save_file writes
    __metadata__ in hash-map order, which changes from run to run; the data bytes are left as written."""
    save_file(tensors, path, metadata=meta)
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.dumps(json.loads(raw[8:8 + n]), sort_keys=True, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header + raw[8 + n:])
    with safe_open(path, framework="pt") as sf:
        if sf.metadata() != meta or sorted(sf.keys()) != sorted(tensors):
            raise RuntimeError(f"{path}: header rewrite lost something")
        for k, t in tensors.items():
            if not torch.equal(sf.get_tensor(k), t):
                raise RuntimeError(f"{path}: {k} changed in the header rewrite")


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read())
    return h.hexdigest()


HIGHLIGHT_KEYS = [
    "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim",
    "intermediate_size", "moe_intermediate_size", "num_experts", "num_local_experts", "num_experts_per_tok",
    "decoder_sparse_step", "mlp_only_layers", "norm_topk_prob", "tie_word_embeddings", "rms_norm_eps",
    "shared_expert_intermediate_size", "qkv_bias", "use_sliding_window", "sliding_window",
    "rope_theta", "rope_scaling", "rope_parameters", "dtype", "torch_dtype",
]


def text_config_highlights(saved_cfg, kind):
    cfg = saved_cfg["thinker_config"]["text_config"] if kind == "qwen3_omni_moe" else saved_cfg
    out = {k: cfg[k] for k in HIGHLIGHT_KEYS if k in cfg}
    if kind == "qwen3_omni_moe":
        out["thinker.tie_word_embeddings"] = saved_cfg["thinker_config"].get("tie_word_embeddings")
        out["top.torch_dtype/dtype"] = saved_cfg.get("torch_dtype", saved_cfg.get("dtype"))
    return out


def describe_layers(model, kind):
    text = text_parts(model, kind)[0]
    return ["moe" if is_moe_mlp(l.mlp) else "dense" for l in text.layers]


# ----------------------------------------------------------------------------------------------------------------


def make_checkpoint(spec, out_root):
    name, kind = spec["name"], spec["kind"]
    print(f"== {name} ({kind})")
    prompts = [(pn, prompt_ids(spec, n)) for pn, n in spec["prompts"]]

    # 1-2. choose a seed whose bf16-rounded weights give decisive greedy steps and router choices
    best = None
    for attempt in range(MAX_ATTEMPTS):
        seed = spec["seed"] + attempt
        model = build_model(spec, seed)
        screened = model.to(spec["save_dtype"]).to(F32)
        stats = [run_prompt(screened, kind, ids, N_NEW, record=False)[1] for _, ids in prompts]
        ok, score, info = acceptable(spec, stats)
        print(f"  seed {seed}: ok={ok} score={score:.3f} {info} gen={[s['generated'] for s in stats]}")
        if best is None or score > best[1]:
            best = (seed, score)
        if ok:
            break
    seed = best[0]
    if best[1] < 1.0:
        print(f"  WARNING: no seed met every threshold; using the best, seed {seed} (score {best[1]:.3f})")

    check_build_deterministic(spec, seed)

    # 3. save as transformers saves it
    model = build_model(spec, seed).to(spec["save_dtype"])
    tmp = tempfile.mkdtemp(prefix=name + "-")
    save_kw = {"max_shard_size": spec["shard_bytes"]} if spec.get("shard_bytes") else {}
    model.save_pretrained(tmp, **save_kw)
    ref_logits = None
    if spec["spelling"] == "hub":
        v5 = load_f32(spec, tmp)
        with torch.no_grad():
            ref_logits = text_parts(v5, kind)[2](prompts[-1][1][None])[0]
        del v5
        cfg_path = os.path.join(tmp, "config.json")
        write_json(cfg_path, to_hub_spelling(read_json(cfg_path), spec["hub_version"], spec.get("hub_extra"),
                                             spec.get("hub_drop", ())))

    # 4. reload in float32, eager, and record the goldens
    reloaded = load_f32(spec, tmp)
    n_w = compare_weights(model, reloaded)
    text_cfg = text_config_of(reloaded, kind)
    print(f"    reloaded {n_w} tensors equal to the saved ones; attn={text_cfg._attn_implementation} "
          f"experts={experts_impls(reloaded)}")
    theta = check_rope(spec, reloaded)
    if ref_logits is not None:
        with torch.no_grad():
            hub_logits = text_parts(reloaded, kind)[2](prompts[-1][1][None])[0]
        if not torch.equal(ref_logits, hub_logits):
            raise RuntimeError("hub-spelled config gives different logits from the transformers-5 config")
        print("    hub-spelled config.json reproduces the transformers-5 config's logits bit for bit")

    dest = os.path.join(out_root, name)
    if os.path.isdir(dest):
        shutil.rmtree(dest)
    shutil.copytree(tmp, dest)
    shutil.rmtree(tmp)
    gdir = os.path.join(dest, "goldens")
    os.makedirs(gdir, exist_ok=True)
    saved_cfg = read_json(os.path.join(dest, "config.json"))
    files, names, dtypes = saved_tensor_summary(dest)
    layer_kinds = describe_layers(reloaded, kind)
    summary = dict(
        checkpoint=name,
        seed=seed,
        source=f"transformers {transformers.__version__}",
        torch=torch.__version__,
        model_type=saved_cfg["model_type"],
        config_spelling=spec["spelling"],
        saved_dtypes=dtypes,
        weight_files=files,
        tensors=len(names),
        layers=layer_kinds,
        rope_theta=theta,
        text_config=text_config_highlights(saved_cfg, kind),
        scales=dict(SCALES, **spec.get("scales", {})),
        goldens=[],
    )
    print(f"    files={files} tensors={len(names)} dtypes={dtypes} layers={layer_kinds}")
    print(f"    sample names: {[n for n in names if 'layers.0.' in n or 'lm_head' in n or 'embed' in n][:12]}")
    if kind == "qwen3_omni_moe":
        prefixes = sorted({".".join(n.split(".")[:2]) for n in names})
        print(f"    top-level prefixes: {prefixes}")

    for pn, ids in prompts:
        rec, st = run_prompt(reloaded, kind, ids, N_NEW, record=True)
        tensors = {"input_ids": ids.contiguous()}
        tensors.update(rec)
        tensors["generated_ids"] = torch.tensor(st["generated"], dtype=torch.int64)
        for k, t in tensors.items():
            if t.is_floating_point() and not torch.isfinite(t).all():
                raise RuntimeError(f"{name}/{pn}: {k} is not finite")
        meta = {
            "format": "segpipe-golden/1",
            "model_type": saved_cfg["model_type"],
            "source": f"transformers {transformers.__version__}",
            "compute_dtype": "float32",
            "min_top2_margin": repr(float(st["min_top2_margin"])),
        }
        path = os.path.join(gdir, f"{pn}.safetensors")
        save_golden(tensors, path, meta)
        shapes = {k: list(v.shape) for k, v in tensors.items()}
        stds = {k: round(float(v.std()), 3) for k, v in tensors.items() if v.is_floating_point() and v.numel() > 1}
        print(f"    {pn}: T={len(ids)} min_top2_margin={st['min_top2_margin']:.4f} "
              f"router_min_gap={st['router_min_gap']:.4g} generated={st['generated']}")
        print(f"      router hook: out-vs-linear maxdiff={st['router_out_maxdiff']:.3g} "
              f"selection mismatches={st['router_sel_mismatch']} expert hits={st['expert_hits']}")
        print(f"      shapes={shapes}")
        print(f"      std={stds}")
        summary["goldens"].append(dict(
            file=f"{pn}.safetensors",
            prompt_len=len(ids),
            input_ids=ids.tolist(),
            generated_ids=st["generated"],
            min_top2_margin=float(st["min_top2_margin"]),
            step_margins=[round(m, 6) for m in st["margins"]],
            min_router_topk_gap=st["router_min_gap"] if math.isfinite(st["router_min_gap"]) else None,
            sha256=sha256(path),
        ))
    write_json(os.path.join(gdir, "summary.json"), summary)
    return summary


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap.add_argument("--out", default=os.path.join(root, "models"))
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (1 keeps reruns bit-identical)")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    print(f"transformers {transformers.__version__}, torch {torch.__version__}, python {sys.version.split()[0]}")
    os.makedirs(args.out, exist_ok=True)
    failures = []
    for spec in CHECKPOINTS:
        if args.only and spec["name"] not in args.only:
            continue
        t0 = time.time()
        try:
            make_checkpoint(spec, args.out)
            print(f"  ({time.time() - t0:.1f} s)")
        except Exception:  # noqa: BLE001 - report and go on with the other checkpoints
            import traceback

            traceback.print_exc()
            failures.append(spec["name"])
    if failures:
        print("FAILED:", failures)
        sys.exit(1)
    print("all checkpoints written")


if __name__ == "__main__":
    main()
