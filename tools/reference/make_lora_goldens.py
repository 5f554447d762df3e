#!/usr/bin/env python3
"""Make the LoRA reference data under tests/data/lora/ with Hugging Face transformers + PEFT.

For every case in CASES below (a LoRA configuration on one of the golden models of tests/data/golden/) this writes
  <out>/<case>/init_adapter/        adapter_config.json + adapter_model.safetensors (PEFT save_pretrained, fp32):
                                    lora_A as PEFT initialises it (kaiming uniform), lora_B overwritten with
                                    0.05 * randn (seeded) so that the gradients of lora_A are not zero
  <out>/<case>/batch.safetensors    input_ids int32 [B, T], labels int32 [B, T] (-100 = not trained; unshifted, as
                                    transformers takes them: position t's label is predicted by the logits at t-1)
  <out>/<case>/grads.safetensors    float64: d loss / d (every LoRA tensor) at the init adapter, keys as in
                                    adapter_model.safetensors
  <out>/<case>/steps.json           hyperparameters, the LoRA targets (kind, base parameter, shapes, scaling), and per
                                    optimizer step the loss (before the update), the global grad norm before clipping,
                                    the clip coefficient
  <out>/<case>/final_adapter/       the adapter after the optimizer steps (PEFT save_pretrained, fp32)
  <out>/<case>/final_adapter_f64.safetensors   the same LoRA tensors in float64 (what the optimizer really holds)
  <out>/<case>/meta.json            generator, versions, seeds, base golden model, tensor lists, checks, notes
and <out>/index.json plus <out>/README.md.

The computation (all on the CPU):
  * the golden model is loaded in fp32 with eager attention (and eager experts), LoRA is added with
    get_peft_model(LoraConfig(..., init_lora_weights=True)) after torch.manual_seed(seed), lora_B is overwritten,
    the init adapter is saved; then the whole model is cast with model.double() (exact upcast of the fp32 weights).
  * one optimizer step = gradient accumulation over the micro-batches rows [0,2) and [2,4); the loss is the mean
    token cross-entropy over ALL trained tokens of the whole batch: for each micro-batch
        loss_mb = CE(logits[:, :-1], labels[:, 1:], ignore_index=-100, reduction='sum') / N_total
    with N_total = number of labels[:, 1:] != -100 over all 4 rows; loss_mb.backward() per micro-batch, so the
    gradients accumulate to d(sum_mb loss_mb). Then (if the case clips) torch.nn.utils.clip_grad_norm_ over all LoRA
    tensors, then torch.optim.AdamW (foreach=False) with a constant learning rate. The same batch every step.
  * the HF modules still do some steps in fp32 inside a double model (RMSNorm statistics, RoPE cos/sin, attention
    softmax, router softmax); meta.json records how far an fp32 computation of the step-0 loss and gradients is from
    the double one.

MoE (qwen3_moe): in transformers 5 the experts of a layer are one module with fused 3-D parameters
(gate_up_proj [E, 2I, H], down_proj [E, H, I]), so PEFT can only reach them with `target_parameters`
(lora.ParamWrapper). Also, PEFT >= 0.19 rewrites `target_modules` of MoE models whose checkpoint layout changed in
transformers 5 (v4 per-expert names -> fused parameters); this script records what PEFT does by default and, where
that is not the intended set of targets, disables the rewrite (see meta.json "peft_target_rewrite"). A MoE case is
reseeded while some token's k-th and (k+1)-th router probabilities come closer than MIN_ROUTING_GAP in any step.

Needs torch, transformers (made with 5.17), peft (0.21), safetensors, numpy. CPU only, well under a minute.
Run:  python3 tools/reference/make_lora_goldens.py --golden tests/data/golden --out tests/data/lora [--only NAME,..]
"""

import argparse
import json
import math
import os
import platform
import re
import shutil
import sys
import traceback

GENERATOR = "tools/reference/make_lora_goldens.py"
BASE_SEED = 20240907
B = 4
MICRO_BATCHES = [[0, 2], [2, 4]]
PROMPT_LEN = 3                      # labels[:, :3] = -100 in every row
EXTRA_MASKED = [2, 0, 3, 1]         # further random label positions set to -100, per row (uneven on purpose)
B_INIT_STD = 0.05
LR, BETAS, EPS = 2e-3, (0.9, 0.999), 1e-8
STEPS = 5
MIN_ROUTING_GAP = 1e-4  # MoE: reseed a case if some token's k-th and (k+1)-th router probabilities get closer


class NearTie(Exception):
    pass

ALL7 = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
ATTN_AND_DENSE0 = r".*\.layers\.\d+\.self_attn\.(q|k|v|o)_proj|.*\.layers\.0\.mlp\.(gate|up|down)_proj"

CASES = [
    dict(name="qwen3_all7", golden="qwen3_gqa2_odd_untied_sharded", T=12, r=4, alpha=8, rslora=False,
         target_modules=ALL7, wd=0.01, max_grad_norm=0.0),
    dict(name="qwen2_all7_rslora", golden="qwen2_gqa3_odd_untied_eps1e-5", T=9, r=3, alpha=6, rslora=True,
         target_modules=ALL7, wd=0.01, max_grad_norm=0.0),
    dict(name="qwen3_tied_qv", golden="qwen3_mha_hd16_tied", T=14, r=2, alpha=4, rslora=False,
         target_modules=["q_proj", "v_proj"], wd=0.1, max_grad_norm=0.05),
    dict(name="qwen3moe_attn_dense", golden="qwen3moe_e6_top3_nonorm_mixed_untied", T=11, r=4, alpha=4,
         rslora=False, target_modules=ATTN_AND_DENSE0, wd=0.01, max_grad_norm=0.0,
         expect=dict(modules=r"model\.layers\.\d+\.self_attn\.(q|k|v|o)_proj|model\.layers\.0\.mlp\.(gate|up|down)_proj",
                     params=[])),
    dict(name="qwen3moe_experts", golden="qwen3moe_e6_top3_nonorm_mixed_untied", T=13, r=4, alpha=8,
         rslora=False, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
         target_parameters=["mlp.experts.gate_up_proj", "mlp.experts.down_proj"], wd=0.01, max_grad_norm=0.0,
         expect=dict(modules=r"model\.layers\.\d+\.self_attn\.(q|k|v|o)_proj",
                     params=r"model\.layers\.[12]\.mlp\.experts\.(gate_up_proj|down_proj)")),
]


# --------------------------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------------------------


def versions():
    import numpy
    import peft
    import safetensors
    import torch
    import transformers
    return dict(python=platform.python_version(), torch=torch.__version__, transformers=transformers.__version__,
                peft=peft.__version__, safetensors=safetensors.__version__, numpy=numpy.__version__)


def jsonable(x):
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (set, frozenset)):
        return sorted(jsonable(v) for v in x)
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, (str, int, float, bool)) or x is None:
        return x
    if hasattr(x, "to_dict"):
        return jsonable(x.to_dict())
    if hasattr(x, "value"):  # enums
        return jsonable(x.value)
    return str(x)


def dump_json(obj, path):
    with open(path, "w") as f:
        json.dump(jsonable(obj), f, indent=1)
        f.write("\n")


def load_base(path, moe):
    """The golden model in fp32, eager attention (and eager experts), eval mode."""
    import torch
    import transformers
    kw = dict(attn_implementation="eager")
    if moe:
        kw["experts_implementation"] = "eager"
    tries = [dict(kw, dtype=torch.float32), dict(kw, torch_dtype=torch.float32), dict(kw),
             dict(attn_implementation="eager", dtype=torch.float32), dict(attn_implementation="eager")]
    err = None
    for t in tries:
        try:
            m = transformers.AutoModelForCausalLM.from_pretrained(path, **t)
            return m.float().eval(), t
        except (TypeError, ValueError) as e:
            err = e
    raise err


def lora_config(case):
    from peft import LoraConfig
    kw = dict(r=case["r"], lora_alpha=case["alpha"], lora_dropout=0.0, use_rslora=case["rslora"],
              target_modules=case["target_modules"], init_lora_weights=True, bias="none", task_type="CAUSAL_LM")
    if case.get("target_parameters"):
        kw["target_parameters"] = list(case["target_parameters"])
    return LoraConfig(**kw)


def lora_layers(model):
    """[(module_name, module)] of the PEFT LoRA layers (lora.Linear, lora.ParamWrapper, ...)."""
    from peft.tuners.lora import LoraLayer
    return [(n, m) for n, m in model.named_modules() if isinstance(m, LoraLayer)]


def base_target_name(module_name, module):
    """The base-model tensor a LoRA layer adapts, e.g. model.layers.0.self_attn.q_proj.weight."""
    n = module_name
    for p in ("base_model.model.",):
        if n.startswith(p):
            n = n[len(p):]
    n = n.replace(".base_layer", "")
    pname = getattr(module, "parameter_name", None)
    return f"{n}.{pname}" if pname else f"{n}.weight"


def targeted_names(model):
    mods, params = [], []
    for n, m in lora_layers(model):
        t = base_target_name(n, m)
        if getattr(m, "parameter_name", None):
            params.append(t.rsplit(".", 1)[0] + "." + m.parameter_name)
        else:
            mods.append(t[: -len(".weight")])
    return sorted(set(mods)), sorted(set(params))


def expected_names(model, expect):
    """The module and parameter names the case is meant to adapt, from the plain base model's names."""
    mods = sorted(n for n, _ in model.named_modules() if re.fullmatch(expect["modules"], n))
    params = sorted(n for n, _ in model.named_parameters() if expect["params"] and re.fullmatch(expect["params"], n))
    return mods, params


def build_peft(case, golden_path, seed, disable_rewrite=False):
    """Base model + LoRA (PEFT), fp32, with lora_B overwritten (seeded). Returns (model, info)."""
    import importlib
    import torch
    from peft import get_peft_model
    moe = "moe" in case["golden"]
    base, load_kw = load_base(golden_path, moe)
    patched = []
    if disable_rewrite:
        for modname in ("peft.utils.transformers_weight_conversion", "peft.tuners.tuners_utils"):
            try:
                mod = importlib.import_module(modname)
            except ImportError:
                continue
            if hasattr(mod, "convert_peft_config_for_transformers"):
                patched.append((mod, mod.convert_peft_config_for_transformers))
                mod.convert_peft_config_for_transformers = lambda *a, **k: None
        if not patched:
            raise RuntimeError("found no convert_peft_config_for_transformers to disable")
    try:
        torch.manual_seed(seed)
        model = get_peft_model(base, lora_config(case))
    finally:
        for mod, fn in patched:
            mod.convert_peft_config_for_transformers = fn
    model.eval()
    g = torch.Generator().manual_seed(seed + 1)
    n_b = 0
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if p.requires_grad and ".lora_B." in name:
                p.copy_(B_INIT_STD * torch.randn(p.shape, generator=g, dtype=torch.float32))
                n_b += 1
    info = dict(load_kwargs={k: str(v) for k, v in load_kw.items()}, lora_B_overwritten=n_b,
                peft_config_in_memory=model.peft_config["default"].to_dict(),
                experts_implementation=getattr(model.config, "_experts_implementation", None),
                attn_implementation=getattr(model.config, "_attn_implementation", None))
    return model, info


def strip_adapter_name(n):
    return n.replace(".default.", ".").replace(".default", "")


def lora_params(model):
    """[(in-memory name, param)] of every trainable tensor (the LoRA tensors), sorted by name."""
    return sorted(((n, p) for n, p in model.named_parameters() if p.requires_grad), key=lambda t: t[0])


def key_map(named, saved):
    """in-memory name -> saved key: the name minus the adapter name if that gives exactly the saved keys, else by
    matching values (all LoRA tensors are random, so values identify them)."""
    import torch
    guess = {n: strip_adapter_name(n) for n, _ in named}
    if sorted(guess.values()) == sorted(saved):
        return guess, "in-memory name with the adapter name '.default' removed"
    out = {}
    for n, p in named:
        hits = [k for k, v in saved.items() if v.shape == p.shape and torch.equal(v, p.detach())]
        if len(hits) != 1:
            raise RuntimeError(f"cannot map {n} to a saved key: {hits}")
        out[n] = hits[0]
    if sorted(out.values()) != sorted(saved):
        raise RuntimeError("saved keys and in-memory LoRA tensors do not match one to one")
    return out, "matched by value (the names differ: see the pairs)"


def make_batch(V, T, seed):
    import torch
    g = torch.Generator().manual_seed(seed + 2)
    ids = torch.randint(0, V, (B, T), generator=g, dtype=torch.int64)
    labels = ids.clone()
    labels[:, :PROMPT_LEN] = -100
    for row in range(B):
        pos = torch.randperm(T - PROMPT_LEN, generator=g)[: EXTRA_MASKED[row]] + PROMPT_LEN
        labels[row, pos] = -100
    return ids, labels


def n_trained(labels):
    return int((labels[:, 1:] != -100).sum())


def ce_sum(model, ids, labels):
    import torch.nn.functional as F
    logits = model(input_ids=ids, use_cache=False).logits
    V = logits.shape[-1]
    return F.cross_entropy(logits[:, :-1].reshape(-1, V), labels[:, 1:].reshape(-1), ignore_index=-100,
                           reduction="sum")


def accumulate_grads(model, params, ids, labels):
    """zero grads; backward of each micro-batch's sum CE / N_total; returns (loss, per-micro-batch losses)."""
    N = n_trained(labels)
    for p in params:
        p.grad = None
    parts = []
    for a, b in MICRO_BATCHES:
        loss_mb = ce_sum(model, ids[a:b], labels[a:b]) / N
        loss_mb.backward()
        parts.append(float(loss_mb.detach()))
    return sum(parts), parts


def global_norm(params):
    import torch
    return float(torch.sqrt(sum((p.grad.double() ** 2).sum() for p in params)))


def routing_hooks(model, top_k, sink):
    """Record min over tokens of p[k-1] - p[k] (sorted router softmax, double) of every MoE router."""
    import torch
    handles = []
    for name, mod in model.named_modules():
        if re.search(r"\.mlp\.gate$", name) and getattr(mod, "weight", None) is not None and mod.weight.dim() == 2:
            def hook(m, inp, out, name=name):
                W = m.weight.detach().double()
                x = inp[0].detach().double().reshape(-1, W.shape[1])
                p = torch.softmax(x @ W.T, dim=-1).sort(dim=-1, descending=True).values
                sink.append(float((p[:, top_k - 1] - p[:, top_k]).min()))
            handles.append(mod.register_forward_hook(hook))
    return handles


def describe_targets(model, keymap):
    """For every LoRA layer: saved keys, kind, base tensor, shapes, r, scaling; and a layout check for 3-D.

    keymap: in-memory parameter name -> key in adapter_model.safetensors."""
    import torch
    rows = []
    for n, m in lora_layers(model):
        if "default" not in m.lora_A:
            continue
        A = m.lora_A["default"].weight
        Bw = m.lora_B["default"].weight
        pname = getattr(m, "parameter_name", None)
        row = dict(module=n, lora_A=keymap[f"{n}.lora_A.default.weight"], lora_B=keymap[f"{n}.lora_B.default.weight"],
                   peft_class=type(m).__name__, base_tensor=base_target_name(n, m),
                   lora_A_shape=list(A.shape), lora_B_shape=list(Bw.shape), r=m.r["default"],
                   lora_alpha=m.lora_alpha["default"], scaling=float(m.scaling["default"]),
                   in_features=m.in_features, out_features=m.out_features)
        if pname:
            W = m.get_param()
            row.update(kind="param", parameter_name=pname, base_shape=list(W.shape), num_experts=m.num_experts,
                       is_transposed=bool(getattr(m.get_base_layer(), "is_transposed", False)),
                       swapped_in_out=bool(getattr(m, "_did_swap_in_out_features", False)))
            # Check the layout claim: A rows are expert-major (e*r + j), B columns rank-major (j*E + e).
            with torch.no_grad():
                E, r, s = m.num_experts, m.r["default"], m.scaling["default"]
                mine = torch.stack([s * Bw[:, [j * E + e for j in range(r)]] @ A[[e * r + j for j in range(r)], :]
                                    for e in range(E)])
                if not row["swapped_in_out"]:
                    mine = mine.transpose(1, 2)
                theirs = m.get_delta_weight("default")
                row["layout_check"] = dict(
                    formula=("delta[e] = scaling * B[:, j*E+e for j<r] @ A[e*r+j for j<r, :]"
                             + ("" if row["swapped_in_out"] else "  (then transposed)")),
                    same_shape_as_base=list(theirs.shape) == list(W.shape),
                    max_abs_diff_vs_peft_get_delta_weight=float((mine - theirs).abs().max()))
        else:
            row.update(kind="linear", base_shape=list(m.get_base_layer().weight.shape))
        rows.append(row)
    return sorted(rows, key=lambda r: r["lora_A"])


def merged_logits(golden_path, moe, targets, f64, ids):
    """Independent check of the LoRA math: W += delta (own formula) in a fresh double base model; logits."""
    import torch
    base, _ = load_base(golden_path, moe)
    base = base.double().eval()
    params = dict(base.named_parameters())
    with torch.no_grad():
        for t in targets:
            A, Bw, s = f64[t["lora_A"]], f64[t["lora_B"]], t["scaling"]
            W = params[t["base_tensor"]]
            if t["kind"] == "linear":
                W += s * (Bw @ A)
            else:
                E, r = t["num_experts"], t["r"]
                A3 = A.reshape(E, r, A.shape[-1])            # [E, r, in]
                B3 = Bw.reshape(Bw.shape[0], r, E)           # [out, r, E]
                d = torch.einsum("ore,eri->eoi", B3, A3) * s  # [E, out, in]
                if not t["swapped_in_out"]:
                    d = d.transpose(1, 2)
                W += d
        return base(input_ids=ids, use_cache=False).logits


def peft_reload_check(golden_path, moe, adapter_dir, ref_logits, ids, ref_sd):
    """Can PEFT load the adapter it wrote, and does the loaded model give the same logits (fp32)?"""
    import torch
    from peft import PeftModel
    res = {}
    try:
        base, _ = load_base(golden_path, moe)
        m = PeftModel.from_pretrained(base, adapter_dir).eval()
        loaded = {strip_adapter_name(n): p.detach() for n, p in m.named_parameters() if ".lora_" in n}
        res["keys_equal"] = sorted(loaded) == sorted(ref_sd)
        if not res["keys_equal"]:
            res["missing"] = sorted(set(ref_sd) - set(loaded))[:20]
            res["unexpected"] = sorted(set(loaded) - set(ref_sd))[:20]
        res["values_equal"] = res["keys_equal"] and all(torch.equal(loaded[k].float(), ref_sd[k].float())
                                                        for k in ref_sd)
        with torch.no_grad():
            lg = m(input_ids=ids, use_cache=False).logits
        res["logits_max_abs_diff"] = float((lg - ref_logits).abs().max())
        res["peft_config_after_load"] = m.peft_config["default"].to_dict()
        res["ok"] = bool(res["values_equal"] and res["logits_max_abs_diff"] <= 1e-6)
    except Exception as e:
        res["ok"] = False
        res["error"] = f"{type(e).__name__}: {e}"
    return res


def save_adapter(model, d):
    from safetensors import safe_open
    model.save_pretrained(d)
    extra = sorted(set(os.listdir(d)) - {"adapter_config.json", "adapter_model.safetensors"})
    for f in extra:  # README.md (model card) and anything else PEFT adds: not needed here
        p = os.path.join(d, f)
        shutil.rmtree(p) if os.path.isdir(p) else os.remove(p)
    with safe_open(os.path.join(d, "adapter_model.safetensors"), "pt") as f:
        keys = sorted(f.keys())
        tensors = {k: f.get_tensor(k) for k in keys}
    return tensors, extra


def tensor_list(sd):
    return [dict(name=k, shape=list(v.shape), dtype=str(v.dtype).replace("torch.", "")) for k, v in sorted(sd.items())]


def dir_bytes(d):
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(d) for f in fs)


# --------------------------------------------------------------------------------------------------------------------
# One case
# --------------------------------------------------------------------------------------------------------------------


def make_case(case, index, golden_root, out_dir, attempt=0):
    import torch
    from safetensors.torch import save_file

    name = case["name"]
    seed = BASE_SEED + 100 * index + attempt
    golden_path = os.path.join(golden_root, case["golden"])
    moe = "moe" in case["golden"]
    d = os.path.join(out_dir, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    notes = []

    # ---- build; check what PEFT really targeted
    rewrite = None
    if not case.get("expect"):
        model, build_info = build_peft(case, golden_path, seed)
    else:
        base_for_names, _ = load_base(golden_path, moe)
        want = expected_names(base_for_names, case["expect"])
        del base_for_names
        try:
            model, build_info = build_peft(case, golden_path, seed)
            got = targeted_names(model)
            default = dict(modules=got[0], params=got[1], peft_config=model.peft_config["default"].to_dict(),
                           lora_tensors={strip_adapter_name(n): list(p.shape) for n, p in lora_params(model)})
        except Exception as e:
            traceback.print_exc()
            model, got = None, None
            default = dict(error=f"{type(e).__name__}: {e}")
        rewrite = dict(expected=dict(modules=want[0], params=want[1]), peft_default=default,
                       default_is_as_intended=(got == want))
        if got != want:
            print(f"  {name}: PEFT's default targets differ from the intended ones; rebuilding with "
                  f"convert_peft_config_for_transformers disabled")
            print(f"    intended modules {want[0]} params {want[1]}")
            print(f"    PEFT default {default if got is None else got}")
            print(f"    PEFT default config: {json.dumps(jsonable(default.get('peft_config')))[:1500]}")
            model, build_info = build_peft(case, golden_path, seed, disable_rewrite=True)
            got2 = targeted_names(model)
            rewrite["rewrite_disabled"] = dict(modules=got2[0], params=got2[1], as_intended=(got2 == want))
            if got2 != want:
                raise RuntimeError(f"targets still not as intended: {got2} vs {want}")
            notes.append("PEFT's transformers-v5 MoE target rewrite (peft.utils.transformers_weight_conversion."
                         "convert_peft_config_for_transformers) was disabled while building this adapter: by default "
                         "it moved the targets (see peft_target_rewrite). A PEFT that loads this adapter_config.json "
                         "may rewrite the targets again (see checks.peft_reload_init).")
        else:
            rewrite["rewrite_disabled"] = None
    named = lora_params(model)
    names = [n for n, _ in named]
    params = [p for _, p in named]
    mem_sd = {strip_adapter_name(n): p.detach().clone() for n, p in named}

    # ---- init adapter (fp32)
    init_sd, extra_files = save_adapter(model, os.path.join(d, "init_adapter"))
    keymap, keymap_how = key_map(named, init_sd)
    keys = [keymap[n] for n in names]
    if any(v.dtype != torch.float32 for v in init_sd.values()):
        raise RuntimeError("init adapter is not fp32")
    with open(os.path.join(d, "init_adapter", "adapter_config.json")) as f:
        adapter_config = json.load(f)
    targets = describe_targets(model, keymap)
    print(f"  {name}: {len(keys)} LoRA tensors, keys e.g. {keys[:2]} ... {keys[-2:]}")

    # ---- batch
    V = model.config.vocab_size
    ids, labels = make_batch(V, case["T"], seed)
    save_file({"input_ids": ids.to(torch.int32).contiguous(), "labels": labels.to(torch.int32).contiguous()},
              os.path.join(d, "batch.safetensors"))
    N = n_trained(labels)
    n_mb = [n_trained(labels[a:b]) for a, b in MICRO_BATCHES]
    if n_mb[0] == n_mb[1]:
        raise RuntimeError("micro-batches have equal trained-token counts")

    # ---- checks in fp32 at the init adapter: reload by PEFT, fp32 loss and grads
    with torch.no_grad():
        logits32 = model(input_ids=ids, use_cache=False).logits
    reload_init = peft_reload_check(golden_path, moe, os.path.join(d, "init_adapter"), logits32, ids, mem_sd)
    print(f"  {name}: PEFT reload of init_adapter: ok {reload_init.get('ok')} "
          f"{reload_init.get('error', '')} {reload_init.get('logits_max_abs_diff', '')}")
    loss32, _ = accumulate_grads(model, params, ids, labels)
    grads32 = [p.grad.detach().double().clone() for p in params]

    # ---- double
    model = model.double()
    named64 = lora_params(model)
    if [n for n, _ in named64] != names:
        raise RuntimeError("LoRA parameter names changed with model.double()")
    params = [p for _, p in named64]
    top_k = getattr(model.config, "num_experts_per_tok", None) if moe else None
    gaps = []
    handles = routing_hooks(model, top_k, gaps) if moe else []

    opt = torch.optim.AdamW(params, lr=LR, betas=BETAS, eps=EPS, weight_decay=case["wd"], foreach=False)
    steps, grads0 = [], None
    for step in range(STEPS):
        gaps.clear()
        loss, parts = accumulate_grads(model, params, ids, labels)
        if step == 0:
            grads0 = [p.grad.detach().clone() for p in params]
        pre = global_norm(params)
        if case["max_grad_norm"] > 0:
            total = float(torch.nn.utils.clip_grad_norm_(params, case["max_grad_norm"], foreach=False))
            coef = min(1.0, case["max_grad_norm"] / (total + 1e-6))
            post = global_norm(params)
        else:
            total, coef, post = pre, 1.0, pre
        rec = dict(step=step + 1, loss=loss, loss_micro_batches=parts, grad_norm_pre_clip=pre,
                   grad_norm_clip_grad_norm_returned=total, clip_coef=coef, grad_norm_post_clip=post)
        if moe:
            rec["router_min_gap"] = min(gaps) if gaps else None
        steps.append(rec)
        print(f"  {name} step {step + 1}: loss {loss:.12f}  grad norm {pre:.6e}  clip coef {coef:.6f}"
              + (f"  router gap {rec['router_min_gap']:.2e}" if moe and gaps else ""))
        opt.step()

    gaps.clear()
    with torch.no_grad():
        final_loss = sum(float(ce_sum(model, ids[a:b], labels[a:b])) for a, b in MICRO_BATCHES) / N
        peft_logits64 = model(input_ids=ids, use_cache=False).logits
    for h in handles:
        h.remove()
    final_gap = min(gaps) if gaps else None
    if moe:
        worst = min([x["router_min_gap"] for x in steps] + [final_gap])
        print(f"  {name}: router min gap over all steps and the final weights {worst:.2e}")
        if worst < MIN_ROUTING_GAP:
            raise NearTie(f"router gap {worst:.2e} < {MIN_ROUTING_GAP} with seed {seed}")
    final64 = {k: p.detach().clone().contiguous() for k, p in zip(keys, params)}

    # transformers' own loss (labels shifted inside, sum / num_items_in_batch) at the init weights, as a cross-check
    try:
        with torch.no_grad():
            for k, p in zip(keys, params):
                p.copy_(init_sd[k].double())
            tot = 0.0
            for a, b in MICRO_BATCHES:
                out = model(input_ids=ids[a:b], labels=labels[a:b], num_items_in_batch=N, use_cache=False)
                tot += float(out.loss)
            for k, p in zip(keys, params):
                p.copy_(final64[k])
        hf_loss_check = dict(hf_loss=tot, ours=steps[0]["loss"], abs_diff=abs(tot - steps[0]["loss"]),
                             note="transformers' ForCausalLMLoss casts the logits to fp32")
    except Exception as e:
        hf_loss_check = dict(error=f"{type(e).__name__}: {e}")
        with torch.no_grad():
            for k, p in zip(keys, params):
                p.copy_(final64[k])

    save_file({k: g.contiguous() for k, g in zip(keys, grads0)}, os.path.join(d, "grads.safetensors"))
    save_file(final64, os.path.join(d, "final_adapter_f64.safetensors"))

    # independent merge check at the final weights (double)
    try:
        mlog = merged_logits(golden_path, moe, targets, final64, ids)
        merge_check = dict(max_abs_diff=float((mlog - peft_logits64).abs().max()),
                           logits_absmax=float(peft_logits64.abs().max()))
    except Exception as e:
        traceback.print_exc()
        merge_check = dict(error=f"{type(e).__name__}: {e}")

    # final adapter in fp32, as PEFT writes it from an fp32 model
    model = model.float()
    final_sd, _ = save_adapter(model, os.path.join(d, "final_adapter"))
    if sorted(final_sd) != sorted(keys) or not all(torch.equal(final_sd[k], final64[k].float()) for k in keys):
        raise RuntimeError("final adapter differs from the float64 weights rounded to fp32")

    # fp32 vs double at step 0
    gdiff = max(float((g32 - g64).abs().max()) for g32, g64 in zip(grads32, grads0))
    gmax = max(float(g64.abs().max()) for g64 in grads0)
    g_rel = float(torch.sqrt(sum(((g32 - g64) ** 2).sum() for g32, g64 in zip(grads32, grads0)))) / \
        steps[0]["grad_norm_pre_clip"]

    scaling = case["alpha"] / (math.sqrt(case["r"]) if case["rslora"] else case["r"])
    scalings = sorted({t["scaling"] for t in targets})
    hyper = dict(r=case["r"], lora_alpha=case["alpha"], use_rslora=case["rslora"], scaling=scaling,
                 scaling_formula="lora_alpha / sqrt(r)" if case["rslora"] else "lora_alpha / r",
                 scalings_seen_in_peft_layers=scalings, lora_dropout=0.0,
                 target_modules=case["target_modules"], target_parameters=case.get("target_parameters"),
                 lr=LR, lr_schedule="constant", betas=list(BETAS), eps=EPS, weight_decay=case["wd"],
                 max_grad_norm=case["max_grad_norm"], steps=STEPS, micro_batches=MICRO_BATCHES,
                 batch_size=B, seq_len=case["T"], trained_tokens_total=N, trained_tokens_per_micro_batch=n_mb,
                 trained_tokens_per_row=[n_trained(labels[i:i + 1]) for i in range(B)],
                 optimizer="torch.optim.AdamW(foreach=False), decoupled weight decay: p *= 1 - lr*wd; "
                           "m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2; "
                           "p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)",
                 clipping=("torch.nn.utils.clip_grad_norm_(all LoRA tensors, max_norm, foreach=False): "
                           "total = sqrt(sum g^2); g *= min(1, max_norm / (total + 1e-6))")
                 if case["max_grad_norm"] > 0 else "none",
                 loss="sum over micro-batches of CE(logits[:, :-1], labels[:, 1:], ignore_index=-100, "
                      "reduction='sum') / trained_tokens_total")
    if any(abs(x - scaling) > 1e-12 for x in scalings):
        notes.append(f"PEFT layer scalings {scalings} differ from lora_alpha/r (or /sqrt(r)) = {scaling}: "
                     "see targets[*].r / lora_alpha (rank_pattern / alpha_pattern)")
    steps_json = dict(case=name, base_golden=case["golden"], hyperparameters=hyper, targets=targets,
                      steps=steps, loss_after_last_step=final_loss)
    if moe:
        steps_json["router_min_gap_after_last_step"] = final_gap
    dump_json(steps_json, os.path.join(d, "steps.json"))

    meta = dict(
        name=name, generator=GENERATOR, versions=versions(), seed=seed, base_seed=BASE_SEED, attempt=attempt,
        base_golden=case["golden"], base_golden_path=f"tests/data/golden/{case['golden']}",
        peft_build=build_info, adapter_config=adapter_config, peft_removed_files=extra_files,
        key_mapping=dict(how=keymap_how, pairs={n: keymap[n] for n in names}),
        seeds=dict(lora_A="torch.manual_seed(seed) before get_peft_model (PEFT's kaiming_uniform_(a=sqrt(5)))",
                   lora_B=f"{B_INIT_STD} * torch.randn(shape, generator=Generator().manual_seed(seed + 1)), over "
                          "the lora_B tensors in sorted in-memory name order, in fp32",
                   batch="torch.randint(0, V, (B, T), generator=Generator().manual_seed(seed + 2)); then labels "
                         f"= input_ids, labels[:, :{PROMPT_LEN}] = -100, and per row EXTRA_MASKED[row]="
                         f"{EXTRA_MASKED} positions from randperm(T-{PROMPT_LEN}) + {PROMPT_LEN} set to -100"),
        files=dict(init_adapter=tensor_list(init_sd), grads=dict(dtype="float64", same_keys_as="init_adapter"),
                   final_adapter=dict(dtype="float32"), final_adapter_f64=dict(dtype="float64")),
        checks=dict(
            peft_reload_init=reload_init,
            hf_loss_vs_ours_step0=hf_loss_check,
            merged_weights_vs_peft_logits_final=merge_check,
            fp32_vs_f64_step0=dict(loss_fp32=loss32, loss_f64=steps[0]["loss"],
                                   loss_abs_diff=abs(loss32 - steps[0]["loss"]), grad_max_abs_diff=gdiff,
                                   grad_absmax=gmax, grad_diff_norm_over_grad_norm=g_rel),
        ),
        notes=notes + [
            "grads.safetensors holds the raw (unclipped) accumulated gradients at the init adapter, float64.",
            "Everything computed on the CPU in float64 (model.double() after the fp32 init adapter was saved); "
            "HF still rounds some intermediates to fp32 inside (RMSNorm, RoPE, softmax).",
            "No attention mask, no padding: all rows have length T.",
        ],
    )
    if rewrite is not None:
        meta["peft_target_rewrite"] = rewrite
    if moe:
        meta["routing_min_gap"] = dict(
            threshold=MIN_ROUTING_GAP, per_step=[x["router_min_gap"] for x in steps], after_last_step=final_gap,
            note="min over tokens and routers of p[k-1]-p[k] (sorted router softmax, double) in each step's "
                 "forward passes; the case is reseeded (seed = BASE_SEED + 100*index + attempt) when below threshold")
    dump_json(meta, os.path.join(d, "meta.json"))
    print(f"  {name}: loss {steps[0]['loss']:.6f} -> {final_loss:.6f}, fp32 grad rel diff {g_rel:.1e}, "
          f"merge check {merge_check}, hf loss check {hf_loss_check}")
    return dict(name=name, base_golden=case["golden"], r=case["r"], lora_alpha=case["alpha"],
                use_rslora=case["rslora"], scaling=scaling, target_modules=case["target_modules"],
                target_parameters=case.get("target_parameters"), weight_decay=case["wd"],
                max_grad_norm=case["max_grad_norm"], T=case["T"], n_lora_tensors=len(keys),
                losses=[x["loss"] for x in steps], loss_after_last_step=final_loss,
                grad_norms_pre_clip=[x["grad_norm_pre_clip"] for x in steps], bytes=dir_bytes(d),
                peft_reload_ok=reload_init.get("ok"),
                peft_default_targets_as_intended=None if rewrite is None else rewrite["default_is_as_intended"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--golden", default="tests/data/golden", help="folder of the golden models")
    ap.add_argument("--out", required=True, help="output folder, e.g. tests/data/lora")
    ap.add_argument("--only", default="", help="comma-separated case names (default: all)")
    args = ap.parse_args()

    import torch
    torch.set_num_threads(min(8, os.cpu_count() or 1))
    print("versions:", json.dumps(versions()))
    os.makedirs(args.out, exist_ok=True)
    only = set(filter(None, args.only.split(",")))
    index, failures = [], []
    for i, case in enumerate(CASES):
        if only and case["name"] not in only:
            continue
        print(f"[{i}] {case['name']} on {case['golden']} ...", flush=True)
        try:
            for attempt in range(10):
                try:
                    index.append(make_case(case, i, args.golden, args.out, attempt))
                    break
                except NearTie as e:
                    print(f"  {case['name']}: {e}, reseeding")
            else:
                raise RuntimeError("no seed without a routing near-tie")
        except Exception as e:
            traceback.print_exc()
            failures.append(dict(name=case["name"], error=f"{type(e).__name__}: {e}",
                                 traceback=traceback.format_exc()[-4000:]))
            shutil.rmtree(os.path.join(args.out, case["name"]), ignore_errors=True)
    dump_json(dict(generator=GENERATOR, versions=versions(), cases=index, failures=failures),
              os.path.join(args.out, "index.json"))
    with open(os.path.join(args.out, "README.md"), "w") as f:
        f.write("# LoRA reference data\n\nMade by `python3 tools/reference/make_lora_goldens.py --golden "
                "tests/data/golden --out tests/data/lora` (transformers + PEFT on the CPU, float64); see that "
                "script's header. Each folder is one LoRA case on a golden model of `tests/data/golden/`: "
                "`init_adapter/` (PEFT adapter, fp32), `batch.safetensors` (`input_ids`, `labels` int32 [4, T], "
                "-100 = untrained), `grads.safetensors` (float64 gradients of the loss at the init adapter, same "
                "keys), `steps.json` (hyperparameters, LoRA targets, per-step loss and grad norm of 5 AdamW "
                "steps, micro-batches rows [0,2) and [2,4)), `final_adapter/` (fp32) and "
                "`final_adapter_f64.safetensors` after the 5 steps, `meta.json` (versions, seeds, checks). "
                "`index.json` lists them.\n")
    print(f"done: {len(index)} cases, {sum(r['bytes'] for r in index)} bytes, {len(failures)} failures")
    for fl in failures:
        print("  FAILED", fl["name"], fl["error"])
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
