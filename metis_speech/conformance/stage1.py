"""Conformance runners for stage 1 (``t2s``, ``t2s_cfg``, ``t2s_lora``), S2A (``s2a``) and
the seeded decoding loops (``reverse_diffusion_seeded``, informational)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Dict

import torch

from ..checkpoint import load_state_dict_strict, merge_adapter, merge_lora, read_weights
from ..config import S2AConfig, Stage1Config
from ..decoding import DecodeSettings, guidance_combine, masked_decode, s2a_generate, stage1_generate, top_k_filter
from ..models.s2a import S2AModel
from ..models.stage1 import Stage1Model
from . import register


def stage1_config_for(case_cfg: dict, state: Dict[str, torch.Tensor]) -> Stage1Config:
    """Our config from a manifest constructor cfg, with the adapter form read off the weights."""
    adapter, cond_dim = "none", case_cfg.get("cond_dim", 1024)
    if "cond_adapter.gate_scale" in state:
        adapter, cond_dim = "gated", state["cond_adapter.in_linear.weight"].shape[1]
    elif "cond_adapter.0.weight" in state:
        adapter, cond_dim = "mlp", state["cond_adapter.0.weight"].shape[1]
    return Stage1Config(
        hidden_size=case_cfg["hidden_size"],
        num_layers=case_cfg["num_layers"],
        num_heads=case_cfg["num_heads"],
        codebook_size=case_cfg["cond_codebook_size"],
        use_phone_cond="phone_emb.weight" in state,
        adapter=adapter,
        cond_dim=cond_dim,
    )


def _stage1_from_file(case: dict, root: Path, weight_file: str) -> Stage1Model:
    state = read_weights(root / weight_file)
    model = Stage1Model(stage1_config_for(case["constructor"]["cfg"], state)).eval()
    load_state_dict_strict(model, state, str(root / weight_file))
    return model


def _s2a_from_case(case: dict, root: Path) -> S2AModel:
    c = case["constructor"]["cfg"]
    cfg = S2AConfig(
        hidden_size=c["hidden_size"],
        num_layers=c["num_layers"],
        num_heads=c["num_heads"],
        num_quantizers=c["num_quantizer"],
        codebook_size=c["codebook_size"],
        cond_codebook_size=c["cond_codebook_size"],
        predict_layer_1=c.get("predict_layer_1", True),
    )
    model = S2AModel(cfg).eval()
    path = root / case["weights"][0]
    load_state_dict_strict(model, read_weights(path), str(path))
    return model


def _forward_outputs(model: Stage1Model, inp: dict) -> Dict[str, torch.Tensor]:
    out = model(
        inp["prompt_ids"],
        inp["target_ids"],
        inp["target_mask"],
        inp["t"],
        x_mask=inp.get("x_mask"),
        phone_ids=inp.get("phone_ids"),
        phone_mask=inp.get("phone_mask"),
        cond=inp.get("cond"),
    )
    return {"logits": out.logits, "dbg_x_in": out.x_in, "dbg_step_emb": out.step_emb, "dbg_hidden": out.hidden}


@register("t2s")
@torch.no_grad()
def run_t2s(name, case, root, inp):
    return _forward_outputs(_stage1_from_file(case, root, case["weights"][0]), inp)


@register("t2s_lora")
@torch.no_grad()
def run_t2s_lora(name, case, root, inp):
    base_file, adapter_file, lora_file = case["weights"]
    c = case["constructor"]["cfg"]
    base = read_weights(root / base_file)
    adapter = read_weights(root / adapter_file)
    cond_dim = adapter["model.cond_adapter.in_linear.weight"].shape[1]
    cfg = Stage1Config(
        hidden_size=c["hidden_size"],
        num_layers=c["num_layers"],
        num_heads=c["num_heads"],
        codebook_size=c["cond_codebook_size"],
        use_phone_cond=c.get("use_phone_cond", False),
        adapter="gated",
        cond_dim=cond_dim,
    )
    model = Stage1Model(cfg).eval()
    load_state_dict_strict(model, base, str(root / base_file), allow_missing=[r"cond_adapter\."])
    merge_adapter(model, adapter, str(root / adapter_file))
    merge_lora(model, root / lora_file, alpha=c["lora_alpha"], rank=c["lora_r"])
    return _forward_outputs(model, inp)


@register("t2s_cfg")
@torch.no_grad()
def run_t2s_cfg(name, case, root, inp):
    model = _stage1_from_file(case, root, case["weights"][0])
    prompt, target, tmask = inp["prompt_ids"], inp["target_ids"], inp["target_mask"]
    B, Tp = prompt.shape
    T = target.shape[1]
    t = torch.full((B,), float(inp["t_scalar"]), dtype=torch.float32)
    cond = inp.get("cond")
    cur = model.embed_tokens(target, tmask)
    x = torch.cat([model.embed_tokens(prompt), cur], dim=1)
    x_u = cur
    if cond is not None:
        a = model.adapt(cond)
        x = x + a
        x_u = cur + a[:, Tp:]
    prefix = model.phone_prefix(inp["phone_ids"]) if "phone_ids" in inp else None
    h_cond = model.transformer(x, t, None, prefix)[:, Tp:]
    h_uncond = model.transformer(x_u, t)
    w, r = float(inp["cfg"]), float(inp["rescale_cfg"])
    g = h_cond + w * (h_cond - h_uncond)
    h_final = guidance_combine(h_cond, h_uncond, w, r)  # reference: one std over the batch
    logits = model.to_logit(h_final)
    return {
        "logits": logits,
        "logits_topk": top_k_filter(logits, float(inp["filter_thres"])),
        "h_cond": h_cond,
        "h_uncond": h_uncond,
        "h_cfg_unrescaled": g,
        "h_final": h_final,
        "std_cond": h_cond.std().view(1),
        "std_cfg": g.std().view(1),
    }


@register("s2a")
@torch.no_grad()
def run_s2a(name, case, root, inp):
    model = _s2a_from_case(case, root)
    layer = int(inp["layer"])
    out = model(inp["semantic_ids"], inp["prompt_codes"], inp["target_codes"], inp["target_mask"], layer, inp["t"])
    Tp = inp["prompt_codes"].shape[1]
    # unconditional pass: target only, semantic condition kept
    cond_t = out.cond[:, Tp:]
    h_u = model.transformer(out.x_in[:, Tp:], cond_t, inp["t"])
    h_final = guidance_combine(out.hidden, h_u, float(inp["cfg"]), float(inp["rescale_cfg"]))
    return {
        "logits": out.logits,
        "dbg_x_in": out.x_in,
        "dbg_cond": out.cond,
        "dbg_hidden": out.hidden,
        "logits_cfg": model.to_logits[layer](h_final),
        "h_uncond": h_u,
        "h_final_cfg": h_final,
    }


def _call_kwargs(call: str) -> dict:
    out = {}
    for key in ("temp", "filter_thres", "n_timesteps", "cfg", "rescale_cfg"):
        m = re.search(rf"\b{key}=(\[[^\]]*\]|[-0-9.]+)", call)
        if m:
            out[key] = eval(m.group(1), {"__builtins__": {}})  # numbers / lists of numbers only
    return out


@register("reverse_diffusion_seeded")
@torch.no_grad()
def run_seeded(name, case, root, inp):
    """The reference's seeded loops (torch.manual_seed(0) == a generator seeded with 0)."""
    tensors = inp["_all_tensors"]
    runs = case["runs"]
    out = {}
    t2s_cfg = {}
    for run_name, run in runs.items():
        weights = run["weights"]
        call = run["call"]
        state = read_weights(root / weights)
        if run_name.startswith("out_t2s"):
            kw = _call_kwargs(call) if "same as above" not in call else dict(t2s_cfg, cfg=0.0)
            if "same as above" not in call:
                t2s_cfg = kw
            if "cfg=0.0" in call:
                kw["cfg"] = 0.0
            H = state["cond_emb.weight"].shape[1]
            num_heads = _heads_for(case, H)
            cfg = stage1_config_for(
                {"hidden_size": H, "num_layers": _n_layers(state), "num_heads": num_heads,
                 "cond_codebook_size": state["cond_emb.weight"].shape[0]},
                state,
            )
            model = Stage1Model(cfg).eval()
            load_state_dict_strict(model, state, str(root / weights))
            prompt = tensors["in_prompt_ids"]
            phones = tensors.get("in_phone_ids") if "phone" in run_name else None
            cond = tensors.get("in_cond") if "adapter" in run_name else None
            m = re.search(r"target_len=(\d+)|in_prompt_ids, (\d+)", call)
            target_len = int(next(g for g in m.groups() if g)) if m else int(tensors[run_name].shape[-1])
            settings = DecodeSettings(
                steps=int(kw["n_timesteps"]), guidance=float(kw["cfg"]), rescale=float(kw["rescale_cfg"]),
                temperature=float(kw["temp"]), filter_thres=float(kw["filter_thres"]), rescale_scope="batch",
                batch_guidance=False,
            )
            gen = torch.Generator().manual_seed(0)
            ids = stage1_generate(
                model, [target_len] * prompt.shape[0], list(prompt), list(phones) if phones is not None else None,
                list(cond) if cond is not None else None, settings, gen,
            )
            out[run_name] = torch.stack(ids)
        else:
            kw = _call_kwargs(call)
            H = state["mask_emb.weight"].shape[1]
            Q = state["layer_emb.weight"].shape[0]
            cfg = S2AConfig(
                hidden_size=H, num_layers=_n_layers(state), num_heads=_heads_for(case, H), num_quantizers=Q,
                codebook_size=state["token_emb.0.weight"].shape[0], cond_codebook_size=state["cond_emb.weight"].shape[0],
            )
            model = S2AModel(cfg).eval()
            load_state_dict_strict(model, state, str(root / weights))
            sem = tensors["in_s2a_semantic_ids"]
            prompt = tensors["in_s2a_prompt_codes"]
            settings = DecodeSettings(
                guidance=float(kw["cfg"]), rescale=float(kw["rescale_cfg"]), temperature=float(kw["temp"]),
                filter_thres=float(kw["filter_thres"]), rescale_scope="batch", batch_guidance=False,
            )
            gen = torch.Generator().manual_seed(0)
            codes = s2a_generate(model, list(sem), list(prompt), kw["n_timesteps"], settings, generator=gen)
            out[run_name] = torch.stack(codes)
    return out


def _n_layers(state) -> int:
    return 1 + max(int(m.group(1)) for k in state if (m := re.match(r"diff_estimator\.layers\.(\d+)\.", k)))


def _heads_for(case: dict, hidden: int) -> int:
    # the small reference configs use head dim 16
    return case.get("num_heads", hidden // 16)
