"""Hugging Face transformers on the same synthetic weights as segpipe, on the same GPU, batch 1.

The weights are made in GPU memory from segpipe's synthetic formula (segments/model/synthetic.cpp:
splitmix64 of (seed, FNV-1a of the tensor's Qwen3-Omni name, element index), scale sqrt(3/fan_in),
rounded to bf16), no files. The thinker's text model on text-only input is Qwen3-MoE math (1-D RoPE),
so Qwen3MoeForCausalLM with the thinker's shapes runs it.
usage: python3 hf_bench.py [--layers N] [--prompt T] [--decode N] [--json FILE]
       python3 hf_bench.py --golden-out FILE --golden-ids FILE [--layers N]
--golden-out: instead of timing, one bf16 forward of the prompt whose token ids FILE holds (whitespace-
separated) with hooks on the embedding, every decoder layer, every router, the final norm and the
lm_head, written as a segpipe golden (docs/golden-format.md; compute_dtype bfloat16, every position's
logits): what segpipe_compare_cuda compares segpipe's full-size GPU run with, layer by layer.
"""
import argparse, json, math, time

import numpy as np
import torch

M64 = 1 << 64


def s64(x):
    x &= M64 - 1
    return x - M64 if x >= 1 << 63 else x


def lsr(z, s):
    return (z >> s) & ((1 << (64 - s)) - 1)


def name_hash(name):
    h = 1469598103934665603
    for c in name.encode():
        h ^= c
        h = (h * 1099511628211) % M64
    return h


@torch.no_grad()
def synth(name, shape, scale, offset, seed=0, chunk=1 << 26):
    """Element i = segpipe synthetic_value(seed, name_hash(name), i, scale, offset), as bf16."""
    n = math.prod(shape)
    out = torch.empty(n, dtype=torch.bfloat16, device="cuda")
    base = s64((seed * 0xD1B54A32D192ED03) ^ name_hash(name))
    for a in range(0, n, chunk):
        idx = torch.arange(a, min(n, a + chunk), dtype=torch.int64, device="cuda")
        z = (idx * s64(0x9E3779B97F4A7C15)) ^ base
        z = z + s64(0x9E3779B97F4A7C15)
        z = (z ^ lsr(z, 30)) * s64(0xBF58476D1CE4E5B9)
        z = (z ^ lsr(z, 27)) * s64(0x94D049BB133111EB)
        z = z ^ lsr(z, 31)
        u = lsr(z, 40).to(torch.float32) * (1.0 / 16777216.0)
        v = u * 2.0
        v = v - 1.0
        v = v * float(scale)
        v = v + float(offset)
        out[a:a + idx.numel()] = v.to(torch.bfloat16)
    return out.view(shape)


def dist(role, shape):
    scale = np.float32(np.sqrt(np.float32(3.0) / np.float32(shape[-1])))
    if len(shape) == 1:
        return np.float32(0.1), 1.0
    if role == "embed_tokens":
        return np.float32(1.0), 0.0
    if role == "router":
        return scale * np.float32(4.0), 0.0
    if role == "lm_head":
        return scale * np.float32(2.0), 0.0
    return scale, 0.0


@torch.no_grad()
def write_golden(model, cfg, ids, path, load_s, dtype):
    """The boundaries of one forward as a segpipe golden (float32 tensors)."""
    import transformers
    import torch.nn.functional as F
    from safetensors.torch import save_file

    rec, hooks = {}, []

    def keep(name, t):
        t = t.detach()
        rec[name] = (t[0] if t.dim() == 3 else t).float().contiguous().cpu()

    text = model.model
    hooks.append(text.embed_tokens.register_forward_hook(lambda m, i, o: keep("embeddings", o)))
    for li, layer in enumerate(text.layers):
        hooks.append(layer.register_forward_hook(
            lambda m, i, o, li=li: keep(f"layers.{li}.output", o[0] if isinstance(o, tuple) else o)))
        # The router's logits as the model computes them (a bf16 linear of the normed hidden state).
        hooks.append(layer.mlp.gate.register_forward_hook(
            lambda m, i, o, li=li: keep(f"layers.{li}.router_logits",
                                        F.linear(i[0].reshape(-1, m.weight.shape[1]), m.weight))))
    hooks.append(text.norm.register_forward_hook(lambda m, i, o: keep("norm", o)))
    hooks.append(model.lm_head.register_forward_hook(lambda m, i, o: keep("logits", o)))
    t = time.time()
    out = model(input_ids=torch.tensor([ids], device="cuda"), use_cache=False)
    torch.cuda.synchronize()
    for h in hooks:
        h.remove()
    if not torch.equal(rec["logits"], out.logits[0].float().cpu()):
        raise RuntimeError("lm_head hook output differs from the model's logits")
    rec["input_ids"] = torch.tensor(ids, dtype=torch.int64)
    # The thinker preset's model_type: text-only, its math is Qwen3MoeForCausalLM's (1-D RoPE).
    meta = {"format": "segpipe-golden/1", "model_type": "qwen3_omni_moe", "compute_dtype": dtype,
            "source": f"transformers {transformers.__version__} (torch {torch.__version__}, "
                      f"{torch.cuda.get_device_name(0)}, synthetic weights of the thinker's shapes, {cfg.num_hidden_layers} "
                      f"layers, {dtype}, sdpa)"}
    save_file(rec, path, metadata=meta)
    print(f"golden: {len(ids)} tokens, {len(rec)} tensors, forward {time.time() - t:.2f} s, weights {load_s:.1f} s "
          f"-> {path}", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=48)
    ap.add_argument("--prompt", type=int, default=2048)
    ap.add_argument("--decode", type=int, default=32)
    ap.add_argument("--impls", default="grouped_mm,batched_mm,eager")
    ap.add_argument("--json")
    ap.add_argument("--golden-out")
    ap.add_argument("--golden-ids")
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"],
                    help="compute dtype (float32: the same bf16-valued weights held in float32)")
    a = ap.parse_args()
    import transformers
    from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM

    H, I, E, K, V, L = 2048, 768, 128, 8, 152064, a.layers
    cfg = Qwen3MoeConfig(vocab_size=V, hidden_size=H, intermediate_size=768, moe_intermediate_size=I,
                         num_hidden_layers=L, num_attention_heads=32, num_key_value_heads=4, head_dim=128,
                         num_experts=E, num_experts_per_tok=K, norm_topk_prob=True, rms_norm_eps=1e-6,
                         rope_theta=1e6, max_position_embeddings=32768, tie_word_embeddings=False,
                         decoder_sparse_step=1, mlp_only_layers=[])
    cfg._attn_implementation = "sdpa"
    torch.set_default_dtype(torch.float32 if a.dtype == "float32" else torch.bfloat16)
    t0 = time.time()
    with torch.device("cuda"):
        model = Qwen3MoeForCausalLM(cfg)
    model.eval()
    P = "thinker.model."
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name == "lm_head.weight":
                p.copy_(synth("thinker.lm_head.weight", p.shape, *dist("lm_head", p.shape)))
                continue
            assert name.startswith("model."), name
            rest = name[len("model."):]
            if rest.endswith("mlp.experts.gate_up_proj") or rest.endswith("mlp.experts.down_proj"):
                pre = P + rest.rsplit("experts.", 1)[0] + "experts."
                for e in range(E):
                    if rest.endswith("gate_up_proj"):
                        g = synth(f"{pre}{e}.gate_proj.weight", (I, H), *dist("e", (I, H)))
                        u = synth(f"{pre}{e}.up_proj.weight", (I, H), *dist("e", (I, H)))
                        w = torch.cat([g, u], 0)  # [2I, H]
                    else:
                        w = synth(f"{pre}{e}.down_proj.weight", (H, I), *dist("e", (H, I)))
                    p[e].copy_(w if p[e].shape == w.shape else w.t())
                continue
            role = "router" if rest.endswith("mlp.gate.weight") else "embed_tokens" if "embed_tokens" in rest else "x"
            p.copy_(synth(P + rest, p.shape, *dist(role, tuple(p.shape))))
    torch.cuda.synchronize()
    load_s = time.time() - t0
    sample = synth(P + "embed_tokens.weight", (V, H), 1.0, 0.0).view(-1)[:4].float().tolist()
    print(f"weights made in {load_s:.1f} s; embed_tokens[0,:4] = {sample}", flush=True)

    if a.golden_out:
        write_golden(model, cfg, [int(x) for x in open(a.golden_ids).read().split()], a.golden_out, load_s, a.dtype)
        return
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, V, (1, a.prompt), generator=g).cuda()
    res = {"card": torch.cuda.get_device_name(0), "layers": L, "transformers": transformers.__version__,
           "torch": torch.__version__, "weights_load_s": load_s, "runs": []}
    for impl in a.impls.split(","):
        r = {"experts_implementation": impl}
        try:
            if hasattr(model, "set_experts_implementation"):
                model.set_experts_implementation(impl)
            else:
                model.config._experts_implementation = impl
            with torch.no_grad():
                ts = []
                for i in range(3):
                    torch.cuda.synchronize(); t = time.time()
                    model(input_ids=ids, use_cache=False, logits_to_keep=1)
                    torch.cuda.synchronize(); ts.append(time.time() - t)
                r["prefill_ms"] = sorted(ts)[1] * 1e3
                out = model(input_ids=ids[:, :32], use_cache=True, logits_to_keep=1)
                pkv, nxt = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
                for i in range(a.decode + 2):
                    if i == 2:
                        torch.cuda.synchronize(); t = time.time()
                    out = model(input_ids=nxt, past_key_values=pkv, use_cache=True)
                    pkv, nxt = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
                torch.cuda.synchronize()
                r["decode_ms_per_token"] = (time.time() - t) * 1e3 / a.decode
                r["decode_tokens_per_s"] = 1e3 / r["decode_ms_per_token"]
        except Exception as ex:  # an implementation this version lacks
            r["error"] = f"{type(ex).__name__}: {ex}"[:300]
        print(json.dumps(r), flush=True)
        res["runs"].append(r)
    if a.json:
        json.dump(res, open(a.json, "w"), indent=1)


if __name__ == "__main__":
    main()
