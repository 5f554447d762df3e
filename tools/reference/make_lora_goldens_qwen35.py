#!/usr/bin/env python3
"""Make the Qwen3.5 LoRA reference data under tests/data/lora/ (transformers + PEFT, CPU, float64).

The same computation and files as tools/reference/make_lora_goldens.py (see its header), reused from it, for two
cases on the Qwen3.5 golden models:
  qwen35_dense_all10   qwen3_5_dense_nv4nk2_T75_untied: LoRA on self_attn q/k/v/o_proj, linear_attn in_proj_qkv,
                       in_proj_z, out_proj and mlp gate/up/down_proj
  qwen35moe_attn_gdn_shared   qwen3_5moe_e4_top2_nv2nk1_T67: self_attn q/k/v/o_proj, linear_attn in_proj_qkv,
                       in_proj_z, out_proj and the shared expert's gate/up/down_proj (not the fused experts)
Differences from make_lora_goldens.py:
  * the golden models are the composite vision-language checkpoints; they are loaded with the class their
    config.json names (Qwen3_5ForConditionalGeneration / Qwen3_5MoeForConditionalGeneration), so the LoRA modules
    live under `model.language_model.layers.N` and PEFT's keys are `base_model.model.model.language_model.layers.N...`;
  * target_modules is a regex on the language model's layers (nothing in the vision tower);
  * transformers' Gated DeltaNet kernel (torch_chunk_gated_delta_rule, the chunked form) runs in fp32 even inside a
    double model, and its fp32 error is large enough to matter here (the MoE case's gradients moved by ~3e-4), so
    every GDN module's `chunk_gated_delta_rule` is replaced by `recurrent_gated_delta_rule_f64` below: the same math
    (l2norm(q), l2norm(k) with eps 1e-6, q * dk^-0.5, then the per-token recurrence) in float64. index_qwen35.json's
    `gdn_kernel_check` gives its largest logits difference from transformers' own kernel on each golden model
    (double model). The decay g and the gated RMSNorm still round to fp32 inside transformers (relative ~1e-7).
Writes <out>/<case>/... and <out>/index_qwen35.json (merge its cases into index.json by hand).
Run:  python3 tools/reference/make_lora_goldens_qwen35.py --golden tests/data/golden --out tests/data/lora
"""

import argparse
import json
import os
import sys
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_lora_goldens as base  # noqa: E402

GENERATOR = "tools/reference/make_lora_goldens_qwen35.py"
INDEX_OFFSET = 20  # seeds: BASE_SEED + 100 * (INDEX_OFFSET + i) + attempt

LIN = r"linear_attn\.(in_proj_qkv|in_proj_z|out_proj)"
ATTN = r"self_attn\.(q|k|v|o)_proj"
CASES = [
    dict(name="qwen35_dense_all10", golden="qwen3_5_dense_nv4nk2_T75_untied", T=12, r=4, alpha=8, rslora=False,
         target_modules=rf".*\.language_model\.layers\.\d+\.({ATTN}|{LIN}|mlp\.(gate|up|down)_proj)",
         wd=0.01, max_grad_norm=0.0,
         expect=dict(modules=rf"model\.language_model\.layers\.\d+\.({ATTN}|{LIN}|mlp\.(gate|up|down)_proj)",
                     params=[])),
    dict(name="qwen35moe_attn_gdn_shared", golden="qwen3_5moe_e4_top2_nv2nk1_T67", T=11, r=4, alpha=4,
         rslora=False,
         target_modules=rf".*\.language_model\.layers\.\d+\.({ATTN}|{LIN}|mlp\.shared_expert\.(gate|up|down)_proj)",
         wd=0.01, max_grad_norm=0.0,
         expect=dict(modules=rf"model\.language_model\.layers\.\d+\.({ATTN}|{LIN}|"
                             r"mlp\.shared_expert\.(gate|up|down)_proj)",
                     params=[])),
]


def recurrent_gated_delta_rule_f64(query, key, value, g, beta, initial_state=None, output_final_state=False,
                                   use_qk_l2norm_in_kernel=False, **_):
    """torch_chunk_gated_delta_rule's contract (inputs [B, T, H, d], g/beta [B, T, H]) as the plain recurrence in
    float64: S = exp(g) S; u = beta (v - S^T k); S += k u^T; o = S^T q."""
    import torch
    dtype = query.dtype
    q, k, v, g, b = (x.double() for x in (query, key, value, g, beta))
    if use_qk_l2norm_in_kernel:
        q = q * torch.rsqrt((q * q).sum(-1, keepdim=True) + 1e-6)
        k = k * torch.rsqrt((k * k).sum(-1, keepdim=True) + 1e-6)
    q = q * q.shape[-1] ** -0.5
    B, T, H, dk = q.shape
    S = torch.zeros(B, H, dk, v.shape[-1], dtype=torch.float64) if initial_state is None else initial_state.double()
    outs = []
    for t in range(T):
        S = S * g[:, t].exp()[..., None, None]
        u = b[:, t][..., None] * (v[:, t] - torch.einsum("bhkv,bhk->bhv", S, k[:, t]))
        S = S + k[:, t][..., :, None] * u[..., None, :]
        outs.append(torch.einsum("bhkv,bhk->bhv", S, q[:, t]))
    return torch.stack(outs, 1).to(dtype), (S if output_final_state else None)


_PATCHED = []  # (object, attribute, original)


def patch_gdn(model):
    """Points the Gated DeltaNet kernel at the float64 recurrence: every attribute of a *GatedDeltaNet module, and
    every module-level function of its modeling modules, whose name ends in "chunk_gated_delta_rule" or
    "recurrent_gated_delta_rule". Returns the patched names."""
    import inspect
    names = []
    for mod in model.modules():
        if not type(mod).__name__.endswith("GatedDeltaNet"):
            continue
        if not names:
            src = inspect.getsource(type(mod).forward)
            print("  GDN forward calls:", [ln.strip() for ln in src.splitlines() if "delta_rule" in ln])
        owners = [mod] + [sys.modules[c.__module__] for c in type(mod).__mro__ if c.__module__ in sys.modules]
        for obj in owners:
            for attr in list(vars(obj)):
                if not (attr.endswith("chunk_gated_delta_rule") or attr.endswith("recurrent_gated_delta_rule")):
                    continue
                val = getattr(obj, attr)
                if not callable(val):
                    continue
                if val is not recurrent_gated_delta_rule_f64:
                    _PATCHED.append((obj, attr, val))
                    setattr(obj, attr, recurrent_gated_delta_rule_f64)
                names.append(f"{getattr(obj, '__name__', type(obj).__name__)}.{attr}")
    if not names:
        raise RuntimeError("found no Gated DeltaNet kernel to patch")
    return sorted(set(names))


def unpatch_gdn():
    while _PATCHED:
        obj, attr, val = _PATCHED.pop()
        setattr(obj, attr, val)


def gdn_kernel_check(golden_root, case):
    """max |logits| difference, double model, transformers' kernel vs recurrent_gated_delta_rule_f64."""
    import torch
    path = os.path.join(golden_root, case["golden"])
    moe = "moe" in case["golden"]
    m, _ = _load_base_hf(path, moe)
    m = m.double()
    ids = torch.randint(0, m.config.vocab_size, (2, 23), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        ref = m(input_ids=ids, use_cache=False).logits
        names = patch_gdn(m)
        got = m(input_ids=ids, use_cache=False).logits
        unpatch_gdn()
    diff = float((got - ref).abs().max())
    if diff == 0.0:
        raise RuntimeError(f"patching {names} changed nothing: the kernel is called some other way")
    return dict(case=case["name"], patched=names, max_abs_diff=diff, logits_absmax=float(ref.abs().max()))


def load_base(path, moe):
    m, kw = _load_base_hf(path, moe)
    kw["gdn_modules_patched_to_f64_recurrence"] = patch_gdn(m)
    return m, kw


def _load_base_hf(path, moe):
    """The golden model in fp32 with the class its config.json names, eager attention (and experts), eval mode."""
    import torch
    import transformers
    with open(os.path.join(path, "config.json")) as f:
        cls = getattr(transformers, json.load(f)["architectures"][0])
    kw = dict(attn_implementation="eager")
    if moe:
        kw["experts_implementation"] = "eager"
    tries = [dict(kw, dtype=torch.float32), dict(kw, torch_dtype=torch.float32), dict(kw),
             dict(attn_implementation="eager", dtype=torch.float32), dict(attn_implementation="eager")]
    err = None
    for t in tries:
        try:
            m = cls.from_pretrained(path, **t)
            # make_lora_goldens.py reads these from model.config; the composite config keeps them in text_config.
            for key in ("vocab_size", "num_experts_per_tok"):
                if hasattr(m.config.text_config, key):
                    setattr(m.config, key, getattr(m.config.text_config, key))
            return m.float().eval(), dict(t, model_class=cls.__name__)
        except (TypeError, ValueError) as e:
            err = e
    raise err


def save_adapter(model, d):
    """make_lora_goldens.save_adapter with save_embedding_layers=False: the vocab_size copied onto the composite
    config above would otherwise make PEFT compare it with a fresh composite config (which has none)."""
    orig = model.save_pretrained
    model.save_pretrained = lambda path, **kw: orig(path, save_embedding_layers=False, **kw)
    try:
        return _save_adapter(model, d)
    finally:
        del model.save_pretrained


_save_adapter = base.save_adapter


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--golden", default="tests/data/golden")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    import torch
    torch.set_num_threads(min(8, os.cpu_count() or 1))
    base.load_base = load_base
    base.save_adapter = save_adapter
    base.GENERATOR = GENERATOR
    print("versions:", json.dumps(base.versions()))
    os.makedirs(args.out, exist_ok=True)
    index, failures = [], []
    checks = [gdn_kernel_check(args.golden, case) for case in CASES]
    print("gdn kernel check:", checks)
    for i, case in enumerate(CASES):
        print(f"[{i}] {case['name']} on {case['golden']} ...", flush=True)
        try:
            for attempt in range(10):
                try:
                    index.append(base.make_case(case, INDEX_OFFSET + i, args.golden, args.out, attempt))
                    break
                except base.NearTie as e:
                    print(f"  {case['name']}: {e}, reseeding")
            else:
                raise RuntimeError("no seed without a routing near-tie")
        except Exception as e:
            traceback.print_exc()
            failures.append(dict(name=case["name"], error=f"{type(e).__name__}: {e}",
                                 traceback=traceback.format_exc()[-4000:]))
    base.dump_json(dict(generator=GENERATOR, versions=base.versions(), cases=index, failures=failures,
                        gdn_kernel_check=checks),
                   os.path.join(args.out, "index_qwen35.json"))
    print(f"done: {len(index)} cases, {len(failures)} failures")
    for fl in failures:
        print("  FAILED", fl["name"], fl["error"])
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
