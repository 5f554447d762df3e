#!/usr/bin/env python3
"""Make the golden test models under tests/data/golden/ with Hugging Face transformers.

For every tiny, seeded, fully randomised Qwen model listed in SPECS below this writes a directory
  <out>/<name>/config.json, model*.safetensors[, model.safetensors.index.json]   (what save_pretrained writes, fp32)
  <out>/<name>/reference.safetensors   input_ids int32 [T], logits float32 [T, V]
  <out>/<name>/meta.json               generator, versions, seed, class, num_parameters, tensor list, checks
and <out>/index.json (one line per model) plus <out>/README.md.

The reference logits come from one forward pass over the whole sequence (no attention mask, no padding, no cache)
of the model cast with model.double() on the CPU, after its fp32 weights were saved, so the weights behind the
logits are exactly the saved ones. Note: the HF modules still do some steps in fp32 inside a double model (RMSNorm
statistics, RoPE cos/sin, softmax, router softmax, the Gated DeltaNet kernel); meta.json records how far an fp32
forward is from the reference (`fp32_forward_max_abs_diff`) so tests can pick a fair tolerance.

MoE experts: transformers keeps experts fused in memory (gate_up_proj [E, 2I, H], down_proj [E, H, I]); what
save_pretrained writes is detected and recorded. For each MoE architecture one extra directory holds the same model
in the other layout (written here with the safetensors library, then reloaded with transformers and checked to give
back the same in-memory weights and the same logits).

Needs torch, transformers (made with 5.17), safetensors, numpy. CPU only, under a minute.
Run:  python3 tools/reference/make_goldens.py --out tests/data/golden [--only NAME,NAME] [--no-qwen35]
"""

import argparse
import json
import math
import os
import platform
import re
import shutil
import sys
import tempfile
import traceback

GENERATOR = "tools/reference/make_goldens.py"
BASE_SEED = 20240611
MIN_ROUTING_GAP = 1e-4  # reseed a MoE model if some token's k-th and (k+1)-th router probabilities are closer

# --------------------------------------------------------------------------------------------------------------------
# The models. `cfg` goes to the HF config class (rope_theta is turned into rope_parameters); `expect` lists what the
# built model must show; `other_layout` asks for a copy with the MoE experts in the layout save_pretrained did not use.
# --------------------------------------------------------------------------------------------------------------------


def _q2(name, T, V, H, nH, nKV, I, L, tied, theta, eps=1e-6, sharded=False):
    return dict(name=name, arch="qwen2", T=T, sharded=sharded,
                cfg=dict(vocab_size=V, hidden_size=H, intermediate_size=I, num_hidden_layers=L,
                         num_attention_heads=nH, num_key_value_heads=nKV, tie_word_embeddings=tied,
                         rope_theta=theta, rms_norm_eps=eps),
                expect=dict(head_dim=H // nH))


def _q3(name, T, V, H, nH, nKV, hd, I, L, tied, theta, eps=1e-6, sharded=False):
    return dict(name=name, arch="qwen3", T=T, sharded=sharded,
                cfg=dict(vocab_size=V, hidden_size=H, intermediate_size=I, num_hidden_layers=L,
                         num_attention_heads=nH, num_key_value_heads=nKV, head_dim=hd, tie_word_embeddings=tied,
                         rope_theta=theta, rms_norm_eps=eps),
                expect=dict(head_dim=hd))


def _moe(name, T, V, H, nH, nKV, hd, E, k, Imoe, norm, L, tied, theta, I=None, mlp_only=None, sparse_step=1,
         sharded=False, other_layout=None, eps=1e-6):
    cfg = dict(vocab_size=V, hidden_size=H, intermediate_size=I if I is not None else 4 * Imoe,
               num_hidden_layers=L, num_attention_heads=nH, num_key_value_heads=nKV, head_dim=hd,
               num_experts=E, num_experts_per_tok=k, moe_intermediate_size=Imoe, norm_topk_prob=norm,
               decoder_sparse_step=sparse_step, mlp_only_layers=list(mlp_only or []),
               tie_word_embeddings=tied, rope_theta=theta, rms_norm_eps=eps)
    ffn = ["moe" if (i not in (mlp_only or []) and (i + 1) % sparse_step == 0) else "dense" for i in range(L)]
    return dict(name=name, arch="qwen3_moe", T=T, sharded=sharded, other_layout=other_layout, cfg=cfg,
                expect=dict(head_dim=hd, ffn=ffn))


def _q35(name, arch, T, V, H, L, layer_types, nH, nKV, hd, prf, mrope, nK, nV, dk, dv, tied, theta, I=None,
         moe=None, other_layout=None):
    text = dict(vocab_size=V, hidden_size=H, num_hidden_layers=L, layer_types=list(layer_types),
                num_attention_heads=nH, num_key_value_heads=nKV, head_dim=hd,
                linear_conv_kernel_dim=4, linear_num_key_heads=nK, linear_num_value_heads=nV,
                linear_key_head_dim=dk, linear_value_head_dim=dv, tie_word_embeddings=tied, rms_norm_eps=1e-6,
                rope_parameters=dict(rope_type="default", rope_theta=theta, partial_rotary_factor=prf,
                                     mrope_section=list(mrope), mrope_interleaved=True),
                partial_rotary_factor=prf)
    if I is not None:
        text["intermediate_size"] = I
    if moe is not None:
        text.update(moe)
    vision = dict(depth=1, hidden_size=16, intermediate_size=32, num_heads=2, in_channels=3, patch_size=4,
                  temporal_patch_size=2, spatial_merge_size=2, out_hidden_size=H, num_position_embeddings=16)
    return dict(name=name, arch=arch, T=T, sharded=False, other_layout=other_layout,
                cfg=dict(text_config=text, vision_config=vision, tie_word_embeddings=tied),
                expect=dict(head_dim=hd, rotary_dim=int(hd * prf), layer_types=list(layer_types)))


SPECS = [
    # ---- qwen2: q/k/v biases, head_dim = H / nH
    _q2("qwen2_mha_tied", T=7, V=128, H=32, nH=4, nKV=4, I=64, L=2, tied=True, theta=10000.0),
    _q2("qwen2_gqa2_untied_sharded", T=11, V=192, H=64, nH=8, nKV=4, I=96, L=2, tied=False, theta=1e6,
        sharded=True),
    _q2("qwen2_gqa3_odd_untied_eps1e-5", T=13, V=131, H=48, nH=6, nKV=2, I=70, L=3, tied=False, theta=10000.0,
        eps=1e-5),
    _q2("qwen2_gqa4_hd16_tied", T=16, V=300, H=64, nH=4, nKV=1, I=100, L=2, tied=True, theta=1e6),
    # ---- qwen3: explicit head_dim, QK-norm, no biases
    _q3("qwen3_mha_hd16_tied", T=5, V=128, H=32, nH=4, nKV=4, hd=16, I=64, L=2, tied=True, theta=1e6),
    _q3("qwen3_gqa2_odd_untied_sharded", T=14, V=211, H=56, nH=6, nKV=3, hd=12, I=90, L=2, tied=False,
        theta=1e6, sharded=True),
    _q3("qwen3_gqa4_hd24_untied", T=10, V=160, H=64, nH=4, nKV=1, hd=24, I=96, L=2, tied=False, theta=10000.0),
    _q3("qwen3_gqa4_hd16_tied_eps1e-5", T=17, V=100, H=48, nH=8, nKV=2, hd=16, I=80, L=2, tied=True,
        theta=10000.0, eps=1e-5),
    # ---- qwen3_moe
    _moe("qwen3moe_e4_top1_norm_tied", T=8, V=128, H=32, nH=4, nKV=2, hd=8, E=4, k=1, Imoe=32, norm=True, L=2,
         tied=True, theta=1e6),
    _moe("qwen3moe_e8_top2_norm_untied_sharded", T=12, V=160, H=48, nH=4, nKV=2, hd=16, E=8, k=2, Imoe=24,
         norm=True, L=2, tied=False, theta=1e6, sharded=True, other_layout="qwen3moe_e8_top2_norm_untied_sharded_{}"),
    _moe("qwen3moe_e6_top3_nonorm_mixed_untied", T=15, V=137, H=40, nH=4, nKV=1, hd=12, E=6, k=3, Imoe=20,
         norm=False, L=3, tied=False, theta=10000.0, I=72, mlp_only=[0],
         other_layout="qwen3moe_e6_top3_nonorm_mixed_untied_{}"),
    _moe("qwen3moe_e8_top2_nonorm_sparse2_tied", T=6, V=100, H=32, nH=4, nKV=4, hd=8, E=8, k=2, Imoe=16,
         norm=False, L=3, tied=True, theta=10000.0, I=48, sparse_step=2),
    # ---- qwen3.5 (lower priority): hybrid Gated DeltaNet + gated attention, text path only
    _q35("qwen3_5_dense_nv4nk2_T75_untied", "qwen3_5", T=75, V=200, H=32, L=3,
         layer_types=["linear_attention", "full_attention", "linear_attention"], nH=4, nKV=2, hd=32, prf=0.25,
         mrope=[2, 1, 1], nK=2, nV=4, dk=8, dv=8, tied=False, theta=10000.0, I=64),
    _q35("qwen3_5_dense_nv2nk2_tied", "qwen3_5", T=9, V=150, H=32, L=4,
         layer_types=["linear_attention", "linear_attention", "linear_attention", "full_attention"], nH=2, nKV=1,
         hd=16, prf=0.5, mrope=[2, 1, 1], nK=2, nV=2, dk=16, dv=8, tied=True, theta=1e7, I=48),
    _q35("qwen3_5moe_e4_top2_nv2nk1_T67", "qwen3_5_moe", T=67, V=160, H=32, L=3,
         layer_types=["linear_attention", "linear_attention", "full_attention"], nH=4, nKV=2, hd=16, prf=0.25,
         mrope=[1, 1, 0], nK=1, nV=2, dk=8, dv=8, tied=False, theta=10000.0,
         moe=dict(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=16,
                  shared_expert_intermediate_size=24),
         other_layout="qwen3_5moe_e4_top2_nv2nk1_T67_{}"),
    # DeltaNet heads of 64, which the CUDA kernels take (tests/model/test_forward_cuda.cpp runs these on the GPU);
    # 150 positions: two whole chunks of 64 and a partial one. The MoE one selects every expert (no top-k ties
    # between the fp32 CPU and the bf16 GPU).
    _q35("qwen3_5_dense_dk64_T150_tied", "qwen3_5", T=150, V=160, H=64, L=4,
         layer_types=["linear_attention", "full_attention", "linear_attention", "full_attention"], nH=2, nKV=1,
         hd=64, prf=0.25, mrope=[4, 2, 2], nK=1, nV=2, dk=64, dv=64, tied=True, theta=1e7, I=96),
    _q35("qwen3_5moe_e4_top4_dk64_T100", "qwen3_5_moe", T=100, V=160, H=64, L=2,
         layer_types=["linear_attention", "full_attention"], nH=2, nKV=1, hd=64, prf=0.25, mrope=[4, 2, 2], nK=1,
         nV=2, dk=64, dv=64, tied=False, theta=1e7,
         moe=dict(num_experts=4, num_experts_per_tok=4, moe_intermediate_size=32, shared_expert_intermediate_size=48)),
]

HF_CLASSES = {  # arch -> (config class, model class)
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM"),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM"),
    "qwen3_moe": ("Qwen3MoeConfig", "Qwen3MoeForCausalLM"),
    "qwen3_5": ("Qwen3_5Config", "Qwen3_5ForConditionalGeneration"),
    "qwen3_5_moe": ("Qwen3_5MoeConfig", "Qwen3_5MoeForConditionalGeneration"),
}

PER_EXPERT_RE = re.compile(r"^(.*\.mlp\.experts)\.(\d+)\.(gate_proj|up_proj|down_proj)\.weight$")
FUSED_RE = re.compile(r"^(.*\.mlp\.experts)\.(gate_up_proj|down_proj)$")


# --------------------------------------------------------------------------------------------------------------------
# Building and randomising
# --------------------------------------------------------------------------------------------------------------------


def build_config(spec):
    import transformers
    cfg_cls = getattr(transformers, HF_CLASSES[spec["arch"]][0])
    kw = json.loads(json.dumps(spec["cfg"]))
    if spec["arch"] in ("qwen2", "qwen3", "qwen3_moe"):
        V = kw["vocab_size"]
        kw.update(max_position_embeddings=256, bos_token_id=V - 2, eos_token_id=V - 1)
        theta = kw.pop("rope_theta")
        try:
            cfg = cfg_cls(rope_parameters=dict(rope_type="default", rope_theta=theta), **kw)
        except TypeError:  # a transformers without rope_parameters
            cfg = cfg_cls(rope_theta=theta, **kw)
        for k, v in kw.items():  # fields the class does not declare (e.g. head_dim) must still have arrived
            if getattr(cfg, k, None) != v:
                raise RuntimeError(f"config field {k}: asked {v}, got {getattr(cfg, k, None)}")
    else:
        V = kw["text_config"]["vocab_size"]
        kw["text_config"].update(max_position_embeddings=256, bos_token_id=V - 2, eos_token_id=V - 1)
        cfg = cfg_cls(**kw)
    return cfg


def impl_kwargs(arch):
    """Eager (readable) attention, and eager experts where transformers has a choice of experts kernels."""
    kw = dict(attn_implementation="eager")
    if arch in ("qwen3_moe", "qwen3_5_moe"):
        kw["experts_implementation"] = "eager"
    return kw


def call_with_fallbacks(fn, arch, **extra):
    """fn(**impl_kwargs, dtype=fp32, **extra), dropping the arguments an older or newer transformers rejects."""
    import torch
    kw = impl_kwargs(arch)
    tries = [dict(kw, dtype=torch.float32), dict(kw, torch_dtype=torch.float32), dict(kw),
             dict(attn_implementation="eager", dtype=torch.float32), dict(attn_implementation="eager")]
    err = None
    for t in tries:
        try:
            return fn(**t, **extra)
        except (TypeError, ValueError) as e:
            err = e
    raise err


def build_model(spec, cfg):
    import transformers
    model_cls = getattr(transformers, HF_CLASSES[spec["arch"]][1])
    model = call_with_fallbacks(lambda **kw: model_cls._from_config(cfg, **kw), spec["arch"])
    model = model.float().eval()
    if model.config._attn_implementation != "eager":
        raise RuntimeError(f"attention implementation is {model.config._attn_implementation}, not eager")
    if spec["cfg"].get("tie_word_embeddings") and \
            model.get_input_embeddings().weight.data_ptr() != model.get_output_embeddings().weight.data_ptr():
        model.tie_weights()
    return model, model_cls


def is_zero_centred_norm(arch, name):
    # Qwen3.5 RMSNorms compute x_hat * (1 + w); the gated norm inside Gated DeltaNet and the vision LayerNorms do not.
    return arch.startswith("qwen3_5") and "visual" not in name and ".linear_attn.norm." not in name


def randomise(model, arch, seed):
    """Overwrite every parameter with seeded random values of a useful scale (logit std of order 1)."""
    import torch
    g = torch.Generator().manual_seed(seed)
    rules = {}
    with torch.no_grad():
        for name, p in model.named_parameters():  # tied parameters appear once
            shape = tuple(p.shape)
            randn = torch.randn(shape, generator=g, dtype=torch.float64)
            if name.endswith("A_log"):
                u = torch.rand(shape, generator=g, dtype=torch.float64)
                val, rule = torch.log(0.003 + u * (1.0 - 0.003)), "log(U(0.003,1))"
            elif name.endswith("dt_bias"):
                val, rule = 0.5 * randn, "0.5*randn"
            elif name.endswith(".bias"):
                val, rule = 0.1 * randn, "0.1*randn"
            elif p.dim() == 1:
                if "norm" not in name:
                    print(f"  warning: unclassified 1-D parameter {name}: 0.1*randn")
                    val, rule = 0.1 * randn, "0.1*randn (unclassified 1-D)"
                elif is_zero_centred_norm(arch, name):
                    val, rule = 0.2 * randn, "0.2*randn (zero-centred norm)"
                else:
                    val, rule = 1.0 + 0.2 * randn, "1+0.2*randn"
            elif name.endswith("embed_tokens.weight") or name.endswith("pos_embed.weight"):
                val, rule = 0.2 * randn, "0.2*randn"
            else:
                fan_in = shape[-1] if (p.dim() == 3 and "experts" in name) else math.prod(shape[1:])
                std = 1.2 / math.sqrt(fan_in)
                val, rule = std * randn, f"1.2/sqrt({fan_in})*randn"
            p.copy_(val.to(p.dtype))
            rules[name] = rule
    return rules


def decoder_layers(model):
    import torch
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.ModuleList) and name.endswith("layers") and "visual" not in name \
                and "mtp" not in name:
            return name, mod
    raise RuntimeError("no decoder layer list found")


def describe_layers(model):
    _, layers = decoder_layers(model)
    out = []
    for layer in layers:
        mixer = "full_attention" if hasattr(layer, "self_attn") else (
            "linear_attention" if hasattr(layer, "linear_attn") else "?")
        mlp = getattr(layer, "mlp", None)
        ffn = "moe" if (mlp is not None and hasattr(mlp, "experts")) else "dense"
        if ffn == "moe" and hasattr(mlp, "shared_expert"):
            ffn = "moe+shared"
        out.append(dict(mixer=mixer, ffn=ffn))
    return out


def text_config_of(cfg):
    return getattr(cfg, "text_config", None) or cfg


def check_structure(spec, model, cfg):
    """Fail loudly if transformers built something other than what the spec asks for."""
    tc = text_config_of(cfg)
    hd = spec["expect"]["head_dim"]
    kinds = describe_layers(model)
    _, layers = decoder_layers(model)
    for i, (layer, kind) in enumerate(zip(layers, kinds)):
        if kind["mixer"] == "full_attention":
            q = layer.self_attn.q_proj.weight.shape[0]
            want = tc.num_attention_heads * hd * (2 if spec["arch"].startswith("qwen3_5") else 1)
            if q != want:
                raise RuntimeError(f"layer {i}: q_proj has {q} rows, expected {want}")
            if layer.self_attn.k_proj.weight.shape[0] != tc.num_key_value_heads * hd:
                raise RuntimeError(f"layer {i}: k_proj rows != nKV*head_dim")
    if "ffn" in spec["expect"]:
        got = [k["ffn"] for k in kinds]
        if got != spec["expect"]["ffn"]:
            raise RuntimeError(f"ffn kinds {got}, expected {spec['expect']['ffn']}")
    if "layer_types" in spec["expect"]:
        got = [k["mixer"] for k in kinds]
        if got != spec["expect"]["layer_types"]:
            raise RuntimeError(f"mixers {got}, expected {spec['expect']['layer_types']}")
    if "rotary_dim" in spec["expect"]:
        inv = [b for n, b in model.named_buffers() if n.endswith("inv_freq") and "visual" not in n]
        if not inv or inv[0].numel() * 2 != spec["expect"]["rotary_dim"]:
            raise RuntimeError(f"text rotary dim {inv[0].numel() * 2 if inv else None}, "
                               f"expected {spec['expect']['rotary_dim']}")
    tied = bool(spec["cfg"].get("tie_word_embeddings"))
    emb = model.get_input_embeddings().weight
    head = model.get_output_embeddings().weight
    if tied != (emb.data_ptr() == head.data_ptr()):
        raise RuntimeError(f"tie_word_embeddings={tied} but embed/lm_head sharing is {not tied}")
    return kinds


# --------------------------------------------------------------------------------------------------------------------
# Forward passes
# --------------------------------------------------------------------------------------------------------------------


def forward_logits(model, ids):
    import torch
    with torch.no_grad():
        out = model(input_ids=ids[None, :], use_cache=False)
    return out.logits[0]


def routing_gaps(model, ids, top_k):
    """Smallest gap between the k-th and (k+1)-th router probability over all tokens and MoE layers."""
    import torch
    gaps, handles = [], []
    for name, mod in model.named_modules():
        if re.search(r"\.mlp\.gate$", name) and getattr(mod, "weight", None) is not None and mod.weight.dim() == 2:
            def hook(m, inp, out, name=name):
                W = m.weight.detach().double()
                x = inp[0].detach().double().reshape(-1, W.shape[1])
                p = torch.softmax(x @ W.T, dim=-1).sort(dim=-1, descending=True).values
                if top_k < p.shape[1]:  # with every expert selected nothing can tie
                    gaps.append((name, float((p[:, top_k - 1] - p[:, top_k]).min())))
            handles.append(mod.register_forward_hook(hook))
    try:
        forward_logits(model, ids)
    finally:
        for h in handles:
            h.remove()
    return gaps


# --------------------------------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------------------------------


def weight_files(d):
    return sorted(f for f in os.listdir(d) if f.endswith(".safetensors") and f != "reference.safetensors")


def read_weights(d):
    from safetensors.torch import load_file
    sd, where = {}, {}
    for f in weight_files(d):
        part = load_file(os.path.join(d, f))
        for k, v in part.items():
            sd[k] = v
            where[k] = f
    return sd, where


def tensor_list(d):
    from safetensors import safe_open
    rows = []
    for f in weight_files(d):
        with safe_open(os.path.join(d, f), framework="pt") as fh:
            for k in fh.keys():
                sl = fh.get_slice(k)
                rows.append(dict(name=k, shape=list(sl.get_shape()), dtype=sl.get_dtype(), file=f))
    return sorted(rows, key=lambda r: r["name"])


def experts_layout(keys):
    per = any(PER_EXPERT_RE.match(k) for k in keys)
    fused = any(FUSED_RE.match(k) for k in keys)
    return "mixed" if per and fused else "per_expert" if per else "fused" if fused else None


def save_pretrained(model, d, **kw):
    try:
        model.save_pretrained(d, safe_serialization=True, **kw)
    except TypeError as e:  # a transformers that always writes safetensors and dropped the argument
        if "safe_serialization" not in str(e):
            raise
        model.save_pretrained(d, **kw)


def save_hf(model, d, sharded):
    """save_pretrained; when sharded, pick max_shard_size so that 2-3 shards come out."""
    if not sharded:
        save_pretrained(model, d)
        return None
    with tempfile.TemporaryDirectory() as tmp:
        save_pretrained(model, tmp)
        total = sum(os.path.getsize(os.path.join(tmp, f)) for f in weight_files(tmp))
    for div in (2.5, 2.2, 2.8, 2.0, 3.2, 1.8, 3.6, 1.6):
        shutil.rmtree(d, ignore_errors=True)
        size = int(total / div)
        save_pretrained(model, d, max_shard_size=size)
        if 2 <= len(weight_files(d)) <= 3:
            return size
    raise RuntimeError(f"could not get 2-3 shards for {d}")


def convert_experts(sd, to):
    """Per-expert <-> fused expert tensors; gate rows first in gate_up_proj, as transformers fuses them."""
    import torch
    out = {}
    if to == "fused":
        groups = {}
        for k, v in sd.items():
            m = PER_EXPERT_RE.match(k)
            if m:
                groups.setdefault(m.group(1), {}).setdefault(int(m.group(2)), {})[m.group(3)] = v
            else:
                out[k] = v
        for prefix, experts in groups.items():
            E = len(experts)
            assert sorted(experts) == list(range(E)), prefix
            out[prefix + ".gate_up_proj"] = torch.stack(
                [torch.cat([experts[e]["gate_proj"], experts[e]["up_proj"]], dim=0) for e in range(E)]).contiguous()
            out[prefix + ".down_proj"] = torch.stack([experts[e]["down_proj"] for e in range(E)]).contiguous()
    else:
        for k, v in sd.items():
            m = FUSED_RE.match(k)
            if not m:
                out[k] = v
            elif m.group(2) == "gate_up_proj":
                inter = v.shape[1] // 2
                for e in range(v.shape[0]):
                    out[f"{m.group(1)}.{e}.gate_proj.weight"] = v[e, :inter].contiguous()
                    out[f"{m.group(1)}.{e}.up_proj.weight"] = v[e, inter:].contiguous()
            else:
                for e in range(v.shape[0]):
                    out[f"{m.group(1)}.{e}.down_proj.weight"] = v[e].contiguous()
    return out


def write_safetensors_dir(sd, d, n_shards):
    """Write sd as model.safetensors, or as n_shards shards with model.safetensors.index.json (HF naming)."""
    from safetensors.torch import save_file
    keys = sorted(sd)
    if n_shards <= 1:
        save_file({k: sd[k] for k in keys}, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
        return
    nbytes = {k: sd[k].numel() * sd[k].element_size() for k in keys}
    total, target = sum(nbytes.values()), sum(nbytes.values()) / n_shards
    shards, cur, acc = [], [], 0
    for k in keys:
        if cur and acc + nbytes[k] > target and len(shards) < n_shards - 1:
            shards.append(cur)
            cur, acc = [], 0
        cur.append(k)
        acc += nbytes[k]
    shards.append(cur)
    weight_map = {}
    for i, ks in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file({k: sd[k] for k in ks}, os.path.join(d, fname), metadata={"format": "pt"})
        weight_map.update({k: fname for k in ks})
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}, f, indent=2)
        f.write("\n")


def write_reference(d, ids, logits):
    import torch
    from safetensors.torch import save_file
    save_file({"input_ids": ids.to(torch.int32).contiguous(), "logits": logits.to(torch.float32).contiguous()},
              os.path.join(d, "reference.safetensors"), metadata={"generator": GENERATOR})


def dir_bytes(d):
    return sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))


# --------------------------------------------------------------------------------------------------------------------
# Checks after writing
# --------------------------------------------------------------------------------------------------------------------


def reload_check(model_cls, arch, d, sd32, ids, ref):
    """Load d with transformers: same in-memory weights as the model that made it, and the same logits in double."""
    import torch
    res = {}
    try:
        m, info = call_with_fallbacks(lambda **kw: model_cls.from_pretrained(d, **kw), arch,
                                      output_loading_info=True)
        res["loading_info"] = {k: sorted(map(str, v)) for k, v in info.items() if v}
        sd = m.state_dict()
        bad = sorted(set(sd) ^ set(sd32))
        bad += [k for k in sd32 if k in sd and not torch.equal(sd[k].float(), sd32[k])]
        res["weights_identical"] = not bad
        if bad:
            res["weights_differ"] = bad[:20]
        m = m.double().eval()
        res["logits_max_abs_diff"] = float((forward_logits(m, ids).float() - ref).abs().max())
        res["ok"] = res["weights_identical"] and res["logits_max_abs_diff"] <= 1e-6
    except Exception as e:  # record, do not stop the run
        res["ok"] = False
        res["error"] = f"{type(e).__name__}: {e}"
    return res


def text_only_load_check(arch, d, ids, ref):
    """Qwen3.5: can the text-only Qwen3_5(Moe)ForCausalLM read the composite checkpoint and give the same logits?"""
    import torch
    import transformers
    name = "Qwen3_5ForCausalLM" if arch == "qwen3_5" else "Qwen3_5MoeForCausalLM"
    cls = getattr(transformers, name, None)
    if cls is None:
        return {"class": name, "ok": False, "error": "class not in transformers"}
    try:
        m, info = call_with_fallbacks(lambda **kw: cls.from_pretrained(d, **kw), arch, output_loading_info=True)
        m = m.double().eval()
        diff = float((forward_logits(m, ids).float() - ref).abs().max())
        return {"class": name, "ok": diff <= 1e-6 and not info.get("missing_keys"), "logits_max_abs_diff": diff,
                "loading_info": {k: sorted(map(str, v))[:20] for k, v in info.items() if v}}
    except Exception as e:
        return {"class": name, "ok": False, "error": f"{type(e).__name__}: {e}"}


# --------------------------------------------------------------------------------------------------------------------
# One golden
# --------------------------------------------------------------------------------------------------------------------


def versions():
    import numpy
    import safetensors
    import torch
    import transformers
    return dict(python=platform.python_version(), torch=torch.__version__, transformers=transformers.__version__,
                safetensors=safetensors.__version__, numpy=numpy.__version__)


def summary(spec, cfg, kinds, layout):
    tc = text_config_of(cfg)
    rope = getattr(tc, "rope_parameters", None) or {}
    s = dict(arch=spec["arch"], hidden_size=tc.hidden_size, num_layers=tc.num_hidden_layers,
             num_attention_heads=tc.num_attention_heads, num_key_value_heads=tc.num_key_value_heads,
             head_dim=spec["expect"]["head_dim"], vocab_size=tc.vocab_size,
             intermediate_size=getattr(tc, "intermediate_size", None),
             tie_word_embeddings=bool(spec["cfg"].get("tie_word_embeddings")),
             rope_theta=rope.get("rope_theta", getattr(tc, "rope_theta", None)), rms_norm_eps=tc.rms_norm_eps,
             layers=kinds)
    for k in ("num_experts", "num_experts_per_tok", "moe_intermediate_size", "norm_topk_prob", "decoder_sparse_step",
              "mlp_only_layers", "shared_expert_intermediate_size", "linear_num_key_heads", "linear_num_value_heads",
              "linear_key_head_dim", "linear_value_head_dim", "linear_conv_kernel_dim"):
        if hasattr(tc, k):
            s[k] = getattr(tc, k)
    if "partial_rotary_factor" in rope:
        s["partial_rotary_factor"] = rope["partial_rotary_factor"]
        s["mrope_section"] = rope.get("mrope_section")
    if layout:
        s["experts_layout"] = layout
    return s


def make_one(spec, out_dir, index):
    import torch
    arch, T = spec["arch"], spec["T"]
    is_moe = arch in ("qwen3_moe", "qwen3_5_moe")
    cfg = build_config(spec)
    tc = text_config_of(cfg)
    V = tc.vocab_size

    # Seed, randomise; for MoE reseed until no token sits on a routing tie.
    for attempt in range(20):
        seed = BASE_SEED + 100 * index + attempt
        torch.manual_seed(seed)
        model, model_cls = build_model(spec, cfg)
        rules = randomise(model, arch, seed)
        ids = torch.randint(0, V, (T,), generator=torch.Generator().manual_seed(seed + 1), dtype=torch.int64)
        gaps = routing_gaps(model, ids, tc.num_experts_per_tok) if is_moe else []
        if not gaps or min(g for _, g in gaps) >= MIN_ROUTING_GAP:
            break
        print(f"  {spec['name']}: routing gap {min(g for _, g in gaps):.2e} with seed {seed}, reseeding")
    else:
        raise RuntimeError("no seed without a routing near-tie")
    kinds = check_structure(spec, model, cfg)
    sd32 = {k: v.detach().clone() for k, v in model.state_dict().items()}
    logits32 = forward_logits(model, ids).double()

    # Weights as save_pretrained writes them (fp32), before anything else touches the model.
    d = os.path.join(out_dir, spec["name"])
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    shard_size = save_hf(model, d, spec["sharded"])
    saved, _ = read_weights(d)
    layout = experts_layout(saved)

    # The same model with the experts in the other layout, written with the safetensors library.
    other = None
    if spec.get("other_layout"):
        if layout not in ("per_expert", "fused"):
            raise RuntimeError(f"saved experts layout is {layout}")
        other_layout = "fused" if layout == "per_expert" else "per_expert"
        other = dict(name=spec["other_layout"].format(other_layout), layout=other_layout)
        od = os.path.join(out_dir, other["name"])
        shutil.rmtree(od, ignore_errors=True)
        os.makedirs(od)
        for f in os.listdir(d):
            if f.endswith(".json") and f != "model.safetensors.index.json":
                shutil.copy(os.path.join(d, f), od)
        converted = convert_experts(saved, other_layout)
        write_safetensors_dir(converted, od, len(weight_files(d)))
        other["dir"] = od
        # Cross-check against transformers' own non-original save format, where it has one.
        with tempfile.TemporaryDirectory() as tmp:
            try:
                save_pretrained(model, tmp, save_original_format=(layout == "fused"))
                theirs, _ = read_weights(tmp)
                same = set(theirs) == set(converted) and all(torch.equal(theirs[k], converted[k]) for k in theirs)
                other["equals_save_pretrained_save_original_format_" + str(layout == "fused").lower()] = same
            except Exception as e:
                other["save_original_format_check"] = f"{type(e).__name__}: {e}"

    # The reference: double precision, on the CPU, same weights.
    model = model.double()
    ref = forward_logits(model, ids).float()
    dirs = [(d, spec["name"], layout, None)]
    if other:
        dirs.append((other["dir"], other["name"], other["layout"], spec["name"]))

    results = []
    vers = versions()
    for dd, name, lay, derived_from in dirs:
        write_reference(dd, ids, ref)
        check = reload_check(model_cls, arch, dd, sd32, ids, ref)
        meta = dict(
            name=name, generator=GENERATOR, versions=vers, seed=seed, base_seed=BASE_SEED,
            model_type=cfg.model_type, hf_config_class=type(cfg).__name__, hf_model_class=model_cls.__name__,
            attn_implementation=model.config._attn_implementation,
            experts_implementation=getattr(model.config, "_experts_implementation", None),
            num_parameters=model.num_parameters(), T=T,
            input_ids=ids.tolist(),
            reference=dict(
                how="one forward over input_ids[None] (no attention mask, no padding, use_cache=False) of "
                    "model.double() on CPU, logits cast to float32",
                fp32_forward_max_abs_diff=float((logits32 - ref.double()).abs().max()),
                logits_std=float(ref.std()), logits_mean=float(ref.mean()),
                logits_absmax=float(ref.abs().max())),
            config_summary=summary(spec, cfg, kinds, lay),
            weights=dict(
                written_by=("transformers save_pretrained (safe_serialization, default save_original_format)"
                            if derived_from is None else
                            f"{GENERATOR} with safetensors.torch.save_file: the tensors of {derived_from} with the "
                            f"MoE experts converted to the {lay} layout; config.json copied"),
                dtype="float32", sharded=len(weight_files(dd)) > 1, files=weight_files(dd),
                max_shard_size=shard_size if derived_from is None else None,
                experts_layout=lay, tensors=tensor_list(dd)),
            randomisation=dict(seed=seed, rules_by_param=rules,
                               input_ids="torch.randint(0, V, (T,), generator=manual_seed(seed + 1))"),
            reload_check=check,
        )
        if is_moe:
            meta["routing_min_gap"] = dict(
                threshold=MIN_ROUTING_GAP, per_router=[dict(module=n, min_gap=g) for n, g in gaps],
                note="min over tokens of p[k-1]-p[k] (sorted router softmax, double); reseeded when below threshold")
        if derived_from:
            meta["derived_from"] = derived_from
            meta["other_layout_checks"] = {k: v for k, v in other.items() if k.startswith(("equals", "save_orig"))}
        if arch.startswith("qwen3_5"):
            meta["text_only_load_check"] = text_only_load_check(arch, dd, ids, ref)
            meta["note"] = ("reference logits come from the text path with input_ids only; the vision tower is tiny, "
                            "random and unused; image/video token ids keep their defaults, outside the vocab")
        with open(os.path.join(dd, "meta.json"), "w") as f:
            json.dump(meta, f, indent=1)
            f.write("\n")
        results.append(dict(name=name, arch=arch, T=T, bytes=dir_bytes(dd), files=weight_files(dd),
                            experts_layout=lay, num_parameters=meta["num_parameters"],
                            logits_std=meta["reference"]["logits_std"],
                            fp32_diff=meta["reference"]["fp32_forward_max_abs_diff"],
                            reload_ok=check.get("ok"), reload=check, summary=meta["config_summary"]))
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="output folder, e.g. tests/data/golden")
    ap.add_argument("--only", default="", help="comma-separated spec names (default: all)")
    ap.add_argument("--no-qwen35", action="store_true", help="skip the qwen3_5 / qwen3_5_moe models")
    args = ap.parse_args()

    import torch
    torch.set_num_threads(min(8, os.cpu_count() or 1))
    print("versions:", json.dumps(versions()))
    os.makedirs(args.out, exist_ok=True)
    only = set(filter(None, args.only.split(",")))
    index, failures = [], []
    for i, spec in enumerate(SPECS):
        if only and spec["name"] not in only:
            continue
        if args.no_qwen35 and spec["arch"].startswith("qwen3_5"):
            continue
        print(f"[{i}] {spec['name']} ...", flush=True)
        try:
            for r in make_one(spec, args.out, i):
                index.append(r)
                print(f"  wrote {r['name']}: {r['bytes']} bytes, files {r['files']}, layout {r['experts_layout']}, "
                      f"logit std {r['logits_std']:.3f}, fp32 diff {r['fp32_diff']:.2e}, reload ok {r['reload_ok']}")
                if not r["reload_ok"]:
                    print("  reload check:", json.dumps(r["reload"])[:2000])
        except Exception as e:
            traceback.print_exc()
            failures.append(dict(name=spec["name"], error=f"{type(e).__name__}: {e}"))
            shutil.rmtree(os.path.join(args.out, spec["name"]), ignore_errors=True)
            if spec.get("other_layout"):
                for lay in ("fused", "per_expert"):
                    shutil.rmtree(os.path.join(args.out, spec["other_layout"].format(lay)), ignore_errors=True)
    with open(os.path.join(args.out, "index.json"), "w") as f:
        json.dump(dict(generator=GENERATOR, versions=versions(), models=[
            {k: r[k] for k in ("name", "arch", "T", "bytes", "files", "experts_layout", "num_parameters",
                               "logits_std", "fp32_diff", "reload_ok")} for r in index], failures=failures), f,
            indent=1)
        f.write("\n")
    with open(os.path.join(args.out, "README.md"), "w") as f:
        f.write("# Golden models\n\nMade by `python3 tools/reference/make_goldens.py --out tests/data/golden` (HF "
                "transformers on the CPU); see that script's header. Each folder: HF `config.json` + fp32 "
                "safetensors, `reference.safetensors` (`input_ids` int32 [T], `logits` float32 [T, V], one "
                "full-sequence forward in float64), `meta.json` (versions, seed, tensors, checks). `index.json` "
                "lists them.\n")
    total = sum(r["bytes"] for r in index)
    print(f"done: {len(index)} goldens, {total} bytes, {len(failures)} failures")
    for fl in failures:
        print("  FAILED", fl["name"], fl["error"])
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
