"""The project's own model bundles: every network of the system in one directory.

Layout (all paths relative to the bundle directory)::

    metis.json                 {"format": "metis-speech-bundle", "version": 1, "components": {...},
                                "stage1": {task: subdir}, "phone_vocab": "vocab.json" | null}
    <component>/config.json    typed config (see metis_speech.config)
    <component>/model.safetensors
    ssl/ssl_config.json        SSLConfig; ssl/ holds the w2v-BERT model (save_pretrained) and stats.npz

Components: ``ssl``, ``semantic_codec``, ``acoustic_encoder``, ``acoustic_decoder``,
``s2a_full`` and optionally ``s2a_1layer`` and ``visual``; one stage-1 network per task.
Official weights do not use this format (see :mod:`metis_speech.hub`).

:func:`random_bundle` writes random networks (tests, benchmarks); :func:`assemble_bundle`
(``metis bundle``) builds a bundle from trained runs plus a base bundle, checks that the
networks fit together, and records where each came from (``provenance``) in ``metis.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Union

import numpy as np
import torch

from .config import SSLConfig, config_to_dict, config_from_dict, load_preset
from .errors import CheckpointError
from .hashing import sha256_file

FORMAT = "metis-speech-bundle"
MANIFEST = "metis.json"

STAGE1_COMPONENT = {"tts": "stage1_tts", "vc": "stage1_adapter", "tse": "stage1_adapter", "se": "stage1_adapter",
                    "omni": "stage1_omni", "l2s": "stage1_l2s", "base": "stage1_base"}


def is_bundle(path: Union[str, os.PathLike]) -> bool:
    return (Path(path) / MANIFEST).is_file()


def read_manifest(path: Union[str, os.PathLike]) -> dict:
    path = Path(path)
    f = path / MANIFEST
    try:
        data = json.loads(f.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{f}: cannot read the bundle manifest ({e})") from None
    if data.get("format") != FORMAT:
        raise CheckpointError(f"{f}: not a metis-speech bundle (format {data.get('format')!r})")
    return data


def save_ssl(extractor, directory: Union[str, os.PathLike], cfg: SSLConfig) -> None:
    """Save an SSLFeatureExtractor: HF model + feature extractor, stats.npz, ssl_config.json."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    extractor.model.save_pretrained(str(directory))
    extractor.feature_extractor.save_pretrained(str(directory))
    stats = None
    if extractor.stat_mean is not None:
        np.savez(directory / "stats.npz", mean=extractor.stat_mean.cpu().numpy(), var=extractor.stat_var.cpu().numpy())
        stats = "stats.npz"
    d = config_to_dict(cfg)
    d.update(model_id=".", stats=stats)
    if d.get("model_config"):
        d["model_config"] = dict(d["model_config"], num_hidden_layers=len(extractor.model.encoder.layers))
    (directory / "ssl_config.json").write_text(json.dumps(d, indent=2))


def load_ssl(directory: Union[str, os.PathLike], device=None, dtype=None):
    from .models.ssl import SSLFeatureExtractor

    directory = Path(directory)
    d = json.loads((directory / "ssl_config.json").read_text())
    d["model_id"] = str(directory / d.get("model_id", "."))
    if d.get("stats"):
        d["stats"] = str(directory / d["stats"])
    cfg = config_from_dict(d, SSLConfig)
    ext = SSLFeatureExtractor.from_config(cfg)
    if device is not None:
        ext = ext.to(device)
        ext.set_stats(ext.stat_mean, ext.stat_var) if ext.stat_mean is not None else None
    if dtype is not None:
        ext.model.to(dtype)
    return ext.eval()


def write_manifest(directory: Union[str, os.PathLike], components: Dict[str, str], stage1: Dict[str, str],
                   phone_vocab: Optional[str], extra: Optional[dict] = None) -> Path:
    directory = Path(directory)
    data = {"format": FORMAT, "version": 1, "components": components, "stage1": stage1, "phone_vocab": phone_vocab}
    data.update(extra or {})
    (directory / MANIFEST).write_text(json.dumps(data, indent=2) + "\n")
    return directory / MANIFEST


def random_bundle(
    directory: Union[str, os.PathLike],
    preset: str = "tiny",
    tasks: Iterable[str] = ("tts", "vc", "tse", "se", "omni", "l2s"),
    seed: int = 0,
    phone_vocab: Optional[Union[str, os.PathLike]] = None,
    with_s2a_1layer: bool = True,
) -> Path:
    """A bundle of randomly initialised networks of ``preset`` size.

    For tests and for measuring speed and memory; it makes noise, not speech.
    """
    from .loading import build_model, save_checkpoint
    from .models.ssl import SSLFeatureExtractor

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    comps = {}
    for name in ("semantic_codec", "acoustic_encoder", "acoustic_decoder", "s2a_full") + (("s2a_1layer",) if with_s2a_1layer else ()):
        save_checkpoint(build_model(load_preset(preset, name)), directory / name)
        comps[name] = name
    ssl_cfg = load_preset(preset, "ssl")
    ext = SSLFeatureExtractor.from_config(ssl_cfg, stats=None)
    g = torch.Generator().manual_seed(seed)
    ext.set_stats(torch.randn(ssl_cfg.hidden_size, generator=g) * 0.1, torch.rand(ssl_cfg.hidden_size, generator=g) + 0.5)
    save_ssl(ext, directory / "ssl", ssl_cfg)
    comps["ssl"] = "ssl"
    stage1 = {}
    for task in tasks:
        model = build_model(load_preset(preset, STAGE1_COMPONENT[task]))
        if hasattr(model, "cond_adapter") and hasattr(model.cond_adapter, "gate_scale"):
            with torch.no_grad():
                model.cond_adapter.gate_scale.fill_(1.0)  # random adapters should do something
        save_checkpoint(model, directory / f"stage1_{task}")
        stage1[task] = f"stage1_{task}"
    if "l2s" in stage1:
        save_checkpoint(build_model(load_preset(preset, "visual_encoder")).eval(), directory / "visual")
        comps["visual"] = "visual"
    vocab_rel = None
    if phone_vocab is not None:
        import shutil

        shutil.copy(phone_vocab, directory / "vocab.json")
        vocab_rel = "vocab.json"
    write_manifest(directory, comps, stage1, vocab_rel, {"preset": preset, "random": True})
    return directory


def ssl_fingerprint(extractor) -> str:
    """A short hash of everything that decides an SSL front end's features: the layer read,
    the sample rate, every weight of the (truncated) network and the normalisation statistics.
    Equal fingerprints mean equal features for the same audio."""
    h = hashlib.sha256(f"metis-ssl/{extractor.hidden_state_index}/{extractor.sample_rate}".encode())
    for name, t in sorted(extractor.model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    for t in (extractor.stat_mean, extractor.stat_var):
        h.update(b"none" if t is None else t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


# ------------------------------------------------------------------ assembling from trained runs
COMPONENTS = ("ssl", "semantic_codec", "acoustic_encoder", "acoustic_decoder", "s2a_full", "s2a_1layer", "visual")
REQUIRED = ("ssl", "semantic_codec", "acoustic_encoder", "acoustic_decoder", "s2a_full")
_CONFIG_TYPE = {"semantic_codec": "SemanticCodecConfig", "acoustic_encoder": "AcousticEncoderConfig",
                "acoustic_decoder": "AcousticDecoderConfig", "s2a_full": "S2AConfig", "s2a_1layer": "S2AConfig",
                "visual": "VisualEncoderConfig", "stage1": "Stage1Config"}
# what a network was trained on, besides its own weights: its run's data was tokenized with these
_DEPENDS = {"s2a_full": ("semantic_codec", "acoustic_encoder", "acoustic_decoder"),
            "s2a_1layer": ("semantic_codec", "acoustic_encoder", "acoustic_decoder"),
            "stage1": ("semantic_codec",), "stage1_cond": ("semantic_codec", "ssl")}


def _sha256(path: Path) -> str:
    """Short checksum of a weight file (16 hex digits) for provenance and lineage."""
    return sha256_file(path)[:16]


def _checkpoint_dir(src: Union[str, os.PathLike], what: str) -> Path:
    """A finished save_checkpoint directory: ``src`` itself, or ``src/final`` for a run directory."""
    from .errors import MetisError

    p = Path(src)
    if not p.exists():
        raise MetisError(f"{what}: {p} does not exist")
    if not (p / "config.json").is_file() and (p / "final" / "config.json").is_file():
        p = p / "final"
    if not ((p / "config.json").is_file() and (p / "model.safetensors").is_file()):
        raise MetisError(f"{what}: {p} is not a finished checkpoint (no config.json + model.safetensors; give a run's final/ directory)")
    return p


def _latest_meta(run: Path) -> Optional[dict]:
    """``meta.json`` of a run's newest checkpoint (it holds the run's full config), or None."""
    ck = run / "checkpoints"
    names = []
    if (ck / "latest").is_file():
        names.append(ck / (ck / "latest").read_text().strip())
    names += sorted(ck.glob("step_*"), reverse=True) if ck.is_dir() else []
    for d in names:
        try:
            return json.loads((d / "meta.json").read_text())
        except (OSError, json.JSONDecodeError):
            continue
    return None


def _run_record(ckpt: Path) -> dict:
    """Provenance of a trained network: its files, run, step, data and the tokenizers of that data."""
    rec = {"from": "run", "path": str(ckpt.resolve()), "sha256": _sha256(ckpt / "model.safetensors")}
    run = ckpt.parent if ckpt.name == "final" else ckpt.parent.parent if ckpt.parent.name == "final" else None
    if (ckpt / "ssl.json").is_file():  # a semantic codec: the SSL whose features it learnt
        info = json.loads((ckpt / "ssl.json").read_text())
        rec["ssl_source"], rec["ssl_fingerprint"] = info.get("source"), info.get("fingerprint")
    if run is None:
        return rec
    rec["run"] = str(run.resolve())
    meta = _latest_meta(run)
    if meta is None:
        return rec
    rec["step"] = meta.get("step")
    data = (meta.get("config") or {}).get("data") or {}
    paths = [data["path"]] if data.get("path") else [e["path"] for e in data.get("sources") or [] if e.get("path")]
    if paths:
        rec["data"] = [str(Path(p).resolve()) for p in paths]
        toks, vocabs = [], []
        for p in paths:
            prep = Path(p) / "prepare.json"
            if prep.is_file():
                try:
                    settings = json.loads(prep.read_text())
                except (OSError, json.JSONDecodeError):
                    continue
                toks.append(str(settings.get("model")))
                if settings.get("phone_vocab"):
                    vocabs.append(settings["phone_vocab"])
        if toks:
            rec["tokenizers"] = sorted(set(toks))
        if vocabs:
            rec["phone_vocabs"] = sorted(set(vocabs))
    return rec


class _Identity:
    """Identities of networks for the lineage checks: the sha256 of a weight file, or the SSL
    fingerprint (computed once per directory)."""

    def __init__(self):
        self._ssl: Dict[str, str] = {}

    def ssl(self, directory: Path) -> str:
        key = str(Path(directory).resolve())
        if key not in self._ssl:
            self._ssl[key] = ssl_fingerprint(load_ssl(directory))
        return self._ssl[key]

    def of(self, name: str, directory: Path) -> str:
        if name == "ssl":
            return self.ssl(directory)
        if name == "acoustic_decoder":  # the ids depend on its quantizer only: a vocoder-only fine-tune keeps them
            return _tensors_digest(Path(directory) / "model.safetensors", "quantizer.")
        return _sha256(Path(directory) / "model.safetensors")


def _tensors_digest(path: Path, prefix: str) -> str:
    """Short checksum (16 hex digits) of the tensors of a safetensors file whose names start
    with ``prefix`` (names, dtypes, shapes and bytes)."""
    from safetensors import safe_open

    h = hashlib.sha256()
    with safe_open(str(path), framework="pt") as f:
        for key in sorted(k for k in f.keys() if k.startswith(prefix)):
            t = f.get_tensor(key).contiguous()
            h.update(f"{key}/{t.dtype}/{tuple(t.shape)}".encode())
            h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def _stage1_problems(task: str, c, v: int, ssl_hidden: int, visual, vocab_max: Optional[int]) -> List[str]:
    p = []
    where = f"stage-1 {task!r}"
    if c.codebook_size != v:
        p.append(f"{where} models {c.codebook_size} semantic ids, the semantic codec has {v}")
    if task in ("tts", "omni") and not c.use_phone_cond:
        p.append(f"{where} has no phone prefix (use_phone_cond false)")
    if task in ("vc", "tse", "se", "omni") and c.adapter != "gated":
        p.append(f"{where} needs the gated SSL adapter, its adapter is {c.adapter!r}")
    if task == "l2s" and c.adapter != "mlp":
        p.append(f"{where} needs the visual (mlp) adapter, its adapter is {c.adapter!r}")
    if c.adapter == "gated" and c.cond_dim != ssl_hidden:
        p.append(f"{where} adapter takes {c.cond_dim}-dim features (cond_dim), the SSL gives {ssl_hidden}")
    if task == "l2s" and c.adapter == "mlp":
        if visual is None:
            p.append(f"{where} needs a visual encoder; the bundle has none")
        elif visual.out_dim != c.cond_dim:
            p.append(f"{where} adapter takes {c.cond_dim}-dim features (cond_dim), the visual encoder gives {visual.out_dim}")
    if c.use_phone_cond and vocab_max is not None and vocab_max >= min(c.phone_pad_id, c.phone_vocab_size):
        p.append(f"{where} embeds phone ids below {min(c.phone_pad_id, c.phone_vocab_size)}, the phone vocabulary goes up to {vocab_max}")
    return p


def check_compatibility(configs: Dict[str, object], stage1: Dict[str, object], ssl_hidden: int,
                        vocab_max: Optional[int] = None) -> List[str]:
    """Every way the networks of a bundle do not fit together, as short sentences (empty: they fit).

    ``configs``: component name -> config (``ssl`` excluded; its feature size is ``ssl_hidden``);
    ``stage1``: task -> Stage1Config; ``vocab_max``: the largest phone id of the vocabulary."""
    p = [f"the bundle has no {n} network" for n in REQUIRED if n != "ssl" and n not in configs]
    sc, enc, dec = configs.get("semantic_codec"), configs.get("acoustic_encoder"), configs.get("acoustic_decoder")
    if sc is not None and sc.hidden_size != ssl_hidden:
        p.append(f"the semantic codec takes {sc.hidden_size}-dim SSL features, the SSL gives {ssl_hidden}")
    if enc is not None and dec is not None:
        if enc.out_channels != dec.in_channels:
            p.append(f"the acoustic encoder gives {enc.out_channels} channels, the acoustic decoder takes {dec.in_channels}")
        if enc.hop_length != dec.hop_size or enc.sample_rate != dec.sample_rate:
            p.append(f"the acoustic encoder hops {enc.hop_length} samples at {enc.sample_rate} Hz, the decoder "
                     f"{dec.hop_size} at {dec.sample_rate} Hz")
    if dec is not None and dec.sample_rate != 50 * dec.hop_size:
        p.append(f"acoustic frames are {dec.sample_rate / dec.hop_size:g} Hz, semantic ids 50 Hz")
    for name in ("s2a_full", "s2a_1layer"):
        s = configs.get(name)
        if s is None:
            continue
        if sc is not None and s.cond_codebook_size != sc.codebook_size:
            p.append(f"{name} reads {s.cond_codebook_size} semantic ids (cond_codebook_size), the semantic codec has {sc.codebook_size}")
        if dec is not None and s.codebook_size != dec.codebook_size:
            p.append(f"{name} predicts {s.codebook_size} acoustic codes per layer, the acoustic codec has {dec.codebook_size}")
        if dec is not None and s.prompt_layers > dec.num_quantizers:
            p.append(f"{name} reads {s.prompt_layers} RVQ layers of its prompt (prompt_quantizers), the acoustic codec has "
                     f"{dec.num_quantizers}")
    if configs.get("s2a_full") is not None and dec is not None and configs["s2a_full"].num_quantizers != dec.num_quantizers:
        p.append(f"s2a_full predicts {configs['s2a_full'].num_quantizers} RVQ layers, the acoustic codec has {dec.num_quantizers}")
    if configs.get("s2a_1layer") is not None and configs["s2a_1layer"].num_quantizers != 1:
        p.append(f"s2a_1layer predicts {configs['s2a_1layer'].num_quantizers} RVQ layers, not 1")
    for task, c in sorted(stage1.items()):
        p += _stage1_problems(task, c, sc.codebook_size if sc is not None else c.codebook_size, ssl_hidden,
                              configs.get("visual"), vocab_max)
    return p


def _lineage_problems(what: str, rec: dict, deps: Iterable[str], ours: Dict[str, str], ident: _Identity) -> List[str]:
    """Networks whose training data was tokenized (or whose features were computed) with
    networks other than this bundle's."""
    p = []
    if "ssl" in deps and rec.get("ssl_fingerprint") and rec["ssl_fingerprint"] != ours["ssl"]:
        p.append(f"{what} was trained on features of SSL {rec.get('ssl_source')} (fingerprint {rec['ssl_fingerprint']}), "
                 f"the bundle's SSL has fingerprint {ours['ssl']}")
    for tok in rec.get("tokenizers", []):
        if not is_bundle(tok):
            continue  # hub / official / random tokenizers: nothing on disk to compare
        comps = read_manifest(tok)["components"]
        for dep in deps:
            if dep in comps and ident.of(dep, Path(tok) / comps[dep]) != ours[dep]:
                p.append(f"{what} was trained on data tokenized with {tok}, whose {dep} differs from the bundle's")
    return p


def _open_base(base: Union[str, os.PathLike], scratch: Path, phone_vocab, seed: int):
    """(directory, manifest, provenance of a component taken from it) of the base bundle;
    ``random:PRESET`` writes a random bundle into ``scratch``."""
    from .errors import MetisError

    s = str(base)
    if s.startswith("random:"):
        preset = s[len("random:"):]
        d = random_bundle(scratch / "random-base", preset=preset, tasks=tuple(t for t in STAGE1_COMPONENT if t != "base"),
                          seed=seed, phone_vocab=phone_vocab)
        return d, read_manifest(d), lambda name: {"from": s, "seed": seed, "random": True}
    if not is_bundle(base):
        raise MetisError(f"base {base} is not a bundle (no {MANIFEST}) nor random:PRESET")
    d = Path(base)
    m = read_manifest(d)
    prov = m.get("provenance") or {}

    def record(name: str) -> dict:
        if name in prov:
            return dict(prov[name], via=str(d.resolve()))
        sub = m["components"].get(name) if not name.startswith("stage1/") else m["stage1"].get(name[7:])
        return {"from": "base", "path": str((d / sub).resolve()), "random": bool(m.get("random", False))}

    return d, m, record


def assemble_bundle(
    out: Union[str, os.PathLike],
    base: Union[str, os.PathLike],
    components: Optional[Dict[str, Union[str, os.PathLike]]] = None,
    stage1: Optional[Dict[str, Union[str, os.PathLike]]] = None,
    phone_vocab: Optional[Union[str, os.PathLike]] = None,
    drop_untrained: bool = False,
    check_lineage: bool = True,
    overwrite: bool = False,
    seed: int = 0,
) -> Path:
    """A bundle at ``out`` from trained runs, every network not given taken from ``base``.

    ``base``: a bundle directory or ``random:PRESET``. ``components``: name -> a run's
    ``final/`` (or the run directory) for ``ssl`` (a bundle or its ``ssl/``),
    ``semantic_codec``, ``acoustic_codec`` (a directory holding ``encoder/`` and ``decoder/``;
    or ``acoustic_encoder`` / ``acoustic_decoder`` one by one), ``s2a_full``, ``s2a_1layer``,
    ``visual``. ``stage1``: task (tts, vc, tse, se, omni, l2s, base) -> a stage-1 run's
    ``final/`` (a LoRA run's merged ``model.safetensors`` + ``config.json``).
    ``phone_vocab``: a vocabulary file (default: the base's). ``drop_untrained``: leave out
    stage-1 tasks and optional networks that would come randomly initialised from the base.

    Checks (a :class:`~metis_speech.errors.MetisError` naming every mismatch): the semantic
    vocabulary of the codec = stage 1's and S2A's, acoustic codebook size / RVQ depth of the
    codec = S2A's, SSL feature size = semantic codec input = adapters' ``cond_dim``, phone ids
    fit the phone prefix; with ``check_lineage`` also that the semantic codec was trained on
    this SSL's features (its run's ``ssl.json``) and that stage-1/S2A runs were trained on
    shards tokenized with this bundle's codecs (their ``prepare.json``). ``metis.json`` gets
    ``"random": false``, ``untrained`` (networks still randomly initialised) and
    ``provenance`` (where each network came from: run, step, sha256, data) and the base's
    ``decoding`` defaults, when it has them. Written to a
    temporary folder and renamed, so ``out`` is either complete or absent.
    """
    import shutil
    import tempfile
    import time

    from . import __version__
    from .config import load_config
    from .errors import MetisError

    out = Path(out)
    if out.exists() and not overwrite and (is_bundle(out) or any(out.iterdir())):
        raise MetisError(f"{out} already exists and is not empty; choose another --out or overwrite it")
    given = dict(components or {})
    tasks = dict(stage1 or {})
    if "acoustic_codec" in given:
        src = Path(given.pop("acoustic_codec"))
        if not (src / "encoder").is_dir() and (src / "final" / "encoder").is_dir():
            src = src / "final"
        if not ((src / "encoder").is_dir() and (src / "decoder").is_dir()):
            raise MetisError(f"acoustic codec: {src} holds no encoder/ and decoder/ (give an acoustic-codec run's final/ directory)")
        given.setdefault("acoustic_encoder", src / "encoder")
        given.setdefault("acoustic_decoder", src / "decoder")
    unknown = sorted(set(given) - set(COMPONENTS))
    if unknown:
        raise MetisError(f"unknown component(s) {unknown}; known: {list(COMPONENTS) + ['acoustic_codec']}")
    bad_tasks = sorted(set(tasks) - set(STAGE1_COMPONENT))
    if bad_tasks:
        raise MetisError(f"unknown stage-1 task(s) {bad_tasks}; known: {sorted(STAGE1_COMPONENT)}")
    if phone_vocab is not None and not Path(phone_vocab).is_file():
        raise MetisError(f"phone vocabulary {phone_vocab} does not exist")

    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".scratch-{out.name}-") as scratch:
        base_dir, base_m, base_record = _open_base(base, Path(scratch), phone_vocab, seed)
        # plan: name -> (source directory, provenance record)
        plan: Dict[str, tuple] = {n: (base_dir / rel, base_record(n)) for n, rel in base_m["components"].items()}
        s1plan: Dict[str, tuple] = {t: (base_dir / rel, base_record(f"stage1/{t}")) for t, rel in base_m["stage1"].items()}
        for name, src in given.items():
            if name == "ssl":
                p, rec = Path(src), {}
                if is_bundle(p):  # that bundle's SSL, with what its manifest says about it
                    m = read_manifest(p)
                    rec = dict((m.get("provenance") or {}).get("ssl") or {"random": bool(m.get("random", False))})
                    p = p / m["components"].get("ssl", "ssl")
                if not (p / "ssl_config.json").is_file():
                    raise MetisError(f"ssl: {src} is neither a bundle nor an ssl/ directory (ssl_config.json)")
                plan["ssl"] = (p, dict(rec, **{"from": "bundle", "path": str(p.resolve())}))
            else:
                ck = _checkpoint_dir(src, name)
                plan[name] = (ck, _run_record(ck))
        for task, src in tasks.items():
            ck = _checkpoint_dir(src, f"stage-1 {task}")
            s1plan[task] = (ck, _run_record(ck))
        if drop_untrained:
            for name in [n for n in plan if n not in REQUIRED and plan[n][1].get("random")]:
                del plan[name]
            for task in [t for t in s1plan if s1plan[t][1].get("random")]:
                del s1plan[task]
        if not s1plan:
            raise MetisError("the bundle would hold no stage-1 network (give --stage1 TASK=RUN/final)")

        # structural compatibility
        problems = [] if "ssl" in plan else ["the bundle has no ssl network"]
        configs = {}
        for name, (d, _) in plan.items():
            if name == "ssl":
                continue
            cfg = load_config(d / "config.json")
            if type(cfg).__name__ != _CONFIG_TYPE[name]:
                problems.append(f"{name} from {d} is a {type(cfg).__name__}, not a {_CONFIG_TYPE[name]}")
            else:
                configs[name] = cfg
        s1cfgs = {}
        for task, (d, _) in s1plan.items():
            cfg = load_config(d / "config.json")
            if type(cfg).__name__ != "Stage1Config":
                problems.append(f"stage-1 {task!r} from {d} is a {type(cfg).__name__}, not a Stage1Config")
            else:
                s1cfgs[task] = cfg
        vocab_path = Path(phone_vocab) if phone_vocab is not None else (
            base_dir / base_m["phone_vocab"] if base_m.get("phone_vocab") else None)
        vocab_max = vocab_fp = None
        if vocab_path is not None:
            from .text.vocab import PhoneVocab

            vocab = PhoneVocab.from_json(vocab_path)
            ids = vocab.id_to_symbol
            vocab_max = max(ids) if ids else None
            vocab_fp = vocab.fingerprint()
        if "ssl" in plan:
            ssl_hidden = int(json.loads((plan["ssl"][0] / "ssl_config.json").read_text())["hidden_size"])
            problems += check_compatibility(configs, s1cfgs, ssl_hidden, vocab_max)
        if problems:
            raise MetisError("the networks do not fit together: " + "; ".join(dict.fromkeys(problems)))

        # lineage: what each trained network was trained on
        ident = _Identity()
        ours = {n: ident.of(n, d) for n, (d, _) in plan.items()}
        plan["ssl"][1]["fingerprint"] = ours["ssl"]
        if check_lineage:
            for name, (d, rec) in plan.items():
                if name == "semantic_codec":
                    problems += _lineage_problems("the semantic codec", rec, ("ssl",), ours, ident)
                elif name in _DEPENDS:
                    problems += _lineage_problems(name, rec, _DEPENDS[name], ours, ident)
            for task, (d, rec) in s1plan.items():
                deps = _DEPENDS["stage1_cond" if s1cfgs[task].adapter == "gated" else "stage1"]
                problems += _lineage_problems(f"stage-1 {task!r}", rec, deps, ours, ident)
                other = [v for v in rec.get("phone_vocabs", []) if v != vocab_fp]
                if s1cfgs[task].use_phone_cond and vocab_fp and other:
                    problems.append(f"stage-1 {task!r} was trained on phone ids of another vocabulary ({other[0]}) "
                                    f"than the bundle's ({vocab_fp})")
            if problems:
                raise MetisError("; ".join(dict.fromkeys(problems)) + " (retrain on matching data, or skip this check with "
                                 "check_lineage=False / --no-lineage-check)")

        # write: a staging folder renamed into place
        staging = out.parent / f".tmp-{out.name}-{os.getpid()}"
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir()
        try:
            comps, s1, prov = {}, {}, {}
            for name, (d, rec) in plan.items():
                if name == "ssl":
                    shutil.copytree(d, staging / name)
                else:
                    (staging / name).mkdir()
                    for f in ("config.json", "model.safetensors"):
                        shutil.copy2(d / f, staging / name / f)
                comps[name], prov[name] = name, rec
            for task, (d, rec) in sorted(s1plan.items()):
                sub = f"stage1_{task}"
                (staging / sub).mkdir()
                for f in ("config.json", "model.safetensors"):
                    shutil.copy2(d / f, staging / sub / f)
                s1[task], prov[f"stage1/{task}"] = sub, rec
            vocab_rel = None
            if vocab_path is not None:
                shutil.copy2(vocab_path, staging / "vocab.json")
                vocab_rel = "vocab.json"
            untrained = sorted(k for k, r in prov.items() if r.get("random"))
            extra = {
                "preset": base_m.get("preset"), "random": False, "untrained": untrained, "provenance": prov,
                "assembled": {"base": str(base), "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "metis_speech": __version__},
            }
            if base_m.get("decoding"):  # the base's own decoding defaults (metis.json decoding.<preset>.<task>)
                extra["decoding"] = base_m["decoding"]
            write_manifest(staging, comps, s1, vocab_rel, extra)
            old = None
            if out.exists():
                old = out.parent / f".old-{out.name}-{os.getpid()}"
                os.replace(out, old)
            os.replace(staging, out)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return out
