#!/usr/bin/env python3
"""The transformers+PEFT side of tune's training benchmark (`tune bench train`), run in the same device call.

Same work as tune's bench: a real model shape with random weights (bf16), LoRA r=16 (alpha 16) on all seven
projections (Qwen3.5: also the Gated DeltaNet's in_proj_qkv, in_proj_z and out_proj), AdamW, SDPA attention, gradient checkpointing, random tokens (seeded), batch x seq_len, every token
trained. Prints one JSON object: tokens/s and step time over the timed steps (after warm-up), and peak GPU memory.

Run on the GPU machine:  python3 bench/hf_baseline.py --preset qwen3-0.6b --batch-size 4 --seq-len 2048
"""
import argparse
import json
import time

# Shapes of the released checkpoints (their config.json values); vocab 151936 for Qwen2.5/Qwen3, 248320 for Qwen3.5
# (text model only: Qwen3_5TextConfig, with every fourth layer full attention).
PRESETS = {
    "qwen2.5-0.5b": dict(model_type="qwen2", hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                         num_attention_heads=14, num_key_value_heads=2, tie_word_embeddings=True),
    "qwen3-0.6b": dict(model_type="qwen3", hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
                       num_attention_heads=16, num_key_value_heads=8, head_dim=128, tie_word_embeddings=True),
    "qwen3-1.7b": dict(model_type="qwen3", hidden_size=2048, intermediate_size=6144, num_hidden_layers=28,
                       num_attention_heads=16, num_key_value_heads=8, head_dim=128, tie_word_embeddings=True),
    "qwen3-4b": dict(model_type="qwen3", hidden_size=2560, intermediate_size=9728, num_hidden_layers=36,
                     num_attention_heads=32, num_key_value_heads=8, head_dim=128, tie_word_embeddings=True),
    "qwen3-8b": dict(model_type="qwen3", hidden_size=4096, intermediate_size=12288, num_hidden_layers=36,
                     num_attention_heads=32, num_key_value_heads=8, head_dim=128, tie_word_embeddings=False),
}
QWEN35 = dict(model_type="qwen3_5_text", vocab_size=248320, head_dim=256, linear_num_key_heads=16,
              linear_key_head_dim=128, linear_value_head_dim=128, linear_conv_kernel_dim=4, max_position_embeddings=262144,
              rope_parameters={"rope_type": "default", "rope_theta": 10000000.0, "partial_rotary_factor": 0.25,
                               "mrope_section": [11, 11, 10], "mrope_interleaved": True})
PRESETS.update({
    "qwen3.5-0.8b": dict(QWEN35, hidden_size=1024, num_hidden_layers=24, num_attention_heads=8, num_key_value_heads=2,
                         intermediate_size=3584, linear_num_value_heads=16, tie_word_embeddings=True),
    "qwen3.5-2b": dict(QWEN35, hidden_size=2048, num_hidden_layers=24, num_attention_heads=8, num_key_value_heads=2,
                       intermediate_size=6144, linear_num_value_heads=16, tie_word_embeddings=True),
    "qwen3.5-4b": dict(QWEN35, hidden_size=2560, num_hidden_layers=32, num_attention_heads=16, num_key_value_heads=4,
                       intermediate_size=9216, linear_num_value_heads=32, tie_word_embeddings=True),
    "qwen3.5-9b": dict(QWEN35, hidden_size=4096, num_hidden_layers=32, num_attention_heads=16, num_key_value_heads=4,
                       intermediate_size=12288, linear_num_value_heads=32, tie_word_embeddings=False),
})
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", required=True, choices=sorted(PRESETS))
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=2048)
    ap.add_argument("--steps", type=int, default=8, help="timed steps")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    ap.add_argument("--lora-r", type=int, default=16)
    ap.add_argument("--memory-limit-gib", type=float, default=0,
                    help="cap the CUDA caching allocator (a smaller GPU); an out-of-memory error prints {\"oom\": true}")
    args = ap.parse_args()

    import peft
    import torch
    import transformers
    from transformers import AutoConfig, AutoModelForCausalLM

    if args.memory_limit_gib > 0:
        total = torch.cuda.get_device_properties(0).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, args.memory_limit_gib * 2**30 / total))
    shape = dict(PRESETS[args.preset])
    model_type = shape.pop("model_type")
    targets = list(TARGETS)
    if model_type == "qwen3_5_text":
        L = shape["num_hidden_layers"]
        shape["layer_types"] = ["full_attention" if (i + 1) % 4 == 0 else "linear_attention" for i in range(L)]
        cfg = transformers.Qwen3_5TextConfig(rms_norm_eps=1e-6, **shape)
        targets += ["in_proj_qkv", "in_proj_z", "out_proj"]
    else:
        cfg = AutoConfig.for_model(model_type, vocab_size=151936, rms_norm_eps=1e-6, max_position_embeddings=40960,
                                   rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}, **shape)
    vocab = cfg.vocab_size
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)
    with torch.device("cuda"):
        if model_type == "qwen3_5_text":
            model = transformers.Qwen3_5ForCausalLM._from_config(cfg, attn_implementation="sdpa")
        else:
            model = AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa")
    torch.set_default_dtype(torch.float32)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()
    model = peft.get_peft_model(model, peft.LoraConfig(r=args.lora_r, lora_alpha=args.lora_r, lora_dropout=0.0,
                                                       target_modules=targets, bias="none", task_type="CAUSAL_LM"))
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    gen = torch.Generator(device="cuda").manual_seed(0)
    tokens = args.batch_size * args.seq_len

    def step():
        ids = torch.randint(0, vocab, (args.batch_size, args.seq_len), device="cuda", generator=gen)
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    try:
        for _ in range(args.warmup):
            step()
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        for _ in range(args.steps):
            loss = step()
        torch.cuda.synchronize()
    except torch.OutOfMemoryError:
        print(json.dumps({"impl": "transformers+peft", "preset": args.preset, "batch_size": args.batch_size,
                          "seq_len": args.seq_len, "oom": True, "memory_limit_gib": args.memory_limit_gib}))
        return
    dt = (time.perf_counter() - t0) / args.steps
    print(json.dumps({
        "impl": "transformers+peft", "preset": args.preset, "batch_size": args.batch_size,
        "seq_len": args.seq_len, "lora_r": args.lora_r, "steps": args.steps, "step_s": dt,
        "tokens_per_s": tokens / dt, "peak_gib": torch.cuda.max_memory_allocated() / 2**30,
        "loss": float(loss.detach()), "torch": torch.__version__, "transformers": transformers.__version__,
        "peft": peft.__version__, "device": torch.cuda.get_device_name(), "oom": False,
    }))


if __name__ == "__main__":
    main()
