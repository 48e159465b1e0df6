#!/usr/bin/env python3
"""Multimodal thinker goldens: tiny Qwen3-Omni checkpoints with working audio and vision towers, and what
transformers computes for prompts that mix text, an image and a speech clip.

Usage (from anywhere):  python3 tools/goldens/media/thinker.py --repo REPO_ROOT --out OUTDIR
Writes only under OUTDIR, at the paths where the files are committed:
  OUTDIR/models/tiny-qwen3-omni-mm/      transformers-4 hub config spelling (rope_theta / rope_scaling)
  OUTDIR/models/tiny-qwen3-omni-mm-v5/   transformers-5 spelling (rope_parameters)
each with its weights, config.json, preprocessor_config.json and goldens/{image,audio,mixed}.safetensors +
goldens/summary.json. The golden tensors are described in tools/goldens/media/README-thinker.md.

Needs torch, transformers (written against 5.17), safetensors, numpy, scipy, pillow; no network; CPU float32.
The checkpoint construction (text-model scales, seed screening, save, hub rewrite, reload) reuses
tools/goldens/make_goldens.py; this script adds the encoders' scales, the media, and the multimodal records.
"""

import argparse
import copy
import inspect
import json
import math
import os
import re
import shutil
import sys
import tempfile
import time
import traceback
import types

import numpy as np
import torch
import torch.nn.functional as F
import transformers

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # tools/goldens: make_goldens.py
import make_goldens as mg  # noqa: E402

F32 = torch.float32
N_NEW = mg.N_NEW
PROMPT_SEED = 20260117
ENC_SCALES = dict(
    norm_jitter=0.25,  # encoder LayerNorm weights 1 + 0.25 N(0,1): a dropped weight multiply shows
    bias=0.1,  # encoder biases: a dropped bias shows
    gain=1.0,  # weights std gain / sqrt(fan_in): activations keep unit scale through the towers
    out_gain=0.5,  # the towers' last projections: features as large as the token embeddings (std 0.5)
)
# Every greedy step must differ from a run that sees only the placeholders' embeddings in at least this many
# of the N_NEW tokens, or the media would not be proven to matter.
MEDIA_MIN_CHANGED = 2


def special_ids(base, order):
    """Token ids base, base+1, ... in the given order of names."""
    return {name: base + i for i, name in enumerate(order)}


# Special tokens inside the tiny vocabularies (the real ones, ~151k, would not fit). The two checkpoints use
# different ids and orders, so that an id hard-wired anywhere shows.
TOKENS_MM = special_ids(620, [
    "im_start", "im_end", "vision_start", "vision_end", "image", "video", "audio_start", "audio_end", "audio",
    "system", "user", "assistant", "tts_pad", "tts_bos", "tts_eos",
])
TOKENS_V5 = special_ids(530, [
    "audio", "image", "video", "vision_start", "vision_end", "audio_start", "audio_end", "im_start", "im_end",
    "system", "user", "assistant", "tts_pad", "tts_bos", "tts_eos",
])
TOKEN_TEXT = {  # strings the processor and the chat template use for them
    "im_start": "<|im_start|>", "im_end": "<|im_end|>", "vision_start": "<|vision_start|>",
    "vision_end": "<|vision_end|>", "image": "<|image_pad|>", "video": "<|video_pad|>",
    "audio_start": "<|audio_start|>", "audio_end": "<|audio_end|>", "audio": "<|audio_pad|>",
}


def thinker_token_config(tok, position_id_per_seconds):
    return dict(
        audio_token_id=tok["audio"], image_token_id=tok["image"], video_token_id=tok["video"],
        audio_start_token_id=tok["audio_start"], audio_end_token_id=tok["audio_end"],
        vision_start_token_id=tok["vision_start"], vision_end_token_id=tok["vision_end"],
        user_token_id=tok["user"], position_id_per_seconds=position_id_per_seconds, seconds_per_chunk=2,
    )


def mm_config(text, hidden, tok, audio, vision, position_id_per_seconds):
    cfg = mg.omni_config(text, thinker_hidden=hidden)
    cfg["thinker_config"]["audio_config"].update(audio)
    cfg["thinker_config"]["vision_config"].update(vision)
    cfg["thinker_config"].update(thinker_token_config(tok, position_id_per_seconds))
    cfg["talker_config"].update(
        audio_token_id=tok["audio"], image_token_id=tok["image"], video_token_id=tok["video"],
        vision_start_token_id=tok["vision_start"], audio_start_token_id=tok["audio_start"],
        position_id_per_seconds=position_id_per_seconds,
    )
    cfg.update(
        im_start_token_id=tok["im_start"], im_end_token_id=tok["im_end"], system_token_id=tok["system"],
        user_token_id=tok["user"], assistant_token_id=tok["assistant"], tts_pad_token_id=tok["tts_pad"],
        tts_bos_token_id=tok["tts_bos"], tts_eos_token_id=tok["tts_eos"],
    )
    return cfg


CHECKPOINTS = [
    dict(
        name="tiny-qwen3-omni-mm",
        kind="qwen3_omni_moe",
        seed=11000,
        shard_bytes=None,
        save_dtype=torch.bfloat16,
        spelling="hub",
        hub_version="4.57.0.dev0",
        expect_theta=500000.0,
        tokens=TOKENS_MM,
        text_ids_below=600,
        # the image processor: real patch/merge/temporal sizes, max_pixels small enough for a 6x8 patch grid
        image=dict(min_pixels=32 * 32 * 4, max_pixels=128 * 128),
        config=mm_config(
            dict(
                vocab_size=640, hidden_size=64, intermediate_size=128, moe_intermediate_size=32,
                num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2, head_dim=32, num_experts=8,
                num_experts_per_tok=2, norm_topk_prob=True, decoder_sparse_step=1, mlp_only_layers=[],
                rms_norm_eps=1e-6, max_position_embeddings=4096,
                # head_dim 32: 16 frequencies, sections 6/5/5 like the real 24/20/20 (the tail index 15 is T's)
                rope_parameters=mg.rope(500000.0, mrope_section=[6, 5, 5], interleaved=True, mrope_interleaved=True),
            ),
            64, TOKENS_MM,
            # n_window 50 as the real model: the processor counts audio placeholders with 100-frame chunks
            # whatever the config says; n_window_infer 100 splits the audio attention into several windows
            audio=dict(num_mel_bins=16, n_window=50, n_window_infer=100, max_source_positions=64,
                       conv_chunksize=16, downsample_hidden_size=8, encoder_layers=2),
            vision=dict(depth=3, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=16,
                        spatial_merge_size=2, temporal_patch_size=2, num_position_embeddings=16,
                        deepstack_visual_indexes=[0, 1]),
            position_id_per_seconds=13,
        ),
    ),
    dict(
        name="tiny-qwen3-omni-mm-v5",
        kind="qwen3_omni_moe",
        seed=12000,
        shard_bytes=None,
        save_dtype=torch.bfloat16,
        spelling="v5",
        expect_theta=1e6,
        tokens=TOKENS_V5,
        text_ids_below=520,
        image=dict(min_pixels=32 * 32 * 4, max_pixels=160 * 160),
        config=mm_config(
            dict(
                vocab_size=560, hidden_size=48, intermediate_size=96, moe_intermediate_size=24,
                num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=1, head_dim=24, num_experts=6,
                num_experts_per_tok=3, norm_topk_prob=False, decoder_sparse_step=1, mlp_only_layers=[1],
                rms_norm_eps=1e-6, max_position_embeddings=4096,
                rope_parameters=mg.rope(1e6, mrope_section=[6, 3, 3], interleaved=True, mrope_interleaved=True),
            ),
            48, TOKENS_V5,
            audio=dict(num_mel_bins=24, n_window=50, n_window_infer=800, max_source_positions=64,
                       conv_chunksize=16, downsample_hidden_size=8, encoder_layers=1),
            # DeepStack after every text layer, the dense one (1) included
            vision=dict(depth=4, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=16,
                        spatial_merge_size=2, temporal_patch_size=2, num_position_embeddings=16,
                        deepstack_visual_indexes=[0, 2, 3]),
            position_id_per_seconds=25,
        ),
    ),
]

# Prompts as the chat template lays them out: ("text", n) is n random text ids; ("image", i) / ("audio", i)
# are the template's <|vision_start|><|image_pad|><|vision_end|> / <|audio_start|><|audio_pad|><|audio_end|>.
PROMPTS = [
    ("image", [("special", "im_start"), ("text", 3), ("image", 0), ("text", 6), ("special", "im_end"),
               ("special", "im_start"), ("text", 2)]),
    ("audio", [("special", "im_start"), ("text", 2), ("audio", 0), ("text", 5), ("special", "im_end"),
               ("special", "im_start"), ("text", 2)]),
    ("mixed", [("special", "im_start"), ("text", 4), ("image", 0), ("text", 3), ("audio", 0), ("text", 5),
               ("special", "im_end"), ("special", "im_start"), ("text", 2)]),
]


# ----------------------------------------------------------------------------------------------------------------
# media and processors


def read_wav(path):
    """16-bit PCM WAV as float32 in [-1, 1) (scipy; what soundfile/librosa give for int16)."""
    from scipy.io import wavfile

    sr, data = wavfile.read(path)
    if data.dtype != np.int16:
        raise RuntimeError(f"{path}: expected 16-bit PCM, got {data.dtype}")
    data = data.astype(np.float32) / 32768.0
    if data.ndim == 2:
        data = data.mean(axis=1)
    return sr, data


def processor_module():
    from transformers.models.qwen3_omni_moe import processing_qwen3_omni_moe as pm

    return pm


def audio_kwargs():
    """The audio kwargs Qwen3OmniMoeProcessor passes to its feature extractor."""
    pm = processor_module()
    return dict(pm.Qwen3OmniMoeProcessorKwargs._defaults["audio_kwargs"])


def make_feature_extractor(num_mel_bins):
    """WhisperFeatureExtractor as Qwen3-Omni's preprocessor_config.json sets it (16 kHz, hop 160, n_fft 400,
    chunk_length 300, dither 0), with the checkpoint's mel bins."""
    kw = dict(feature_size=num_mel_bins, sampling_rate=16000, hop_length=160, n_fft=400, chunk_length=300,
              padding_value=0.0, return_attention_mask=True)
    try:
        return transformers.WhisperFeatureExtractor(dither=0.0, **kw)
    except TypeError:  # versions without dither have none
        return transformers.WhisperFeatureExtractor(**kw)


def make_image_processor(vision, image):
    """Qwen2VLImageProcessor (the class Qwen3OmniMoeProcessor loads) with the checkpoint's sizes and the real
    checkpoint's mean = std = 0.5; min/max pixels given as min_pixels / max_pixels (else as size)."""
    cls = transformers.Qwen2VLImageProcessor
    common = dict(patch_size=vision["patch_size"], temporal_patch_size=vision["temporal_patch_size"],
                  merge_size=vision["spatial_merge_size"], image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])
    try:
        ip = cls(min_pixels=image["min_pixels"], max_pixels=image["max_pixels"], **common)
    except Exception as e:  # noqa: BLE001
        print(f"    {cls.__name__}(min_pixels=...) refused ({e}); using size=")
        ip = cls(size={"shortest_edge": image["min_pixels"], "longest_edge": image["max_pixels"]}, **common)
    return ip


def expected_grid(vision, image, height, width):
    """The grid the processor must give, from the reference's own smart_resize: catches a min/max pixels
    setting the processor silently ignored."""
    from transformers.models.qwen2_vl import image_processing_qwen2_vl as ipm

    p, m = vision["patch_size"], vision["spatial_merge_size"]
    h, w = ipm.smart_resize(height, width, factor=p * m, min_pixels=image["min_pixels"], max_pixels=image["max_pixels"])
    return [1, h // p, w // p]


def process_media(spec, repo):
    """Runs the feature extractor and the image processor on the test media as the processor does."""
    from PIL import Image

    th = spec["config"]["thinker_config"]
    fe = make_feature_extractor(th["audio_config"]["num_mel_bins"])
    ak = audio_kwargs()
    sr, wav = read_wav(os.path.join(repo, "tests/data/media/speech.wav"))
    if sr != ak.get("sampling_rate", 16000):
        raise RuntimeError(f"speech.wav is {sr} Hz, the processor wants {ak.get('sampling_rate')}")
    audio = fe(wav, return_tensors="pt", **ak)
    audio_inputs = {
        "input_features": audio["input_features"].to(F32),
        "feature_attention_mask": audio["attention_mask"].to(torch.int64),
    }
    ip = make_image_processor(th["vision_config"], spec["image"])
    img = Image.open(os.path.join(repo, "tests/data/media/shapes.png")).convert("RGB")
    im = ip(images=[img], return_tensors="pt")
    image_inputs = {"pixel_values": im["pixel_values"].to(F32), "image_grid_thw": im["image_grid_thw"].to(torch.int64)}
    try:
        want = expected_grid(th["vision_config"], spec["image"], img.size[1], img.size[0])
    except Exception:  # noqa: BLE001 - no smart_resize where this version keeps it: the check is skipped
        traceback.print_exc()
        want = image_inputs["image_grid_thw"].tolist()[0]
    if image_inputs["image_grid_thw"].tolist() != [want]:
        raise RuntimeError(f"image grid {image_inputs['image_grid_thw'].tolist()}, smart_resize gives {want}")
    print(f"    audio: {len(wav)} samples -> input_features {tuple(audio_inputs['input_features'].shape)}, "
          f"feature lengths {audio_inputs['feature_attention_mask'].sum(-1).tolist()}")
    print(f"    image: {img.size} -> pixel_values {tuple(image_inputs['pixel_values'].shape)}, "
          f"grid_thw {image_inputs['image_grid_thw'].tolist()} ({type(ip).__name__})")
    return fe, ip, audio_inputs, image_inputs


def expand_prompt(spec, layout, audio_inputs, image_inputs, merge_size):
    """The prompt string as the chat template writes it, expanded by the processor's own
    replace_multimodal_special_tokens (placeholder counts: its _get_feat_extract_output_lengths for audio,
    grid.prod() // merge_size**2 for images), then tokenized: special tokens by the table, text as <tN>."""
    pm = processor_module()
    g = torch.Generator().manual_seed(PROMPT_SEED + len(layout) * 7919 + spec["text_ids_below"])
    parts, n_audio, n_image = [], 0, 0
    for kind, arg in layout:
        if kind == "text":
            ids = torch.randint(0, spec["text_ids_below"], (arg,), generator=g).tolist()
            parts.append("".join(f"<t{i}>" for i in ids))
        elif kind == "special":
            parts.append(TOKEN_TEXT[arg])
        elif kind == "image":
            parts.append("<|vision_start|><|image_pad|><|vision_end|>")
            n_image += 1
        elif kind == "audio":
            parts.append("<|audio_start|><|audio_pad|><|audio_end|>")
            n_audio += 1
    text = "".join(parts)
    audio_lengths = [int(x) for x in pm._get_feat_extract_output_lengths(audio_inputs["feature_attention_mask"].sum(-1))]
    fake = types.SimpleNamespace(
        image_processor=types.SimpleNamespace(merge_size=merge_size),
        video_processor=types.SimpleNamespace(merge_size=merge_size),
        audio_token=TOKEN_TEXT["audio"], image_token=TOKEN_TEXT["image"], video_token=TOKEN_TEXT["video"],
        vision_bos_token=TOKEN_TEXT["vision_start"], vision_eos_token=TOKEN_TEXT["vision_end"],
        audio_bos_token=TOKEN_TEXT["audio_start"], audio_eos_token=TOKEN_TEXT["audio_end"],
    )
    grids = image_inputs["image_grid_thw"]
    # called by keyword, only with the parameters this transformers version's method takes
    fn = pm.Qwen3OmniMoeProcessor.replace_multimodal_special_tokens
    offered = dict(
        text=[text], audio_lengths=iter(audio_lengths[:n_audio]), image_grid_thw=iter(grids[:n_image]),
        video_grid_thw=iter([]), video_second_per_grid=iter([]), use_audio_in_video=False,
        position_id_per_seconds=spec["config"]["thinker_config"]["position_id_per_seconds"], seconds_per_chunk=2.0,
    )
    params = list(inspect.signature(fn).parameters.values())[1:]
    try:
        missing = [p.name for p in params if p.name not in offered and p.default is inspect.Parameter.empty]
        if missing:
            raise RuntimeError(f"replace_multimodal_special_tokens takes parameters this script lacks: {missing}")
        expanded = fn(fake, **{p.name: offered[p.name] for p in params if p.name in offered})[0]
        how = "Qwen3OmniMoeProcessor.replace_multimodal_special_tokens"
    except Exception:  # noqa: BLE001 - the same counts, written out, rather than no goldens
        traceback.print_exc()
        print("    WARNING: expanding the placeholders without the processor's method")
        it_a, it_i = iter(audio_lengths[:n_audio]), iter(grids[:n_image])
        expanded = re.sub(r"<\|audio_pad\|>|<\|image_pad\|>", lambda m: m.group(0) * (
            next(it_a) if "audio" in m.group(0) else int(next(it_i).prod()) // merge_size ** 2), text)
        how = "fallback: processor's _get_feat_extract_output_lengths and grid.prod() // merge_size**2"
    by_text = {v: spec["tokens"][k] for k, v in TOKEN_TEXT.items()}
    ids = []
    for m in re.finditer(r"<\|[a-z_]+\|>|<t(\d+)>", expanded):
        ids.append(int(m.group(1)) if m.group(1) is not None else by_text[m.group(0)])
    if "".join(re.findall(r"<\|[a-z_]+\|>|<t\d+>", expanded)) != expanded:
        raise RuntimeError("prompt string holds something the toy tokenizer does not know")
    media = {}
    if n_audio:
        media.update({k: v[:n_audio] for k, v in audio_inputs.items()})
    if n_image:
        per = (grids[:n_image].prod(-1)).tolist()
        media["pixel_values"] = image_inputs["pixel_values"][: sum(per)]
        media["image_grid_thw"] = grids[:n_image]
    info = dict(expanded_by=how, audio_placeholders=[int(x) for x in audio_lengths[:n_audio]],
                image_placeholders=[int(x) // merge_size ** 2 for x in grids[:n_image].prod(-1)])
    return torch.tensor(ids, dtype=torch.int64), media, info


# ----------------------------------------------------------------------------------------------------------------
# model


def scale_encoders(model, seed):
    """Give the audio and vision towers weights that make their features matter: std gain/sqrt(fan_in), the last
    projections out_gain/sqrt(fan_in), LayerNorm weights 1 + jitter, biases nonzero. transformers' init (std 0.02)
    gives features far smaller than the token embeddings, which the logits would barely notice."""
    th = model.thinker
    gen = torch.Generator().manual_seed(seed + 200_000)
    sc = ENC_SCALES
    last = {"proj2.weight"}  # audio: the projection to the thinker's width
    with torch.no_grad():
        for tower, last_names in ((th.audio_tower, last), (th.visual, None)):
            for name, p in tower.named_parameters():
                r = torch.randn(p.shape, generator=gen, dtype=F32)
                is_last = (name in last_names) if last_names is not None else bool(
                    re.fullmatch(r"(merger|merger_list\.\d+)\.mlp\.2\.weight", name))
                if p.dim() == 1 and re.search(r"(norm|ln_post|ln_q|layer_norm|norm1|norm2)\.weight$", name):
                    p.copy_(1.0 + sc["norm_jitter"] * r)
                elif p.dim() == 1:
                    p.copy_(sc["bias"] * r)
                elif name.endswith("pos_embed.weight"):
                    p.copy_(0.5 * r)
                else:
                    fan_in = p[0].numel()
                    p.copy_((sc["out_gain"] if is_last else sc["gain"]) / math.sqrt(fan_in) * r)


def build(spec, seed):
    model = mg.build_model(spec, seed)
    scale_encoders(model, seed)
    # The special tokens' lm_head rows, shrunk: a generated <|image_pad|> or <|audio_pad|> would leave the
    # next forward with more placeholders than media rows (the reference refuses that), so none may win.
    with torch.no_grad():
        model.thinker.lm_head.weight[spec["text_ids_below"]:] *= 0.1
    return model


class SpecialGenerated(Exception):
    pass


def thinker_forward(th, ids, media):
    return th(input_ids=ids[None], attention_mask=torch.ones_like(ids)[None], use_cache=False, **media).logits[0]


def greedy(th, ids, media, n_new, text_ids_below):
    """n_new greedy tokens by full forwards without a cache, the media passed every time."""
    seq, gen, margins = ids.clone(), [], []
    for _ in range(n_new):
        last = thinker_forward(th, seq, media)[-1]
        top2 = torch.topk(last, 2).values
        margins.append(float(top2[0] - top2[1]))
        nxt = int(torch.argmax(last))
        if nxt >= text_ids_below:
            raise SpecialGenerated(f"greedy step chose special token {nxt}")
        gen.append(nxt)
        seq = torch.cat([seq, torch.tensor([nxt], dtype=torch.int64)])
    return gen, margins


class Recorder:
    """Forward hooks on the thinker: encoders, the text model's inputs, every layer, router, norm, lm_head."""

    def __init__(self, th):
        self.th, self.rec, self.hooks, self.on = th, {}, [], True
        self.router_gap = math.inf
        text = th.model
        self.n_layers = len(text.layers)
        self.add(th.audio_tower.register_forward_hook(self.audio_hook))
        self.add(th.visual.merger.register_forward_hook(lambda m, i, o: self.keep("visual.output", o)))
        for j, mrg in enumerate(th.visual.merger_list):
            self.add(mrg.register_forward_hook(lambda m, i, o, j=j: self.keep(f"visual.deepstack.{j}", o)))
        self.add(text.embed_tokens.register_forward_hook(lambda m, i, o: self.keep("token_embeddings", o)))
        self.add(text.register_forward_pre_hook(self.text_pre_hook, with_kwargs=True))
        for li, layer in enumerate(text.layers):
            self.add(layer.register_forward_hook(
                lambda m, i, o, li=li: self.keep(f"layers.{li}.output_before_deepstack", o[0] if isinstance(o, tuple) else o)))
            if li > 0:
                self.add(layer.register_forward_pre_hook(
                    lambda m, a, kw, li=li: self.keep(f"layers.{li - 1}.output", a[0] if a else kw["hidden_states"]),
                    with_kwargs=True))
            if mg.is_moe_mlp(layer.mlp):
                self.add(layer.mlp.gate.register_forward_hook(lambda m, i, o, li=li: self.router_hook(li, m, i)))
        self.add(text.norm.register_forward_pre_hook(
            lambda m, a: self.keep(f"layers.{self.n_layers - 1}.output", a[0])))
        self.add(text.norm.register_forward_hook(lambda m, i, o: self.keep("norm", o)))
        self.add(th.lm_head.register_forward_hook(lambda m, i, o: self.keep("logits", o)))

    def add(self, h):
        self.hooks.append(h)

    def remove(self):
        for h in self.hooks:
            h.remove()

    def keep(self, name, t):
        if not self.on:
            return
        t = t.detach()
        if t.dim() == 3:
            assert t.shape[0] == 1, (name, t.shape)
            t = t[0]
        self.rec[name] = t.to(F32).contiguous().clone()

    def audio_hook(self, m, i, o):
        out = o.last_hidden_state if hasattr(o, "last_hidden_state") else o[0]
        self.keep("audio_tower.output", out)

    def text_pre_hook(self, m, args, kwargs):
        if not self.on:
            return
        self.keep("embeddings", kwargs["inputs_embeds"])
        pos = kwargs.get("position_ids")
        if pos is not None:
            self.rec["_position_ids_used"] = pos.detach().clone()
        ds = kwargs.get("deepstack_visual_embeds")
        if ds is not None:
            for j, t in enumerate(ds):
                self.keep(f"_deepstack_in.{j}", t)
            self.rec["_visual_pos_masks"] = kwargs["visual_pos_masks"].detach().clone()

    def router_hook(self, li, m, i):
        x = i[0].reshape(-1, m.weight.shape[1])
        logits = F.linear(x, m.weight)
        k = getattr(m, "top_k", None) or self.th.model.config.num_experts_per_tok
        s = logits.sort(dim=-1, descending=True).values
        self.router_gap = min(self.router_gap, float((s[:, k - 1] - s[:, k]).min()))
        self.keep(f"layers.{li}.router_logits", logits)


def run_prompt(th, ids, media, record, text_ids_below):
    """One recorded forward of the prompt, then the greedy continuation (router gaps over every forward)."""
    r = Recorder(th)
    try:
        r.on = record
        with torch.no_grad():
            logits = thinker_forward(th, ids, media)
            if record and not torch.equal(r.rec["logits"], logits):
                raise RuntimeError("lm_head hook output differs from the thinker's logits")
            r.on = False
            gen, margins = greedy(th, ids, media, N_NEW, text_ids_below)
    finally:
        r.remove()
    return r.rec, dict(generated=gen, margins=margins, min_top2_margin=min(margins), router_min_gap=r.router_gap)


def placeholder_only(th, ids, text_ids_below):
    """The greedy tokens when the media are left out: the placeholders' own embeddings, 1-D positions."""
    with torch.no_grad():
        return greedy(th, ids, {}, N_NEW, text_ids_below)[0]


def screen(spec, model, prompts):
    th = model.thinker
    stats, changed = [], []
    limit = spec["text_ids_below"]
    for pn, ids, media, _ in prompts:
        try:
            _, st = run_prompt(th, ids, media, False, limit)
            plain = placeholder_only(th, ids, limit)
        except SpecialGenerated as e:
            return False, 0.0, {"rejected": f"{pn}: {e}"}, []
        n_changed = sum(a != b for a, b in zip(st["generated"], plain))
        changed.append(n_changed)
        st["plain"] = plain
        stats.append(st)
    ok, score, info = mg.acceptable(spec, stats)
    media_ok = min(changed) >= MEDIA_MIN_CHANGED
    info["media_changed_tokens"] = changed
    return ok and media_ok, (score if media_ok else min(score, 0.5)), info, stats


# ----------------------------------------------------------------------------------------------------------------
# records


def rope_index(th, ids, media):
    """position_ids [3, T] and rope_deltas from the reference's own get_rope_index, called as the thinker calls it
    (by keyword where this version's signature names them)."""
    fam = media.get("feature_attention_mask")
    offered = dict(
        input_ids=ids[None], image_grid_thw=media.get("image_grid_thw"), video_grid_thw=None,
        attention_mask=torch.ones_like(ids)[None], use_audio_in_video=False,
        audio_seqlens=fam.sum(-1) if fam is not None else None, second_per_grids=None,
    )
    params = list(inspect.signature(th.get_rope_index).parameters)
    return th.get_rope_index(**{p: offered[p] for p in params if p in offered})


def as_int(t, name):
    r = torch.round(t.to(torch.float64))
    if not torch.equal(r, t.to(torch.float64)):
        raise RuntimeError(f"{name} is not integral: {t}")
    return r.to(torch.int64).contiguous()


def golden_tensors(th, ids, media, rec, st):
    cfg = th.config
    T = len(ids)
    out = {"input_ids": ids.contiguous()}
    for k, v in media.items():
        key = {"input_features": "audio.input_features", "feature_attention_mask": "audio.feature_attention_mask",
               "pixel_values": "image.pixel_values", "image_grid_thw": "image.grid_thw"}[k]
        out[key] = v.contiguous() if v.is_floating_point() else v.to(torch.int64).contiguous()
    if "feature_attention_mask" in media:
        out["audio.feature_lens"] = media["feature_attention_mask"].sum(-1).to(torch.int64).contiguous()
    used = rec.pop("_position_ids_used", None)
    if used is None:
        raise RuntimeError("the text model received no position_ids (the thinker computed no M-RoPE positions)")
    try:
        pos, delta = rope_index(th, ids, media)
        pos = pos.reshape(3, T)
    except Exception:  # noqa: BLE001 - fall back to what the forward used and the delta it kept
        traceback.print_exc()
        print("    WARNING: get_rope_index could not be called; using the forward's positions and rope_deltas")
        pos, delta = used.reshape(3, T), th.rope_deltas
    if not torch.equal(used.reshape(3, T).to(F32), pos.to(F32)):
        raise RuntimeError("get_rope_index disagrees with the position_ids the text model received")
    out["position_ids"] = as_int(pos, "position_ids")
    out["rope_deltas"] = as_int(delta.reshape(1), "rope_deltas")
    vis_mask = rec.pop("_visual_pos_masks", None)
    n_ds = len(th.visual.merger_list) if "pixel_values" in media else 0
    for j in range(n_ds):
        fed = rec.pop(f"_deepstack_in.{j}")
        if not torch.equal(fed, rec[f"visual.deepstack.{j}"]):
            raise RuntimeError(f"DeepStack feature {j} fed to the text model differs from merger_list[{j}]'s output")
    if n_ds:
        mask = vis_mask.reshape(T)
        if not torch.equal(mask, ids == cfg.image_token_id):
            raise RuntimeError("visual_pos_masks is not input_ids == image_token_id")
        out["visual_positions"] = torch.nonzero(mask).reshape(-1).to(torch.int64).contiguous()
    for k in list(rec):
        if k.startswith("_"):
            rec.pop(k)
    if "pixel_values" not in media:
        rec.pop("visual.output", None)
    # before/after DeepStack are the same tensor where no feature was added: keep only the real boundary there
    for li in range(len(th.model.layers)):
        b = f"layers.{li}.output_before_deepstack"
        if b in rec and li >= n_ds:
            if not torch.equal(rec[b], rec[f"layers.{li}.output"]):
                raise RuntimeError(f"layer {li} output changed after the layer without DeepStack")
            rec.pop(b)
    out.update(rec)
    out["generated_ids"] = torch.tensor(st["generated"], dtype=torch.int64)
    for k, t in out.items():
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise RuntimeError(f"{k} is not finite")
    return out


def check_scatter(th, ids, media, g):
    """The embeddings the text model received equal the token embeddings with the encoder rows at the
    placeholders (audio rows at audio_token_id, image rows at image_token_id, in order): the boundary a C++
    embeddings segment reproduces from the golden encoder outputs."""
    cfg = th.config
    exp = g["token_embeddings"].clone()
    if "audio_tower.output" in g:
        exp[ids == cfg.audio_token_id] = g["audio_tower.output"]
    if "visual.output" in g:
        exp[ids == cfg.image_token_id] = g["visual.output"]
    if not torch.equal(exp, g["embeddings"]):
        raise RuntimeError("embeddings != token embeddings with the encoder outputs scattered at the placeholders")


def deepstack_weight(g):
    """How much DeepStack moves the residual stream at the visual positions (relative L2): must be visible."""
    out = {}
    if "visual_positions" not in g:
        return out
    vp = g["visual_positions"]
    for k in list(g):
        m = re.fullmatch(r"layers\.(\d+)\.output_before_deepstack", k)
        if m:
            li = m.group(1)
            before, after = g[k][vp], g[f"layers.{li}.output"][vp]
            out[li] = float((after - before).norm() / before.norm())
    return out


def reference_tables(th, spec):
    """What the reference's own functions give for inputs no prompt above reaches: the audio placeholder count
    (the processor's and the model's, for several n_window) over a range of mel lengths, and get_rope_index for
    id sequences with several images (grid_t 2 included), audios, adjacent blocks, and several n_window /
    position_id_per_seconds values. The C++ side is tested against these, not against typed-in numbers."""
    from transformers.models.qwen3_omni_moe import modeling_qwen3_omni_moe as mm

    pm = processor_module()
    lengths = list(range(1, 1001)) + [1500, 2999, 3000, 3001, 30000]
    lt = torch.tensor(lengths, dtype=torch.int64)
    # versions whose model-side function has no n_window hard-code 50 there too
    takes_n = "n_window" in inspect.signature(mm._get_feat_extract_output_lengths).parameters

    def model_len(x, n):
        return mm._get_feat_extract_output_lengths(x, n) if takes_n else mm._get_feat_extract_output_lengths(x)

    windows = (50, 8, 25) if takes_n else (50,)
    out = {"source": f"transformers {transformers.__version__}", "mel_lengths": lengths,
           "processor_audio_lengths": [int(x) for x in pm._get_feat_extract_output_lengths(lt)],
           "model_audio_lengths": {str(n): [int(x) for x in model_len(lt, n)] for n in windows},
           "rope_index": []}
    tok, merge = spec["tokens"], th.config.vision_config.spatial_merge_size
    g = torch.Generator().manual_seed(PROMPT_SEED + 1)
    grids = [[1, 4, 6], [1, 2, 2], [2, 4, 4], [1, 6, 2]]
    audios = [174, 100, 350, 37]

    def text(n):
        return torch.randint(0, spec["text_ids_below"], (n,), generator=g).tolist()

    cases = [
        ("image_audio_image", [("t", 3), ("i", 0), ("t", 2), ("a", 0), ("t", 4), ("i", 1), ("t", 3)]),
        ("audio_image_audio", [("t", 1), ("a", 1), ("i", 2), ("t", 2), ("a", 2), ("t", 2)]),
        ("adjacent_images_at_start", [("i", 3), ("i", 0), ("t", 5)]),
        ("image_at_end", [("t", 4), ("a", 3), ("t", 1), ("i", 1)]),
        ("audio_only", [("t", 3), ("a", 0), ("t", 3)]),
        ("text_only", [("t", 9)]),
    ]
    saved = (th.config.audio_config.n_window, th.config.position_id_per_seconds)
    try:
        for n_window, pps in ((saved[0], saved[1]), (8, 2), (25, 7)) if takes_n else ((saved[0], saved[1]), (saved[0], 2)):
            th.config.audio_config.n_window, th.config.position_id_per_seconds = n_window, pps
            for name, layout in cases:
                ids, im, au = [], [], []
                for kind, arg in layout:
                    if kind == "t":
                        ids += text(arg)
                    elif kind == "i":
                        n = int(torch.tensor(grids[arg]).prod()) // merge ** 2
                        ids += [tok["vision_start"]] + [tok["image"]] * n + [tok["vision_end"]]
                        im.append(grids[arg])
                    else:
                        n = int(model_len(torch.tensor(audios[arg]), n_window))
                        ids += [tok["audio_start"]] + [tok["audio"]] * n + [tok["audio_end"]]
                        au.append(audios[arg])
                t = torch.tensor(ids, dtype=torch.int64)
                grid_t = torch.tensor(im, dtype=torch.int64) if im else None
                fam_lens = torch.tensor(au, dtype=torch.int64) if au else None
                offered = dict(input_ids=t[None], image_grid_thw=grid_t, video_grid_thw=None,
                               attention_mask=torch.ones_like(t)[None], use_audio_in_video=False,
                               audio_seqlens=fam_lens, second_per_grids=None)
                params = list(inspect.signature(th.get_rope_index).parameters)
                pos, delta = th.get_rope_index(**{p: offered[p] for p in params if p in offered})
                out["rope_index"].append(dict(
                    name=name, n_window=n_window, position_id_per_seconds=pps, spatial_merge_size=merge,
                    input_ids=ids, image_grid_thw=im, audio_seqlens=au,
                    position_ids=as_int(pos.reshape(3, len(ids)), "position_ids").tolist(),
                    rope_deltas=int(as_int(delta.reshape(1), "rope_deltas")[0])))
    finally:
        th.config.audio_config.n_window, th.config.position_id_per_seconds = saved
    return out


def make_checkpoint(spec, repo, out_root):
    name = spec["name"]
    print(f"== {name}")
    th_cfg = spec["config"]["thinker_config"]
    merge = th_cfg["vision_config"]["spatial_merge_size"]
    fe, ip, audio_inputs, image_inputs = process_media(spec, repo)
    prompts = []
    for pn, layout in PROMPTS:
        ids, media, info = expand_prompt(spec, layout, audio_inputs, image_inputs, merge)
        prompts.append((pn, ids, media, info))
        print(f"    prompt {pn}: T={len(ids)} placeholders {info}")

    best = None
    for attempt in range(mg.MAX_ATTEMPTS):
        seed = spec["seed"] + attempt
        model = build(spec, seed).to(spec["save_dtype"]).to(F32)
        mg.force_eager_experts(model)
        ok, score, info, stats = screen(spec, model.eval(), prompts)
        print(f"  seed {seed}: ok={ok} score={score:.3f} {info} gen={[s['generated'] for s in stats]}")
        if best is None or score > best[1]:
            best = (seed, score)
        if ok:
            break
    seed = best[0]
    if best[1] < 1.0:
        print(f"  WARNING: no seed met every threshold; using the best, seed {seed} (score {best[1]:.3f})")

    a = build(spec, seed).state_dict()
    b = build(spec, seed).state_dict()
    if any(not torch.equal(a[k], b[k]) for k in a) or any(
            t.is_floating_point() and not torch.isfinite(t).all() for t in a.values()):
        raise RuntimeError("weights not reproducible or not finite")
    del a, b

    model = build(spec, seed).to(spec["save_dtype"])
    tmp = tempfile.mkdtemp(prefix=name + "-")
    model.save_pretrained(tmp)
    ref_logits = None
    if spec["spelling"] == "hub":
        v5 = mg.load_f32(spec, tmp)
        with torch.no_grad():
            ref_logits = thinker_forward(v5.thinker, prompts[-1][1], prompts[-1][2])
        del v5
        cfg_path = os.path.join(tmp, "config.json")
        mg.write_json(cfg_path, mg.to_hub_spelling(mg.read_json(cfg_path), spec["hub_version"], spec.get("hub_extra")))
    reloaded = mg.load_f32(spec, tmp)
    n_w = mg.compare_weights(model, reloaded)
    print(f"    reloaded {n_w} tensors equal to the saved ones; experts={mg.experts_impls(reloaded)}")
    theta = mg.check_rope(spec, reloaded)
    th = reloaded.thinker
    if ref_logits is not None:
        with torch.no_grad():
            hub_logits = thinker_forward(th, prompts[-1][1], prompts[-1][2])
        if not torch.equal(ref_logits, hub_logits):
            raise RuntimeError("hub-spelled config gives different multimodal logits from the transformers-5 config")
        print("    hub-spelled config.json reproduces the transformers-5 config's multimodal logits bit for bit")

    dest = os.path.join(out_root, "models", name)
    if os.path.isdir(dest):
        shutil.rmtree(dest)
    shutil.copytree(tmp, dest)
    shutil.rmtree(tmp)
    # the processors' settings, as a hub repository's preprocessor_config.json holds them (one file for both)
    try:
        pre = json.loads(ip.to_json_string())
        pre.update(json.loads(fe.to_json_string()))
        for k in ("mel_filters", "window"):
            pre.pop(k, None)
        pre["processor_class"] = "Qwen3OmniMoeProcessor"
        mg.write_json(os.path.join(dest, "preprocessor_config.json"), pre)
    except Exception:  # noqa: BLE001 - the goldens matter more than this file
        traceback.print_exc()
    gdir = os.path.join(dest, "goldens")
    os.makedirs(gdir, exist_ok=True)
    saved_cfg = mg.read_json(os.path.join(dest, "config.json"))
    files, names, dtypes = mg.saved_tensor_summary(dest)
    summary = dict(
        checkpoint=name, seed=seed, source=f"transformers {transformers.__version__}", torch=torch.__version__,
        model_type=saved_cfg["model_type"], config_spelling=spec["spelling"], saved_dtypes=dtypes,
        weight_files=files, tensors=len(names), layers=mg.describe_layers(reloaded, spec["kind"]), rope_theta=theta,
        text_config=mg.text_config_highlights(saved_cfg, spec["kind"]), scales=mg.SCALES, encoder_scales=ENC_SCALES,
        special_tokens=spec["tokens"], text_ids_below=spec["text_ids_below"],
        feature_extractor=type(fe).__name__, image_processor=type(ip).__name__, audio_kwargs=audio_kwargs(),
        media={"audio": "tests/data/media/speech.wav", "image": "tests/data/media/shapes.png"},
        goldens=[],
    )
    for pn, ids, media, info in prompts:
        with torch.no_grad():
            rec, st = run_prompt(th, ids, media, True, spec["text_ids_below"])
        g = golden_tensors(th, ids, media, rec, st)
        check_scatter(th, ids, media, g)
        plain = placeholder_only(th, ids, spec["text_ids_below"])
        ds = deepstack_weight(g)
        meta = {
            "format": "segpipe-golden/1", "model_type": saved_cfg["model_type"],
            "source": f"transformers {transformers.__version__}", "compute_dtype": "float32",
            "min_top2_margin": repr(float(st["min_top2_margin"])), "prompt": pn,
            "media": ",".join(k for k in ("audio", "image") if any(x.startswith(k) for x in g)),
            "deepstack_layers": str(sum(1 for k in g if k.startswith("visual.deepstack."))),
            "layer_output": "after DeepStack (the residual stream the next layer reads)",
        }
        path = os.path.join(gdir, f"{pn}.safetensors")
        mg.save_golden(g, path, meta)
        print(f"    {pn}: T={len(ids)} margin={st['min_top2_margin']:.4f} router_gap={st['router_min_gap']:.4g} "
              f"generated={st['generated']} placeholder-only={plain} deepstack_rel={ds}")
        print(f"      shapes={ {k: list(v.shape) for k, v in g.items()} }")
        summary["goldens"].append(dict(
            file=f"{pn}.safetensors", prompt_len=len(ids), input_ids=ids.tolist(), placeholders=info,
            generated_ids=st["generated"], generated_ids_placeholders_only=plain,
            min_top2_margin=float(st["min_top2_margin"]), step_margins=[round(m, 6) for m in st["margins"]],
            min_router_topk_gap=st["router_min_gap"] if math.isfinite(st["router_min_gap"]) else None,
            deepstack_relative_change=ds, rope_deltas=int(g["rope_deltas"][0]), sha256=mg.sha256(path),
        ))
    try:
        tables = reference_tables(th, spec)
        tpath = os.path.join(gdir, "reference_tables.json")
        mg.write_json(tpath, tables)
        summary["reference_tables"] = dict(file="reference_tables.json", sha256=mg.sha256(tpath),
                                           rope_index_cases=len(tables["rope_index"]))
        print(f"    reference_tables.json: {len(tables['rope_index'])} get_rope_index cases")
    except Exception:  # noqa: BLE001 - the goldens above stand without it
        traceback.print_exc()
    mg.write_json(os.path.join(gdir, "summary.json"), summary)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", required=True, help="repository root (reads tests/data/media, tools/goldens)")
    ap.add_argument("--out", required=True, help="output root; files land at their repository paths under it")
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"transformers {transformers.__version__}, torch {torch.__version__}, python {sys.version.split()[0]}")
    failures = []
    for spec in CHECKPOINTS:
        if args.only and spec["name"] not in args.only:
            continue
        t0 = time.time()
        try:
            make_checkpoint(copy.deepcopy(spec), os.path.abspath(args.repo), os.path.abspath(args.out))
            print(f"  ({time.time() - t0:.1f} s)")
        except Exception:  # noqa: BLE001 - report and go on with the other checkpoint
            traceback.print_exc()
            failures.append(spec["name"])
    if failures:
        print("FAILED:", failures)
        sys.exit(1)
    print("all multimodal checkpoints written")


if __name__ == "__main__":
    main()
