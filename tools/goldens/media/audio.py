#!/usr/bin/env python3
"""Audio goldens for issue 16: the Qwen3-Omni feature extraction and the audio tower, recorded with transformers.

Usage (from anywhere; writes only under --out, at the paths where the files are committed):

    CUDA_VISIBLE_DEVICES= python3 tools/goldens/media/audio.py --repo REPO_ROOT --out OUTDIR

Needs torch, transformers (written against 5.17.0), numpy, safetensors; uses soxr, torchaudio, scipy when
present. CPU, float32, one thread. Every piece runs in its own try/except: a failure prints a traceback and
the rest goes on; the exit code is 1 if anything failed. What it writes, tensor by tensor, and why each case
exists: tools/goldens/media/README-audio.md.

1. OUTDIR/tests/data/media/goldens/audio_features.safetensors: for each file in tests/data/media, the 16 kHz
   mono waveform that the feature extractor was given, the decoded samples at the file's own rate (resampled
   files), the waveform of every available resampler, the Qwen3-Omni processor's log-mel features (a
   WhisperFeatureExtractor configured as Qwen3-Omni's preprocessor_config.json and called with the
   processor's audio kwargs), the numpy-path features on the same waveform, the attention mask, the feature
   length and the number of audio placeholder tokens.
2. OUTDIR/tests/data/media/goldens/<checkpoint>/audio_encoder_<stem>_<case>.safetensors for the committed
   tiny Omni checkpoints: the thinker's get_audio_features on features made with feature_size = the
   checkpoint's num_mel_bins, with forward hooks on every boundary of the audio tower.
3. OUTDIR/tests/data/media/goldens/audio_summary.json: what ran, what failed, sha256 of every file.
"""

import argparse
import hashlib
import inspect
import json
import math
import os
import struct
import sys
import traceback
import wave

import numpy as np
import torch
import transformers
from safetensors import safe_open
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))  # tools/goldens: make_goldens.py
import make_goldens as mg  # noqa: E402
from flac_decode import decode_flac  # noqa: E402

GOLDEN_DIR = os.path.join("tests", "data", "media", "goldens")
MEDIA_DIR = os.path.join("tests", "data", "media")
TARGET_RATE = 16000

# WhisperFeatureExtractor settings of Qwen3-Omni's preprocessor_config.json (Qwen/Qwen3-Omni-30B-A3B-*:
# the same audio block as Qwen2.5-Omni's: feature_size 128, 16 kHz, hop 160, n_fft 400, chunk_length 300,
# dither 0, padding_value 0, return_attention_mask true). chunk_length only bounds truncation, which the
# processor turns off.
FE_CONFIG = dict(
    feature_size=128, sampling_rate=16000, hop_length=160, n_fft=400, chunk_length=300, padding_value=0.0,
    dither=0.0, return_attention_mask=True,
)
# Qwen3OmniMoeProcessorKwargs._defaults["audio_kwargs"] as read in the 5.x source; the script prefers the
# installed class's own values and records which it used.
FALLBACK_AUDIO_KWARGS = {"sampling_rate": 16000, "padding": True, "truncation": False, "return_attention_mask": True}

FILES = ["speech.wav", "tone.flac", "speech_22k.wav", "chord_44k_stereo.wav"]
ENCODER_FILES = ["speech.wav", "tone.flac"]
CHECKPOINTS = ["tiny-qwen3-omni", "tiny-qwen3-omni-v5"]
# Encoder cases. The tiny checkpoints carry n_window 8; transformers counts 13 tokens per full chunk of
# 2*n_window frames (hard-coded for n_window 50), so with n_window 8 its own cu_seqlens disagree with the
# conv output for any input of 16 frames or more. `asis` tries the checkpoint's config on the whole file
# (recorded only if the reference runs); `clip15` keeps the config and feeds the first 15 frames (one
# partial chunk: consistent); `nw50` sets the runtime-only n_window 50 / n_window_infer 100 (no weight
# depends on them) so that several chunks, a tail chunk and two attention windows are exercised as the
# real model's arithmetic does them.
ENCODER_CASES = [
    ("asis", None, None),
    ("clip15", None, 15),
    ("nw50", dict(n_window=50, n_window_infer=100), None),
]

FAILURES = []
SUMMARY = {"source": f"transformers {transformers.__version__}", "torch": torch.__version__, "features": {},
           "encoders": {}, "errors": [], "files": {}}


def fail(what):
    tb = traceback.format_exc()
    print(f"FAILED: {what}\n{tb}", flush=True)
    FAILURES.append(what)
    SUMMARY["errors"].append({"what": what, "error": tb.strip().splitlines()[-1]})


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def save_golden(tensors, path, meta):
    """make_goldens.save_golden (sorted, reproducible header; checked after the rewrite), refusing
    non-finite tensors first."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    for k, t in tensors.items():
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise RuntimeError(f"{path}: {k} is not finite")
    mg.save_golden(tensors, path, meta)
    print(f"  wrote {path} ({len(tensors)} tensors)", flush=True)


def base_meta(**extra):
    meta = {"format": "segpipe-golden/1", "source": f"transformers {transformers.__version__}",
            "compute_dtype": "float32", "torch": torch.__version__, "numpy": np.__version__}
    meta.update({k: str(v) for k, v in extra.items()})
    return meta


# ----------------------------------------------------------------------------------------------- decoding

class DecoderMismatch(Exception):
    pass


def decode_native(path):
    """Samples as float32 [n, channels] scaled the way libsndfile (and so soundfile / librosa) scales 16-bit
    PCM: int / 32768. Returns (samples, rate, decoder name)."""
    if path.endswith(".wav"):
        with wave.open(path, "rb") as w:
            if w.getsampwidth() != 2:
                raise ValueError(f"{path}: only 16-bit WAV is used here")
            ch, rate = w.getnchannels(), w.getframerate()
            ints = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, ch)
        return (ints.astype(np.float32) / np.float32(32768.0)), rate, "python wave module, int16/32768"
    ints, rate, bps = decode_flac(path)
    if bps != 16:
        raise ValueError(f"{path}: only 16-bit FLAC is used here")
    name = "tools/goldens/media/flac_decode.py, int16/32768"
    try:  # cross-check with a library decoder where one works
        import torchaudio
        wav, r2 = torchaudio.load(path, normalize=True)
        same = r2 == rate and np.array_equal(wav.numpy().T, ints.astype(np.float32) / np.float32(32768.0))
        name += f"; torchaudio.load agrees: {same}"
        if not same:
            raise DecoderMismatch(f"{path}: torchaudio.load disagrees with flac_decode.py")
    except ImportError:
        name += "; no torchaudio"
    except DecoderMismatch:
        raise
    except Exception as e:  # torchaudio >= 2.9 needs torchcodec for load()
        name += f"; torchaudio.load unavailable ({type(e).__name__})"
    return ints.astype(np.float32) / np.float32(32768.0), rate, name


def to_mono(samples):
    """librosa.to_mono / torchcodec-based load_audio: the mean over channels, in float32."""
    if samples.shape[1] == 1:
        return samples[:, 0].copy()
    return np.mean(samples, axis=1, dtype=np.float32)


def resamplers():
    """Every resampler that is installed, in order of preference (first = the golden's primary)."""
    out = []
    try:
        import soxr

        def with_soxr(x, sr):
            # What librosa.load(sr=16000) does by default (res_type "soxr_hq"), including its fix_length to
            # ceil(n * ratio).
            y = soxr.resample(x, sr, TARGET_RATE, quality="HQ").astype(np.float32)
            n = int(math.ceil(len(x) * TARGET_RATE / sr))
            return np.pad(y, (0, max(0, n - len(y))))[:n]
        out.append(("soxr_hq", f"python-soxr {getattr(soxr, '__version__', '?')} quality HQ (librosa's default)",
                    with_soxr))
    except ImportError:
        pass
    try:
        import torchaudio.functional as AF

        def with_torchaudio(x, sr):
            return AF.resample(torch.from_numpy(x), sr, TARGET_RATE).numpy().astype(np.float32)
        import torchaudio
        out.append(("torchaudio", f"torchaudio {torchaudio.__version__} functional.resample defaults "
                    "(sinc_interp_hann, lowpass_filter_width 6, rolloff 0.99)", with_torchaudio))
    except ImportError:
        pass
    try:
        import scipy
        import scipy.signal

        def with_scipy(x, sr):
            g = math.gcd(sr, TARGET_RATE)
            return scipy.signal.resample_poly(x, TARGET_RATE // g, sr // g).astype(np.float32)
        out.append(("scipy_poly", f"scipy {scipy.__version__} signal.resample_poly defaults (kaiser 5.0)",
                    with_scipy))
    except ImportError:
        pass
    return out


# ------------------------------------------------------------------------------------------------- features

def processor_audio_kwargs():
    try:
        from transformers.models.qwen3_omni_moe.processing_qwen3_omni_moe import Qwen3OmniMoeProcessorKwargs
        kw = dict(Qwen3OmniMoeProcessorKwargs._defaults["audio_kwargs"])
        return kw, "Qwen3OmniMoeProcessorKwargs._defaults['audio_kwargs']"
    except Exception:
        fail("reading Qwen3OmniMoeProcessorKwargs._defaults (using the fallback)")
        return dict(FALLBACK_AUDIO_KWARGS), "fallback literal (5.x source)"


def placeholder_count(feature_length):
    """The processor's own _get_feat_extract_output_lengths (what it repeats <|AUDIO|> by)."""
    from transformers.models.qwen3_omni_moe import processing_qwen3_omni_moe as P
    return int(P._get_feat_extract_output_lengths(np.array([feature_length]))[0])


def extract(fe, audio_kwargs, wave16):
    """The processor's call: self.feature_extractor(audio, **audio_kwargs), audio given as a list (as
    apply_chat_template gives it)."""
    out = fe([wave16], return_tensors="np", **audio_kwargs)
    feats = np.asarray(out["input_features"], dtype=np.float32)[0]
    mask = np.asarray(out["attention_mask"])[0].astype(np.int64)
    return feats, mask


def numpy_path(fe, wave16):
    """WhisperFeatureExtractor's numpy path on the same waveform (float64 FFT); the processor uses the torch
    path whenever torch is installed. Signature differs across versions, hence the fallbacks."""
    fn = fe._np_extract_fbank_features
    params = list(inspect.signature(fn).parameters)
    if "device" in params or len(params) >= 2:
        out = fn(wave16[None, :], "cpu")
    else:
        out = fn(wave16)
    out = np.asarray(out, dtype=np.float32)
    return out[0] if out.ndim == 3 else out


def record_features(repo, out_dir):
    from transformers import WhisperFeatureExtractor
    fe = WhisperFeatureExtractor(**FE_CONFIG)
    audio_kwargs, kw_source = processor_audio_kwargs()
    print(f"feature extractor: {FE_CONFIG}\nprocessor audio kwargs ({kw_source}): {audio_kwargs}", flush=True)
    tensors = {"mel_filters": torch.from_numpy(np.asarray(fe.mel_filters, dtype=np.float64))}
    meta = base_meta(
        feature_extractor=json.dumps(FE_CONFIG, sort_keys=True),
        processor_audio_kwargs=json.dumps(audio_kwargs, sort_keys=True, default=str),
        processor_audio_kwargs_source=kw_source,
        extract_path=("torch" if transformers.is_torch_available() else "numpy"),
    )
    rs = resamplers()
    meta["resamplers"] = json.dumps([(n, d) for n, d, _ in rs])
    for fname in FILES:
        stem = os.path.splitext(fname)[0]
        try:
            samples, rate, decoder = decode_native(os.path.join(repo, MEDIA_DIR, fname))
            mono = to_mono(samples)
            info = {"rate": rate, "channels": int(samples.shape[1]), "samples": int(samples.shape[0]),
                    "decoder": decoder}
            if rate == TARGET_RATE:
                wave16 = mono
                info["resampler"] = "none"
            else:
                if not rs:
                    raise RuntimeError("no resampler installed (soxr, torchaudio, scipy)")
                tensors[f"{stem}.decoded"] = torch.from_numpy(samples.T.copy())  # [channels, n] at `rate`
                tensors[f"{stem}.decoded_mono"] = torch.from_numpy(mono)
                variants = {}
                for name, desc, fn in rs:
                    try:
                        variants[name] = fn(mono, rate)
                        tensors[f"{stem}.waveform_{name}"] = torch.from_numpy(variants[name])
                    except Exception:
                        fail(f"{fname}: resampling with {name}")
                if not variants:
                    raise RuntimeError("every resampler failed")
                primary = next(n for n, _, _ in rs if n in variants)
                wave16 = variants[primary]
                info["resampler"] = primary
                info["resamplers_recorded"] = sorted(variants)
            try:  # the reference's own loader, where its back end (torchcodec / librosa) is installed
                from transformers.audio_utils import load_audio
                la = np.asarray(load_audio(os.path.join(repo, MEDIA_DIR, fname), sampling_rate=TARGET_RATE),
                                dtype=np.float32)
                tensors[f"{stem}.waveform_load_audio"] = torch.from_numpy(la)
                info["load_audio"] = {"samples": int(la.shape[0]),
                                      "max_abs_diff_vs_waveform": float(np.max(np.abs(la - wave16)))
                                      if la.shape == wave16.shape else "length differs"}
            except Exception as e:
                info["load_audio"] = f"unavailable: {type(e).__name__}: {e}"
            feats, mask = extract(fe, audio_kwargs, wave16)
            length = int(mask.sum())
            tensors[f"{stem}.waveform"] = torch.from_numpy(wave16)
            tensors[f"{stem}.input_features"] = torch.from_numpy(feats)
            tensors[f"{stem}.feature_attention_mask"] = torch.from_numpy(mask)
            tensors[f"{stem}.feature_length"] = torch.tensor([length], dtype=torch.int64)
            info.update(waveform_samples=int(wave16.shape[0]), frames=int(feats.shape[1]), feature_length=length)
            try:
                tensors[f"{stem}.audio_tokens"] = torch.tensor([placeholder_count(length)], dtype=torch.int64)
                info["audio_tokens"] = int(tensors[f"{stem}.audio_tokens"][0])
            except Exception:
                fail(f"{fname}: processor _get_feat_extract_output_lengths")
            try:
                npf = numpy_path(fe, wave16)
                tensors[f"{stem}.input_features_numpy"] = torch.from_numpy(np.ascontiguousarray(npf))
                info["numpy_vs_torch_max_abs"] = float(np.max(np.abs(npf - feats))) if npf.shape == feats.shape \
                    else f"shape {npf.shape} vs {feats.shape}"
            except Exception:
                fail(f"{fname}: numpy-path features")
            SUMMARY["features"][stem] = info
            print(f"  {fname}: {info}", flush=True)
        except Exception:
            fail(f"features for {fname}")
    path = os.path.join(out_dir, GOLDEN_DIR, "audio_features.safetensors")
    save_golden(tensors, path, meta)
    SUMMARY["files"][os.path.relpath(path, out_dir)] = sha256(path)
    return fe


# --------------------------------------------------------------------------------------------------- encoder

def load_model(path):
    from transformers import Qwen3OmniMoeForConditionalGeneration
    kw = dict(dtype=torch.float32, attn_implementation="eager")
    try:
        return Qwen3OmniMoeForConditionalGeneration.from_pretrained(path, **kw).eval()
    except TypeError:
        kw["torch_dtype"] = kw.pop("dtype")
        return Qwen3OmniMoeForConditionalGeneration.from_pretrained(path, **kw).eval()


def record_encoder(model, name, stem, feats, case, override, clip, out_dir, repo):
    thinker = model.thinker
    tower = thinker.audio_tower
    saved = {}
    if override:
        for k, v in override.items():
            saved[k] = (getattr(tower.config, k), getattr(tower, k, None))
            setattr(tower.config, k, v)
            if hasattr(tower, k):
                setattr(tower, k, v)
    try:
        x = feats[:, :clip] if clip else feats
        input_features = torch.from_numpy(np.ascontiguousarray(x))[None]  # [1, mel, frames]
        mask = torch.ones(1, x.shape[1], dtype=torch.int64)
        rec = {}
        hooks = []

        def out_hook(key, concat=False):
            # The tower runs its convolutions over batches of conv_chunksize chunks: concatenate those calls.
            def h(_m, _args, out):
                t = (out[0] if isinstance(out, (tuple, list)) else out).detach().clone()
                rec[key] = torch.cat([rec[key], t], 0) if concat and key in rec else t
            return h

        def layer0_pre(_m, args, kwargs):
            rec["encoder_input"] = args[0].detach().clone()
            cu = args[1] if len(args) > 1 else kwargs.get("cu_seqlens")
            rec["cu_seqlens"] = cu.detach().clone().to(torch.int64)

        hooks.append(tower.conv2d1.register_forward_hook(out_hook("conv2d1", concat=True)))
        hooks.append(tower.conv2d2.register_forward_hook(out_hook("conv2d2", concat=True)))
        hooks.append(tower.conv2d3.register_forward_hook(out_hook("conv2d3", concat=True)))
        hooks.append(tower.conv_out.register_forward_hook(out_hook("conv_out")))
        hooks.append(tower.layers[0].register_forward_pre_hook(layer0_pre, with_kwargs=True))
        for i, layer in enumerate(tower.layers):
            hooks.append(layer.register_forward_hook(out_hook(f"layers.{i}.output")))
        hooks.append(tower.ln_post.register_forward_hook(out_hook("ln_post")))
        hooks.append(tower.proj1.register_forward_hook(out_hook("proj1")))
        try:
            with torch.no_grad():
                out = thinker.get_audio_features(input_features, feature_attention_mask=mask)
        finally:
            for h in hooks:
                h.remove()
        if torch.is_tensor(out):  # older get_audio_features return the tensor itself
            last = out
        else:
            last = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
        if isinstance(last, (tuple, list)):
            last = torch.cat(list(last), 0)
        tensors = {"input_features": input_features[0].clone(),
                   "feature_lens": torch.tensor([x.shape[1]], dtype=torch.int64),
                   "output": last.detach().clone()}
        tensors.update(rec)
        from transformers.models.qwen3_omni_moe import modeling_qwen3_omni_moe as M
        fn = M._get_feat_extract_output_lengths
        if "n_window" in inspect.signature(fn).parameters:
            ref_tokens = int(fn(torch.tensor([x.shape[1]]), tower.n_window)[0])
        else:
            ref_tokens = int(fn(torch.tensor([x.shape[1]]))[0])
        tensors["audio_tokens"] = torch.tensor([ref_tokens], dtype=torch.int64)
        cfg = tower.config
        meta = base_meta(
            model_type="qwen3_omni_moe", checkpoint=name, audio_file=f"tests/data/media/{stem}", case=case,
            num_mel_bins=cfg.num_mel_bins, n_window=cfg.n_window, n_window_infer=cfg.n_window_infer,
            conv_chunksize=cfg.conv_chunksize, override=json.dumps(override or {}), clip_frames=clip or 0,
            call="model.thinker.get_audio_features(input_features[1,mel,T], feature_attention_mask=ones[1,T])",
        )
        path = os.path.join(out_dir, GOLDEN_DIR, name, f"audio_encoder_{stem}_{case}.safetensors")
        save_golden(tensors, path, meta)
        SUMMARY["files"][os.path.relpath(path, out_dir)] = sha256(path)
        SUMMARY["encoders"][f"{name}/{stem}/{case}"] = {
            "frames": int(x.shape[1]), "tokens": int(last.shape[0]), "reference_placeholder_count": ref_tokens,
            "cu_seqlens": rec.get("cu_seqlens", torch.tensor([])).tolist(),
            "shapes": {k: list(v.shape) for k, v in tensors.items()},
            "output_std": float(last.std()),
        }
        print(f"  {name} {stem} {case}: {SUMMARY['encoders'][f'{name}/{stem}/{case}']}", flush=True)
    finally:
        for k, (cv, tv) in saved.items():
            setattr(tower.config, k, cv)
            if tv is not None:
                setattr(tower, k, tv)


def record_encoders(repo, out_dir):
    from transformers import WhisperFeatureExtractor
    audio_kwargs, _ = processor_audio_kwargs()
    for name in CHECKPOINTS:
        try:
            model = load_model(os.path.join(repo, "models", name))
            acfg = model.thinker.audio_tower.config
            print(f"{name}: audio tower n_mel {acfg.num_mel_bins} d_model {acfg.d_model} layers "
                  f"{acfg.encoder_layers} n_window {acfg.n_window} n_window_infer {acfg.n_window_infer} "
                  f"attn {model.thinker.audio_tower.config._attn_implementation}", flush=True)
            fe = WhisperFeatureExtractor(**dict(FE_CONFIG, feature_size=acfg.num_mel_bins))
        except Exception:
            fail(f"loading {name}")
            continue
        for fname in ENCODER_FILES:
            stem = os.path.splitext(fname)[0]
            try:
                samples, rate, _ = decode_native(os.path.join(repo, MEDIA_DIR, fname))
                if rate != TARGET_RATE:
                    raise RuntimeError(f"{fname} is not 16 kHz")
                feats, mask = extract(fe, audio_kwargs, to_mono(samples))
                feats = feats[:, : int(mask.sum())]
            except Exception:
                fail(f"{name}: features for {fname}")
                continue
            for case, override, clip in ENCODER_CASES:
                try:
                    record_encoder(model, name, stem, feats, case, override, clip, out_dir, repo)
                except Exception:
                    # `asis` is expected to fail with n_window 8 (see ENCODER_CASES); recorded, not fatal.
                    if case == "asis":
                        SUMMARY["encoders"][f"{name}/{stem}/{case}"] = {
                            "reference_failed": traceback.format_exc().strip().splitlines()[-1]}
                        print(f"  {name} {stem} asis: reference failed as expected: "
                              f"{SUMMARY['encoders'][f'{name}/{stem}/{case}']}", flush=True)
                    else:
                        fail(f"{name}: encoder {stem} {case}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", required=True, help="repository root (reads tests/data/media and models/)")
    ap.add_argument("--out", required=True, help="output root; files land at their repository paths under it")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"transformers {transformers.__version__} torch {torch.__version__} numpy {np.__version__}", flush=True)
    try:
        record_features(args.repo, args.out)
    except Exception:
        fail("audio_features.safetensors")
    try:
        record_encoders(args.repo, args.out)
    except Exception:
        fail("encoder goldens")
    path = os.path.join(args.out, GOLDEN_DIR, "audio_summary.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(SUMMARY, f, indent=1, sort_keys=True, default=str)
        f.write("\n")
    print(f"wrote {path}; failures: {FAILURES or 'none'}", flush=True)
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
