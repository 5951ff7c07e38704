"""Side by side with the reference: the same TTS request through the reference's modules
(Amphion) and through this project, in one process, interleaved.

    python benchmarks/vs_reference.py --amphion DIR [--deps DIR] [--steps 25] [--s2a-steps 40,16,1,...]
                                      [--device cpu|cuda] [--dtype fp32|bf16] [--threads 2] [--repeat 1]

DIR is a checkout of https://github.com/open-mmlab/Amphion at commit
d3de90f02e7f1c7dbc24b04d52fe1b8ef438effe (the commit the conformance vectors in
``../shared/parity`` came from), e.g.::

    git clone https://github.com/open-mmlab/Amphion DIR && git -C DIR checkout d3de90f02e7f1c7dbc24b04d52fe1b8ef438effe

Nothing of it is copied into this project; it is imported from DIR at run time. The
reference's Llama blocks need transformers < 4.48 (4.47.1 reproduces every conformance
vector); when the installed one is newer, install 4.47.1 into a side folder and pass it as
``--deps`` (it is put first on ``sys.path`` for this process only)::

    pip install --no-deps --target DEPS transformers==4.47.1 "tokenizers>=0.21,<0.22" "huggingface_hub<0.28" einops

The reference's codec module imports torchaudio for two mel-scale helpers it never calls on
this path; when torchaudio is missing they are provided here (numpy formulas of the HTK/Slaney
scales). The text front end is not imported: the request is given as phone ids.

What runs on both sides (official sizes, the same random weights: drawn once for the
reference's modules, saved in the official file layout under ``--work``, and loaded from those
files by each side in its own way): stage 1 (MaskGCT T2S = Metis-TTS) with ~60 phones, a 3 s
prompt and a 5 s target, guidance 2.5; S2A layer 0 by the 1-layer model, layers 1-11 by the full
model with guidance 2.5; the acoustic codec decoder. Seeds and steps are the same. Timed per
stage; peak memory per side is the largest resident set (or CUDA allocation) while that side
loads and runs, above what the process held before. The outputs are compared: ids equal, and
the waveform of the same codes within 1e-3.

The last line holds the ratios (reference / ours for time, ours / reference for memory).
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import importlib.machinery
import json
import math
import os
import sys
import tempfile
import threading
import time
import types
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
COMMIT = "d3de90f02e7f1c7dbc24b04d52fe1b8ef438effe"
FILES = {  # official relative paths (METIS_SPEC.md §7)
    "t2s": "t2s_model/model.safetensors",
    "s2a_1layer": "s2a_model/s2a_model_1layer/model.safetensors",
    "s2a_full": "s2a_model/s2a_model_full/model.safetensors",
    "acoustic_decoder": "acoustic_codec/model_1.safetensors",
}
HOW_TO_GET = f"""the reference is not included; get it with
    git clone https://github.com/open-mmlab/Amphion DIR && git -C DIR checkout {COMMIT}
and, when transformers >= 4.48 is installed, a side folder for the reference's transformers:
    pip install --no-deps --target DEPS transformers==4.47.1 "tokenizers>=0.21,<0.22" "huggingface_hub<0.28" einops
then run: python benchmarks/vs_reference.py --amphion DIR --deps DEPS"""


# ---------------------------------------------------------------- environment
def _stub_torchaudio() -> None:
    """torchaudio is imported by the reference's vocos module for two helpers never called here."""
    try:
        import torchaudio.functional.functional  # noqa: F401
        return
    except Exception:
        pass

    def _hz_to_mel(freq, mel_scale="htk"):
        if mel_scale == "htk":
            return 2595.0 * math.log10(1.0 + freq / 700.0)
        f_sp, min_log_hz = 200.0 / 3, 1000.0
        mels = freq / f_sp
        if freq >= min_log_hz:
            mels = min_log_hz / f_sp + math.log(freq / min_log_hz) / (math.log(6.4) / 27.0)
        return mels

    def _mel_to_hz(mels, mel_scale="htk"):
        mels = np.asarray(mels, dtype=np.float64)
        if mel_scale == "htk":
            return 700.0 * (10.0 ** (mels / 2595.0) - 1.0)
        f_sp, min_log_hz = 200.0 / 3, 1000.0
        freqs = f_sp * mels
        min_log_mel = min_log_hz / f_sp
        logstep = math.log(6.4) / 27.0
        return np.where(mels >= min_log_mel, min_log_hz * np.exp(logstep * (mels - min_log_mel)), freqs)

    ta = types.ModuleType("torchaudio")
    fn = types.ModuleType("torchaudio.functional")
    fnf = types.ModuleType("torchaudio.functional.functional")
    fnf._hz_to_mel, fnf._mel_to_hz = _hz_to_mel, _mel_to_hz
    ta.functional, fn.functional = fn, fnf
    for m in (ta, fn, fnf):  # a spec, so that importlib.util.find_spec works on them
        m.__spec__ = importlib.machinery.ModuleSpec(m.__name__, None)
    sys.modules.update({"torchaudio": ta, "torchaudio.functional": fn, "torchaudio.functional.functional": fnf})


class _Cfg(dict):
    """Attribute access over a JSON dict, as the reference's config objects offer."""

    def __getattr__(self, k):
        try:
            v = self[k]
        except KeyError:
            raise AttributeError(k) from None
        return _Cfg(v) if isinstance(v, dict) else v


def reference_classes(amphion: Path):
    if not (amphion / "models" / "tts" / "maskgct" / "maskgct_t2s.py").is_file():
        sys.exit(f"{amphion}: not an Amphion checkout (no models/tts/maskgct/maskgct_t2s.py)\n{HOW_TO_GET}")
    _stub_torchaudio()
    sys.path.insert(0, str(amphion))
    try:
        from models.codec.amphion_codec.codec import CodecDecoder
        from models.tts.maskgct.maskgct_s2a import MaskGCT_S2A
        from models.tts.maskgct.maskgct_t2s import MaskGCT_T2S
    except ImportError as e:
        import transformers

        sys.exit(f"cannot import the reference's modules ({e}); transformers {transformers.__version__}\n{HOW_TO_GET}")
    cfg = _Cfg(json.loads((amphion / "models/tts/maskgct/config/maskgct.json").read_text()))["model"]
    cfg = _Cfg(cfg)
    return {
        "t2s": lambda: MaskGCT_T2S(cfg=cfg.t2s_model),
        "s2a_1layer": lambda: MaskGCT_S2A(cfg=cfg.s2a_model.s2a_1layer),
        "s2a_full": lambda: MaskGCT_S2A(cfg=cfg.s2a_model.s2a_full),
        "acoustic_decoder": lambda: CodecDecoder(cfg=cfg.acoustic_codec.decoder),
    }


# ---------------------------------------------------------------- weights
def randomise(module, gen) -> None:
    """Parity-style random weights (shared/parity/README.md §3), so no path is an identity."""
    import torch
    from torch import nn

    emb = {n for n, m in module.named_modules() if isinstance(m, nn.Embedding)}
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.numel() == 0:
                continue
            owner, leaf = name.rsplit(".", 1) if "." in name else ("", name)

            def n(*shape):
                return torch.randn(*shape, generator=gen)

            if owner.endswith("to_weight") and leaf == "weight":
                v = 0.5 * n(*p.shape) / math.sqrt(p.shape[1])
            elif owner.endswith("to_weight") and leaf == "bias":
                v = 1 + 0.2 * n(*p.shape)
            elif leaf == "weight_g":
                v = torch.rand(*p.shape, generator=gen) + 0.5
            elif leaf == "weight_v":
                v = n(*p.shape)
            elif leaf in ("gamma",):
                v = 0.2 + 0.8 * torch.rand(*p.shape, generator=gen)
            elif leaf == "alpha":
                v = 0.5 + 1.5 * torch.rand(*p.shape, generator=gen)
            elif owner in emb:
                v = n(*p.shape)
            elif p.dim() == 1 and leaf == "weight":  # LayerNorm
                v = 1 + 0.2 * n(*p.shape)
            elif p.dim() == 1:
                v = 0.1 * n(*p.shape)
            else:
                v = n(*p.shape) / math.sqrt(p[0].numel())
            p.copy_(v.to(p.dtype))


def make_weights(classes, work: Path, seed: int) -> None:
    """Draw random weights in the reference's modules once; save them as official files."""
    import torch
    from safetensors.torch import save_file

    stamp = work / "weights.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == {"seed": seed, "commit": COMMIT} and all(
        (work / f).is_file() for f in FILES.values()
    ):
        return
    gen = torch.Generator().manual_seed(seed)
    for key, rel in FILES.items():
        m = classes[key]()
        randomise(m, gen)
        path = work / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().contiguous().clone() for k, v in m.state_dict().items()}, str(path))
        del m
        gc.collect()
    stamp.write_text(json.dumps({"seed": seed, "commit": COMMIT}))


# ---------------------------------------------------------------- memory
class PeakMemory:
    """Largest resident set (CPU: /proc/self/statm, sampled) or CUDA allocation in a window."""

    def __init__(self, device):
        self.device = device
        self.page = os.sysconf("SC_PAGE_SIZE")
        self._stop = threading.Event()
        self.peak = 0

    def rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self.page

    def _loop(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(0.005)

    def __enter__(self):
        import torch

        gc.collect()
        _trim()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            self.base = self.rss()
            self.peak = self.base
            self._t = threading.Thread(target=self._loop, daemon=True)
            self._t.start()
        return self

    def __exit__(self, *exc):
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated()
        else:
            self._stop.set()
            self._t.join()
            self.peak = max(self.peak, self.rss())
        self.mb = (self.peak - self.base) / 2**20


def _trim():
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


# ---------------------------------------------------------------- the request
def make_request(seed: int, n_phones: int, prompt_s: float, target_s: float) -> dict:
    import torch

    g = torch.Generator().manual_seed(seed + 1)
    Tp, T = int(prompt_s * 50), int(target_s * 50)
    n_prompt_phones = max(1, round(n_phones * prompt_s / (prompt_s + target_s)))
    return {
        "phones": torch.randint(0, 363, (n_phones,), generator=g),  # prompt text + target text
        "n_prompt_phones": n_prompt_phones,
        "prompt_sem": torch.randint(0, 8192, (Tp,), generator=g),
        "prompt_codes": torch.randint(0, 1024, (Tp, 12), generator=g),
        "target_len": T,
    }


def _sync(dev):
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize()


def run_reference(classes, work: Path, req: dict, args, dev, dtype) -> dict:
    """The reference's own loading and decoding loops (METIS: metis.py / maskgct_utils.py)."""
    import torch
    from safetensors.torch import load_file, load_model

    out = {}
    with PeakMemory(dev) as mem:
        t0 = time.perf_counter()
        nets = {}
        for key in ("t2s", "s2a_1layer", "s2a_full", "acoustic_decoder"):
            m = classes[key]()
            m.eval()
            if key == "acoustic_decoder":  # load_model refuses its window buffer on CPU (parity README §14.1)
                m.load_state_dict(load_file(str(work / FILES[key])), strict=True)
            else:
                load_model(m, str(work / FILES[key]), strict=True)
            nets[key] = m.to(dev).to(dtype)
        _sync(dev)
        out["load_s"] = time.perf_counter() - t0
        prompt = req["prompt_sem"][None].to(dev)
        phones = req["phones"][None].to(dev)
        codes_p = req["prompt_codes"][None].to(dev)
        with torch.no_grad():
            torch.manual_seed(args.seed)
            t0 = time.perf_counter()
            sem = nets["t2s"].reverse_diffusion(prompt, req["target_len"], phones, n_timesteps=args.steps,
                                                cfg=2.5, rescale_cfg=0.75)
            _sync(dev)
            out["stage1_s"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            full_sem = torch.cat([prompt, sem], dim=-1)
            l0 = nets["s2a_1layer"].reverse_diffusion(cond=nets["s2a_1layer"].cond_emb(full_sem), prompt=codes_p,
                                                     temp=1.5, filter_thres=0.98, n_timesteps=args.s2a_steps[:1],
                                                     cfg=0, rescale_cfg=0.75)
            codes = nets["s2a_full"].reverse_diffusion(cond=nets["s2a_full"].cond_emb(full_sem), prompt=codes_p,
                                                       temp=1.5, filter_thres=0.98, n_timesteps=args.s2a_steps,
                                                       cfg=2.5, rescale_cfg=0.75, gt_code=l0)
            _sync(dev)
            out["s2a_s"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            dec = nets["acoustic_decoder"]
            wav = dec(dec.vq2emb(codes.permute(2, 0, 1), n_quantizers=12))
            _sync(dev)
            out["decoder_s"] = time.perf_counter() - t0
        out["semantic"] = sem[0].cpu()
        out["codes"] = codes[0].cpu()
        out["wav"] = wav[0, 0].float().cpu()
        del nets
    out["peak_mb"] = mem.mb
    return out


def run_ours(work: Path, req: dict, args, dev, dtype_name: str, codes_for_decoder=None) -> dict:
    """This project's task API: load from the same files, then its decoding path."""
    import torch

    from metis_speech.decoding import stage1_generate
    from metis_speech.pipeline import DEFAULTS, Metis

    out = {}
    with PeakMemory(dev) as mem:
        t0 = time.perf_counter()
        m = Metis.from_pretrained("tts", str(work), device=str(dev), dtype=args.ours_dtype or dtype_name, lazy=True,
                                  low_memory=args.ours_low_memory, **({"quantize": "int8"} if args.ours_int8 else {}))
        if not args.ours_low_memory:  # else each stage loads its networks inside its timing, then drops them
            m._net("stage1")
            m._net("s2a")
            m._net("acoustic_decoder")
        _sync(dev)
        out["load_s"] = time.perf_counter() - t0
        gens = m._generators(args.seed, 1)
        with torch.no_grad():
            t0 = time.perf_counter()
            settings = m._settings(args.steps, None, None)
            sem = stage1_generate(m._net("stage1"), [req["target_len"]], [req["prompt_sem"]], [req["phones"]], None, settings,
                                  gens)[0]
            m._release("stage1")  # (low-memory mode only; as the task API does)
            _sync(dev)
            out["stage1_s"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            full_sem = torch.cat([req["prompt_sem"].to(dev), sem])
            codes = m._acoustic([full_sem], [req["prompt_codes"].to(dev)], gens, args.s2a_steps)[0]
            _sync(dev)
            out["s2a_s"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            wav = m._net("acoustic_decoder").decode(codes[None])[0, 0]
            _sync(dev)
            out["decoder_s"] = time.perf_counter() - t0
            if codes_for_decoder is not None:  # the reference's codes through our decoder (untimed)
                out["wav_of_ref_codes"] = m._net("acoustic_decoder").decode(codes_for_decoder[None].to(dev))[0, 0].float().cpu()
            m._release("acoustic_decoder")
        out["semantic"] = sem.cpu()
        out["codes"] = codes.cpu()
        out["wav"] = wav.float().cpu()
        del m
    out["peak_mb"] = mem.mb
    assert DEFAULTS["tts"].guidance == 2.5
    return out


def compare(ref: dict, ours: dict, wav_tol: float) -> dict:
    sem_eq = float((ref["semantic"] == ours["semantic"]).float().mean())
    codes_eq = float((ref["codes"] == ours["codes"]).float().mean())
    d = (ref["wav"] - ours["wav_of_ref_codes"]).abs().max().item() if "wav_of_ref_codes" in ours else float("nan")
    equal = sem_eq == 1.0 and codes_eq == 1.0 and d <= wav_tol
    return {"semantic_equal": sem_eq, "codes_equal": codes_eq, "decoder_max_abs_diff": d, "equal": equal}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--amphion", required=False, help="Amphion checkout at commit " + COMMIT)
    ap.add_argument("--deps", help="side folder with transformers < 4.48 for the reference (put first on sys.path)")
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "metis_vs_reference"),
                    help="where the random official-size weight files are written (about 6.5 GB, reused)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=25, help="stage-1 steps (reference TTS default 25)")
    ap.add_argument("--s2a-steps", default="40,16,1,1,1,1,1,1,1,1,1,1", help="S2A steps per RVQ layer")
    ap.add_argument("--phones", type=int, default=60)
    ap.add_argument("--prompt-s", type=float, default=3.0)
    ap.add_argument("--target-s", type=float, default=5.0)
    ap.add_argument("--repeat", type=int, default=1, help="rounds; each runs both sides, alternating who goes first")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ours-int8", action="store_true", help="our side with int8 dynamic quantisation (outputs then differ)")
    ap.add_argument("--ours-low-memory", action="store_true", help="our side with low_memory=True: each stage loads its "
                    "networks (timed) and releases them after (outputs equal)")
    ap.add_argument("--ours-dtype", choices=["fp32", "bf16"], help="our side's dtype when it differs from --dtype "
                    "(CPU bf16: weights stored in bf16, fp32 arithmetic; outputs then differ)")
    ap.add_argument("--wav-tol", type=float, default=1e-3)
    ap.add_argument("--json", help="also write every measurement here")
    args = ap.parse_args()
    if not args.amphion:
        print(HOW_TO_GET)
        sys.exit(2)
    if args.deps:
        sys.path.insert(0, str(Path(args.deps).resolve()))
    sys.path.insert(0, str(REPO))
    import torch

    torch.set_num_threads(args.threads)
    args.s2a_steps = [int(s) for s in args.s2a_steps.split(",")]
    if len(args.s2a_steps) != 12:
        sys.exit("--s2a-steps needs 12 numbers (one per RVQ layer)")
    dev = torch.device(args.device)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[args.dtype]
    classes = reference_classes(Path(args.amphion).resolve())
    work = Path(args.work)
    t0 = time.perf_counter()
    make_weights(classes, work, seed=1234)
    import transformers

    print(f"== vs reference (Amphion {COMMIT[:10]}, transformers {transformers.__version__} for it), "
          f"{dev} {args.dtype}, {torch.get_num_threads()} threads; weights ready in {time.perf_counter() - t0:.0f} s")
    req = make_request(args.seed, args.phones, args.prompt_s, args.target_s)
    audio_s = req["target_len"] / 50.0
    print(f"request: {args.phones} phones, {args.prompt_s:g} s prompt, {audio_s:g} s target; "
          f"stage-1 steps {args.steps}, S2A steps {args.s2a_steps}; seed {args.seed}")
    rows = []
    cols = ("load_s", "stage1_s", "s2a_s", "decoder_s", "total_s", "rtf", "peak_mb")
    print(f"{'round':>5s} {'side':>9s} " + " ".join(f"{c:>9s}" for c in cols))
    last_ref = None
    for r in range(args.repeat):
        order = ("reference", "ours") if r % 2 == 0 else ("ours", "reference")
        res = {}
        for side in order:
            if side == "reference":
                try:
                    o = run_reference(classes, work, req, args, dev, dtype)
                except RuntimeError as e:  # the reference's loops make fp32 tensors; bf16 weights may clash
                    if dtype == torch.float32:
                        raise
                    print(f"      reference with {args.dtype} weights failed ({str(e).splitlines()[0][:120]}); "
                          f"running it with fp32 weights under autocast({args.dtype}) instead")
                    with torch.autocast(dev.type, dtype=dtype):
                        o = run_reference(classes, work, req, args, dev, torch.float32)
                last_ref = o
            else:
                o = run_ours(work, req, args, dev, args.dtype, codes_for_decoder=last_ref["codes"] if last_ref else None)
            o["total_s"] = o["stage1_s"] + o["s2a_s"] + o["decoder_s"]
            o["rtf"] = o["total_s"] / audio_s
            res[side] = o
            print(f"{r:5d} {side:>9s} " + " ".join(f"{o[c]:9.2f}" for c in cols), flush=True)
            gc.collect()
            _trim()
        if "wav_of_ref_codes" not in res["ours"]:  # ours ran first: decode the reference's codes now
            from metis_speech.loading import load_component

            dec = load_component("acoustic_decoder", str(work), dev, dtype)
            with torch.no_grad():
                res["ours"]["wav_of_ref_codes"] = dec.decode(res["reference"]["codes"][None].to(dev))[0, 0].float().cpu()
            del dec
        cmp = compare(res["reference"], res["ours"], args.wav_tol)
        print(f"      outputs: semantic ids equal {cmp['semantic_equal']:.4f}, acoustic ids equal {cmp['codes_equal']:.4f}, "
              f"decoder |diff| max {cmp['decoder_max_abs_diff']:.2e} (same codes) -> {'EQUAL' if cmp['equal'] else 'DIFFERENT'}")
        rows.append({"round": r, **{s: {k: v for k, v in o.items() if isinstance(v, float)} for s, o in res.items()}, "compare": cmp})
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1))
    ref = {c: float(np.median([row["reference"][c] for row in rows])) for c in cols}
    ours = {c: float(np.median([row["ours"][c] for row in rows])) for c in cols}
    eq = all(row["compare"]["equal"] for row in rows)
    print(f"RATIOS {dev} {args.dtype} steps {args.steps}/{','.join(map(str, args.s2a_steps))}: speed (reference/ours) "
          f"total {ref['total_s'] / ours['total_s']:.2f}x, stage1 {ref['stage1_s'] / ours['stage1_s']:.2f}x, "
          f"S2A {ref['s2a_s'] / ours['s2a_s']:.2f}x, decoder {ref['decoder_s'] / ours['decoder_s']:.2f}x, "
          f"load {ref['load_s'] / ours['load_s']:.2f}x; RTF ours {ours['rtf']:.2f} vs reference {ref['rtf']:.2f}; "
          f"peak memory (ours/reference) {ours['peak_mb'] / ref['peak_mb']:.2f} ({ours['peak_mb']:.0f} / {ref['peak_mb']:.0f} MB); "
          f"outputs {'equal' if eq else 'NOT equal'}")


if __name__ == "__main__":
    main()
