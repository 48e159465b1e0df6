#!/usr/bin/env python3
"""Vision goldens for issue 16: the reference image processor and the Qwen3-Omni vision tower.

Usage (repository root, CPU, float32, no network):
    CUDA_VISIBLE_DEVICES= python3 tools/goldens/media/vision.py --repo . --out OUTDIR

Writes only under OUTDIR, at the paths where the files are committed:
    OUTDIR/tests/data/media/goldens/image_processor.safetensors
    OUTDIR/tests/data/media/goldens/<checkpoint>/vision_encoder_<case>.safetensors
Tensor names and metadata: tools/goldens/media/README-vision.md.

Written against transformers 5.17 (torchvision backend of Qwen2VLImageProcessor by default), torch 2.11,
pillow, torchvision. Each piece runs inside try/except: a failure prints its traceback and the rest goes on;
the exit status is 1 if anything failed.
"""

import argparse
import copy
import io
import json
import os
import struct
import sys
import tempfile
import traceback
import zlib

import numpy as np
import torch
from PIL import Image

import transformers
from safetensors import safe_open
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tools/goldens: make_goldens.py
import make_goldens as mg  # noqa: E402

FAILURES = []
MEDIA = "tests/data/media"
GOLDEN_DIR = "tests/data/media/goldens"
IMAGES = [("shapes", "shapes.png"), ("photo", "photo.jpg")]

# Preprocessor settings. "real" is Qwen/Qwen3-Omni-30B-A3B-*'s preprocessor_config.json: Qwen2VLImageProcessor,
# patch 16, merge 2, temporal 2, min_pixels 3136, max_pixels 12845056, mean = std = 0.5 (the SigLIP-2 values
# of the Qwen3 vision towers). The tiny ones use the tiny checkpoints' patch 4 with min/max pixels chosen so
# that both test images give a few dozen patches ("tiny", "tiny_small": max_pixels branch) or are scaled up
# ("tiny_min": min_pixels branch). All use the reference's bicubic resize and rescale factor 1/255.
HALF = [0.5, 0.5, 0.5]
CONFIGS = {
    "real": dict(patch_size=16, merge_size=2, temporal_patch_size=2, min_pixels=3136, max_pixels=12845056,
                 image_mean=HALF, image_std=HALF),
    "tiny": dict(patch_size=4, merge_size=2, temporal_patch_size=2, min_pixels=256, max_pixels=1600,
                 image_mean=HALF, image_std=HALF),
    "tiny_small": dict(patch_size=4, merge_size=2, temporal_patch_size=2, min_pixels=256, max_pixels=1024,
                       image_mean=HALF, image_std=HALF),
    "tiny_min": dict(patch_size=4, merge_size=2, temporal_patch_size=2, min_pixels=40000, max_pixels=12845056,
                     image_mean=HALF, image_std=HALF),
    # The class defaults (CLIP mean/std, patch 14, 56*56 .. 28*28*1280), so that a change of defaults shows.
    "defaults": None,
}

# Vision-encoder cases per checkpoint: (case, [(image, processor config), ...]). "pair" runs both images in
# one call (two cu_seqlens segments of different grids).
ENCODER_CASES = [
    ("shapes", [("shapes", "tiny")]),
    ("photo", [("photo", "tiny_small")]),
    ("pair", [("shapes", "tiny"), ("photo", "tiny_small")]),
]
CHECKPOINTS = ["tiny-qwen3-omni", "tiny-qwen3-omni-v5"]


def step(name, fn, *a, **kw):
    print(f"== {name}", flush=True)
    try:
        return fn(*a, **kw)
    except Exception:  # noqa: BLE001 - keep going, report at the end
        traceback.print_exc()
        FAILURES.append(name)
        return None


def save_golden(tensors, path, meta):
    """make_goldens.save_golden: the header rewritten with sorted keys (reproducible), checked after."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    mg.save_golden(tensors, path, meta)
    print(f"   wrote {path} ({os.path.getsize(path)} bytes, {len(tensors)} tensors)")


def convert_to_rgb_fn():
    """transformers' convert_to_rgb (what the processor applies with do_convert_rgb), wherever this version
    keeps it."""
    try:
        from transformers.image_transforms import convert_to_rgb
        return convert_to_rgb
    except ImportError:
        from transformers.image_utils import convert_to_rgb
        return convert_to_rgb


def u8(a):
    return torch.from_numpy(np.ascontiguousarray(np.asarray(a, dtype=np.uint8)))


# ---------------------------------------------------------------------------------------------------------
# processors


def processor_classes():
    """The torchvision-backed class (the default in transformers 5) and the PIL one, where they exist."""
    from transformers.models.qwen2_vl import image_processing_qwen2_vl as m
    out = {"default": m.Qwen2VLImageProcessor}
    try:
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
        out["pil"] = Qwen2VLImageProcessorPil
    except Exception:  # noqa: BLE001
        try:  # transformers 4 spelling: the slow class is the PIL one, the fast one is torchvision
            from transformers.models.qwen2_vl.image_processing_qwen2_vl_fast import Qwen2VLImageProcessorFast
            out["pil"] = m.Qwen2VLImageProcessor
            out["default"] = Qwen2VLImageProcessorFast
        except Exception:  # noqa: BLE001
            pass
    return out


def auto_processor(cfg):
    """What AutoImageProcessor (and so Qwen3OmniMoeProcessor.from_pretrained) builds from the model's
    preprocessor_config.json."""
    from transformers import AutoImageProcessor
    with tempfile.TemporaryDirectory() as d:
        pc = dict(cfg)
        pc.update(image_processor_type="Qwen2VLImageProcessor", processor_class="Qwen3OmniMoeProcessor",
                  feature_extractor_type="WhisperFeatureExtractor")
        with open(os.path.join(d, "preprocessor_config.json"), "w") as f:
            json.dump(pc, f)
        return AutoImageProcessor.from_pretrained(d)


CLASS_SIZE = {}  # each class's `size` attribute as imported


def make_processor(cls, cfg):
    """transformers 5's __init__ writes min/max_pixels into the class attribute `size` (a shared dict), so a
    processor made after another one would not see the true defaults: put the imported value back first."""
    if "size" in CLASS_SIZE.setdefault(cls, {}):
        cls.size = copy.deepcopy(CLASS_SIZE[cls]["size"])
    elif isinstance(getattr(cls, "size", None), dict):
        CLASS_SIZE[cls]["size"] = copy.deepcopy(cls.size)
    if cfg is None:
        return cls()
    return cls(**cfg)


def effective_settings(proc):
    size = getattr(proc, "size", None)
    if size is not None and not isinstance(size, dict):
        size = {k: getattr(size, k) for k in ("shortest_edge", "longest_edge", "min_pixels", "max_pixels")
                if getattr(size, k, None) is not None}
    res = getattr(proc, "resample", None)
    try:
        res_int = int(res)
    except Exception:  # noqa: BLE001 - an InterpolationMode has no int value
        res_int = None
    return dict(
        cls=type(proc).__name__,
        patch_size=int(proc.patch_size), merge_size=int(proc.merge_size),
        temporal_patch_size=int(proc.temporal_patch_size),
        size=size, min_pixels=getattr(proc, "min_pixels", None), max_pixels=getattr(proc, "max_pixels", None),
        image_mean=[float(x) for x in proc.image_mean], image_std=[float(x) for x in proc.image_std],
        rescale_factor=float(proc.rescale_factor), do_resize=bool(proc.do_resize),
        do_rescale=bool(proc.do_rescale), do_normalize=bool(proc.do_normalize),
        do_convert_rgb=bool(getattr(proc, "do_convert_rgb", True)),
        resample=str(res), resample_int=res_int,
    )


def run_processor(proc, img):
    """proc(images=[img]) with its resize wrapped so that the resized image it produced is kept too."""
    captured = {}
    orig = proc.resize

    def wrapped(*a, **kw):
        out = orig(*a, **kw)
        captured["resized"] = out
        return out

    proc.resize = wrapped
    try:
        out = proc(images=[img], return_tensors="pt")
    finally:
        del proc.resize  # back to the class method
    pv = out["pixel_values"]
    grid = out["image_grid_thw"]
    pv = pv.reshape(-1, pv.shape[-1]) if pv.dim() == 3 else pv
    resized = captured.get("resized")
    if resized is not None:
        resized = torch.as_tensor(np.asarray(resized)) if not torch.is_tensor(resized) else resized
    return pv.to(torch.float32), grid.to(torch.int64).reshape(-1, 3), resized


def resized_to_chw_u8(r):
    """The captured resize output as uint8 [3, h, w] (torchvision: [1, 3, h, w] tensor; PIL backend: numpy
    in channels-first or -last layout)."""
    t = r.detach().cpu()
    while t.dim() > 3:
        t = t[0]
    if t.shape[0] != 3 and t.shape[-1] == 3:
        t = t.permute(2, 0, 1)
    if t.dtype != torch.uint8:
        if t.is_floating_point() and float(t.max()) <= 1.0 + 1e-6:
            raise RuntimeError(f"resize output is float in [0,1] ({t.dtype}); not a uint8 image")
        if not torch.equal(t, t.round()):
            raise RuntimeError(f"resize output {t.dtype} has fractions; the resize is not uint8")
        t = t.round().clamp(0, 255).to(torch.uint8)
    return t.contiguous()


def processor_goldens(repo, out_root):
    tensors, meta = {}, {}
    classes = processor_classes()
    for cls in classes.values():
        make_processor(cls, None)  # snapshot the class defaults before any other processor is made
    meta["processor_classes"] = json.dumps({k: v.__name__ for k, v in classes.items()})
    try:
        auto = auto_processor(CONFIGS["real"])
        meta["auto_image_processor"] = type(auto).__name__
        print(f"   AutoImageProcessor for the real preprocessor_config.json -> {type(auto).__name__}")
    except Exception:  # noqa: BLE001
        traceback.print_exc()
        FAILURES.append("auto_image_processor")
        auto = None
    meta["torch_cpu_capability"] = str(torch.backends.cpu.get_cpu_capability())
    try:
        import torchvision
        meta["torchvision"] = torchvision.__version__
    except Exception:  # noqa: BLE001
        pass
    import PIL
    meta["pillow"] = PIL.__version__
    meta["torch"] = torch.__version__

    for name, fname in IMAGES:
        path = os.path.join(repo, MEDIA, fname)

        def one_image(name=name, path=path):
            img = Image.open(path)
            img.load()
            tensors[f"{name}.decoded"] = u8(np.asarray(img.convert("RGB")))
            tensors[f"{name}.rgb_input"] = u8(np.asarray(convert_to_rgb_fn()(img)))
            meta[f"{name}.file"] = json.dumps(dict(path=f"{MEDIA}/{os.path.basename(path)}", mode=img.mode,
                                                   size=list(img.size), format=img.format))
        step(f"decode {name}", one_image)

    for cname, cfg in CONFIGS.items():
        for backend, cls in classes.items():
            if backend == "pil" and cname not in ("real", "tiny"):
                continue  # the PIL backend only for comparison: its resize on two settings is enough

            def one_config(cname=cname, cfg=cfg, backend=backend, cls=cls):
                proc = make_processor(cls, cfg)
                if backend == "default" and cname == "real" and auto is not None:
                    if type(auto) is not cls:
                        print(f"   NOTE: AutoImageProcessor gave {type(auto).__name__}, not {cls.__name__}; "
                              "recording the Auto one as the default")
                    proc = auto
                prefix = cname if backend == "default" else f"pil.{cname}"
                meta[f"config.{prefix}"] = json.dumps(effective_settings(proc), sort_keys=True)
                for name, fname in IMAGES:
                    img = Image.open(os.path.join(repo, MEDIA, fname))
                    img.load()
                    pv, grid, resized = run_processor(proc, img)
                    p = f"{prefix}.{name}"
                    if resized is not None:
                        try:
                            tensors[f"{p}.resized"] = resized_to_chw_u8(resized)
                        except Exception:  # noqa: BLE001 - keep pixel_values even if this one fails
                            traceback.print_exc()
                            FAILURES.append(f"{p}.resized")
                    if backend == "default":
                        tensors[f"{p}.pixel_values"] = pv.contiguous()
                        tensors[f"{p}.image_grid_thw"] = grid.contiguous()
                        merge = int(proc.merge_size)
                        # Qwen3OmniMoeProcessor.replace_multimodal_special_tokens: grid.prod() // merge**2
                        tensors[f"{p}.placeholder_tokens"] = (grid.prod(-1) // (merge * merge)).to(torch.int64)
                    print(f"   {p}: grid={grid.tolist()} pixel_values={list(pv.shape)} "
                          f"resized={None if resized is None else list(resized.shape)}")
            step(f"processor {backend}.{cname}", one_config)

    step("decoder variants", decoder_variants, repo, tensors, meta)

    meta.update({"format": "segpipe-golden/1", "source": f"transformers {transformers.__version__}",
                 "compute_dtype": "float32", "kind": "image_processor"})
    path = os.path.join(out_root, GOLDEN_DIR, "image_processor.safetensors")
    save_golden(tensors, path, meta)


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def raw_png(arr, color_type, bit_depth):
    """A PNG written by hand (PIL cannot write 16-bit RGB): filter 0 on every row."""
    h, w = arr.shape[:2]
    a = arr.astype(">u2" if bit_depth == 16 else np.uint8)
    rows = b"".join(b"\x00" + a[y].tobytes() for y in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(rows, 9))
            + png_chunk(b"IEND", b""))


def decoder_variants(repo, tensors, meta):
    """Small encoded images of the colour types our decoder must handle, made here with PIL from a crop of
    shapes.png / photo.jpg, stored as bytes beside what PIL decodes (convert("RGB")) and what the processor
    feeds on (transformers' convert_to_rgb: alpha composited on white)."""
    try:
        convert_to_rgb = convert_to_rgb_fn()
    except Exception:  # noqa: BLE001 - keep the PIL decodes at least
        traceback.print_exc()
        FAILURES.append("convert_to_rgb import")
        convert_to_rgb = None
    base = Image.open(os.path.join(repo, MEDIA, "shapes.png")).convert("RGB").crop((70, 40, 134, 88))  # 64x48
    photo = Image.open(os.path.join(repo, MEDIA, "photo.jpg")).convert("RGB").crop((100, 80, 164, 128))
    rgb = np.asarray(base).astype(np.int32)
    yy, xx = np.mgrid[0:48, 0:64]
    alpha = ((xx * 4 + yy * 2) % 256).astype(np.uint8)
    alpha[:8, :8] = 0  # fully transparent corner: PIL copies the background there
    variants = {}

    def save(img, fmt, **kw):
        b = io.BytesIO()
        img.save(b, format=fmt, **kw)
        return b.getvalue()

    variants["gray8.png"] = save(base.convert("L"), "PNG")
    variants["gray1.png"] = save(base.convert("1"), "PNG")
    variants["gray_alpha.png"] = save(Image.merge("LA", (base.convert("L"), Image.fromarray(alpha))), "PNG")
    variants["palette.png"] = save(base.quantize(colors=16), "PNG")
    pal = base.quantize(colors=16)
    variants["palette_trns.png"] = save(pal, "PNG", transparency=int(np.asarray(pal)[0, 0]))
    pal4 = base.quantize(colors=4)
    variants["palette4bit.png"] = save(pal4, "PNG", bits=2)
    rgba = base.copy()
    rgba.putalpha(Image.fromarray(alpha))
    variants["rgba8.png"] = save(rgba, "PNG")
    variants["gray_trns.png"] = save(base.convert("L"), "PNG", transparency=int(np.asarray(base.convert("L"))[0, 0]))
    variants["rgb_trns.png"] = save(base, "PNG", transparency=tuple(int(v) for v in np.asarray(base)[0, 0]))
    g16 = np.clip(rgb[..., 0] * 257 + yy * 3, 0, 65535).astype(np.uint16)
    variants["gray16.png"] = raw_png(g16, 0, 16)
    variants["gray16_small.png"] = raw_png((rgb[..., 1]).astype(np.uint16), 0, 16)  # all values < 256
    variants["rgb16.png"] = raw_png(np.clip(rgb * 257 + xx[..., None] * 5, 0, 65535).astype(np.uint16), 2, 16)
    rgba16 = np.concatenate([(rgb * 257).astype(np.uint16), (alpha.astype(np.uint16) * 257)[..., None]], -1)
    variants["rgba16.png"] = raw_png(rgba16, 6, 16)
    variants["gray8.jpg"] = save(photo.convert("L"), "JPEG", quality=90)
    variants["cmyk.jpg"] = save(photo.convert("CMYK"), "JPEG", quality=90)
    variants["progressive.jpg"] = save(photo, "JPEG", quality=85, progressive=True)
    variants["yuv444.jpg"] = save(photo, "JPEG", quality=95, subsampling=0)
    variants["yuv422.jpg"] = save(photo, "JPEG", quality=80, subsampling=1)
    variants["odd_size.jpg"] = save(photo.crop((0, 0, 37, 29)), "JPEG", quality=90)

    listing = {}
    for name, data in variants.items():
        try:
            img = Image.open(io.BytesIO(data))
            img.load()
            entry = dict(mode=img.mode, size=list(img.size), info={k: str(v) for k, v in img.info.items()
                                                                   if k in ("transparency", "dpi", "adobe")})
            tensors[f"files.{name}.bytes"] = u8(np.frombuffer(data, dtype=np.uint8))
            try:
                tensors[f"files.{name}.decoded"] = u8(np.asarray(img.convert("RGB")))
            except Exception as e:  # noqa: BLE001
                entry["decoded_error"] = repr(e)
            try:
                if convert_to_rgb is None:
                    raise RuntimeError("convert_to_rgb not found")
                tensors[f"files.{name}.rgb_input"] = u8(np.asarray(convert_to_rgb(img)))
            except Exception as e:  # noqa: BLE001
                entry["rgb_input_error"] = repr(e)
            listing[name] = entry
            print(f"   {name}: {entry}")
        except Exception:  # noqa: BLE001
            traceback.print_exc()
            FAILURES.append(f"variant {name}")
    meta["files"] = json.dumps(listing, sort_keys=True)


# ---------------------------------------------------------------------------------------------------------
# vision tower


def load_model(path):
    from transformers import Qwen3OmniMoeForConditionalGeneration as M
    kw = dict(dtype=torch.float32, attn_implementation="eager")
    try:
        model = M.from_pretrained(path, **kw)
    except TypeError:
        model = M.from_pretrained(path, torch_dtype=torch.float32, attn_implementation="eager")
    return model.eval()


def processed(repo, items, vcfg):
    """pixel_values and grids of [(image, config name)] with the checkpoint's patch/merge/temporal sizes."""
    cls = processor_classes()["default"]
    pvs, grids = [], []
    for name, cname in items:
        cfg = dict(CONFIGS[cname])
        cfg.update(patch_size=vcfg.patch_size, merge_size=vcfg.spatial_merge_size,
                   temporal_patch_size=vcfg.temporal_patch_size)
        proc = make_processor(cls, cfg)
        img = Image.open(os.path.join(repo, MEDIA, dict(IMAGES)[name]))
        img.load()
        pv, grid, _ = run_processor(proc, img)
        pvs.append(pv)
        grids.append(grid)
    return torch.cat(pvs, 0), torch.cat(grids, 0)


def encoder_case(repo, out_root, ckpt, model, case, items):
    thinker = model.thinker
    visual = thinker.visual
    vcfg = visual.config
    pv, grid = processed(repo, items, vcfg)
    rec = {}
    hooks = []

    def keep(name):
        def hook(m, i, o):
            t = o[0] if isinstance(o, tuple) else o
            if hasattr(t, "last_hidden_state"):
                t = t.last_hidden_state
            rec[name] = t.detach().to(torch.float32).clone()
        return hook

    hooks.append(visual.patch_embed.register_forward_hook(keep("patch_embed")))

    def blocks_input(m, args, kwargs):
        t = args[0] if args else kwargs.get("hidden_states")
        rec["blocks_input"] = t.detach().to(torch.float32).clone()

    hooks.append(visual.blocks[0].register_forward_pre_hook(blocks_input, with_kwargs=True))
    for i, blk in enumerate(visual.blocks):
        hooks.append(blk.norm1.register_forward_hook(keep(f"blocks.{i}.norm1")))
        hooks.append(blk.attn.register_forward_hook(keep(f"blocks.{i}.attn")))
        hooks.append(blk.mlp.register_forward_hook(keep(f"blocks.{i}.mlp")))
        hooks.append(blk.register_forward_hook(keep(f"blocks.{i}.output")))
    mergers = getattr(visual, "merger_list", None) or getattr(visual, "deepstack_merger_list", None)
    for j, mg in enumerate(mergers):
        hooks.append(mg.register_forward_hook(keep(f"deepstack.{j}")))
        if hasattr(mg, "ln_q"):
            hooks.append(mg.ln_q.register_forward_hook(keep(f"deepstack.{j}.norm")))
    hooks.append(visual.merger.register_forward_hook(keep("merged")))
    if hasattr(visual.merger, "ln_q"):
        hooks.append(visual.merger.ln_q.register_forward_hook(keep("merged.norm")))

    how = None
    with torch.no_grad():
        try:
            out = thinker.get_image_features(pv, grid)
            how = "thinker.get_image_features"
        except Exception:  # noqa: BLE001
            traceback.print_exc()
            out = visual(pv, grid_thw=grid)
            how = "thinker.visual"
        for h in hooks:
            h.remove()
        # What the call returned, checked against the hooks: (merged, [deepstack]) or a ModelOutput with
        # pooler_output / deepstack_features (possibly split per image).
        ret_merged, ret_ds = None, None
        if isinstance(out, tuple) and not hasattr(out, "keys"):
            ret_merged, ret_ds = out[0], (out[1] if len(out) > 1 else None)
        else:
            ret_merged = getattr(out, "pooler_output", None)
            ret_ds = getattr(out, "deepstack_features", None)
            if ret_merged is None and hasattr(out, "last_hidden_state"):
                ret_merged = out.last_hidden_state
        if isinstance(ret_merged, (list, tuple)):
            ret_merged = torch.cat(list(ret_merged), 0)
        checks = {}
        if ret_merged is not None:
            checks["merged_equals_return"] = bool(torch.equal(ret_merged.to(torch.float32), rec["merged"]))
        if ret_ds is not None:
            for j, d in enumerate(ret_ds):
                d = torch.cat(list(d), 0) if isinstance(d, (list, tuple)) else d
                checks[f"deepstack.{j}_equals_return"] = bool(torch.equal(d.to(torch.float32), rec[f"deepstack.{j}"]))
        rec["pos_embed"] = visual.fast_pos_embed_interpolate(grid).detach().to(torch.float32)
        try:
            rec["rotary_freqs"] = visual.rot_pos_emb(grid).detach().to(torch.float32)
        except Exception:  # noqa: BLE001
            traceback.print_exc()
        checks["blocks_input_is_patch_plus_pos"] = bool(
            torch.equal(rec["patch_embed"] + rec["pos_embed"], rec["blocks_input"]))
    tensors = {"pixel_values": pv, "image_grid_thw": grid}
    tensors.update(rec)
    for k, t in tensors.items():
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise RuntimeError(f"{ckpt}/{case}: {k} is not finite")
    meta = {
        "format": "segpipe-golden/1", "source": f"transformers {transformers.__version__}",
        "compute_dtype": "float32", "model_type": model.config.model_type, "kind": "vision_encoder",
        "checkpoint": f"models/{ckpt}", "called": how, "checks": json.dumps(checks, sort_keys=True),
        "images": json.dumps([dict(image=f"{MEDIA}/{dict(IMAGES)[n]}", config=c) for n, c in items]),
        "processor_configs": json.dumps({c: CONFIGS[c] for _, c in items}, sort_keys=True),
        "deepstack_visual_indexes": json.dumps(list(vcfg.deepstack_visual_indexes)),
        "hidden_act": str(vcfg.hidden_act), "attn_implementation": "eager",
    }
    path = os.path.join(out_root, GOLDEN_DIR, ckpt, f"vision_encoder_{case}.safetensors")
    save_golden(tensors, path, meta)
    print(f"   {ckpt}/{case}: called {how}; grid={grid.tolist()} merged={list(rec['merged'].shape)} checks={checks}")
    bad = [k for k, v in checks.items() if not v]
    if bad:
        raise RuntimeError(f"{ckpt}/{case}: consistency checks failed: {bad}")


def encoder_goldens(repo, out_root, ckpt):
    model = load_model(os.path.join(repo, "models", ckpt))
    for case, items in ENCODER_CASES:
        step(f"encoder {ckpt}/{case}", encoder_case, repo, out_root, ckpt, model, case, items)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", required=True, help="repository root (reads tests/data/media and models/)")
    ap.add_argument("--out", required=True, help="output root; files go to OUT/<path in the repository>")
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    print(f"transformers {transformers.__version__}, torch {torch.__version__}, "
          f"cpu capability {torch.backends.cpu.get_cpu_capability()}")
    step("image processor", processor_goldens, args.repo, args.out)
    for ckpt in CHECKPOINTS:
        step(f"encoder {ckpt}", encoder_goldens, args.repo, args.out, ckpt)
    if FAILURES:
        print(f"FAILED: {FAILURES}")
        sys.exit(1)
    print("all vision goldens written")


if __name__ == "__main__":
    main()
