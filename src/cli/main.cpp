// tune: the command-line entry point. Dispatches the verb and turns errors into messages and exit codes
// (1 = user error with a hint, 2 = internal error).
#include <cstdio>
#include <cstring>
#include <string>

#include "cli/commands.h"
#include "core/error.h"

namespace {

struct Verb {
  const char* name;
  int (*fn)(int, char**);
  const char* help;
};

const Verb kVerbs[] = {
    {"info", tune::cli::cmd_info, "info MODEL_DIR [--json]: architecture, layer kinds, sizes, parameters, dtypes"},
    {"logits", tune::cli::cmd_logits,
     "logits --model DIR|FILE.gguf [--dequantize] [--adapter DIR] --ids \"1 2 3\"|@FILE [--out FILE.safetensors] "
     "[--top K]: logits of one sequence (a GGUF computes as llama.cpp's CPU backend unless --dequantize)"},
    {"init", tune::cli::cmd_init,
     "init (--preset NAME | --config FILE) --out DIR [--seed N] [--std X] [--dtype f32|bf16] [--norm-spread S]: "
     "seeded random model (--norm-spread: lognormal norm weights, channel energies as in trained models)"},
    {"train", tune::cli::cmd_train,
     "train --model DIR --data FILE.jsonl --out DIR [--lora-r 16 --lora-alpha 32 --target q,k,v,o,gate,up,down "
     "--lr 2e-4 --steps N|--epochs E --batch-size B --grad-accum G --seq-len L --save-every N --resume DIR ...]: "
     "LoRA fine-tuning"},
    {"tokenize", tune::cli::cmd_tokenize,
     "tokenize --model DIR (--text STR | --file F | --chat FILE.json [--generation-prompt] [--no-thinking])"},
    {"data", tune::cli::cmd_data, "data preview --model DIR --data FILE.jsonl [--format F] [--seq-len N]"},
    {"generate", tune::cli::cmd_generate,
     "generate --model FILE.gguf|DIR --prompt STR [--chat [--system STR] [--no-thinking]] [--max-tokens N] "
     "[--temperature T --top-k K --top-p P --min-p M --repeat-penalty R --seed S] [--threads N] [--ctx N] "
     "[--adapter DIR] [--stats]: stream a continuation (KV-cache engine)"},
    {"chat", tune::cli::cmd_chat,
     "chat --model FILE.gguf|DIR [--system STR] [--no-thinking] [--max-tokens N] [sampling as generate] "
     "[--threads N] [--ctx N] [--adapter DIR]: interactive chat over stdin (/reset, /exit)"},
    {"kld", tune::cli::cmd_kld,
     "kld --base DIR|FILE.gguf --model FILE.gguf [--model ...] --data TEXT [--ctx 512] [--chunks N] [--json]: KL "
     "divergence against the base"},
    {"perplexity", tune::cli::cmd_perplexity,
     "perplexity --model DIR|FILE.gguf --data TEXT [--ctx 512] [--chunks N] [--json]"},
    {"merge", tune::cli::cmd_merge,
     "merge --model DIR --adapter DIR --out DIR [--dtype bf16|f16|f32]: fold a LoRA adapter into the model"},
    {"export", tune::cli::cmd_export,
     "export --model DIR [--adapter DIR] --gguf F32|F16|BF16|Q8_0|Q6_K|Q5_K_M|Q4_K_M|Q3_K_M|Q2_K --out FILE.gguf "
     "[--imatrix FILE] [--name NAME]: llama.cpp GGUF (qwen2, qwen3, qwen3moe, qwen35, qwen35moe); or export --adapter DIR --lora-gguf "
     "FILE.gguf [--model DIR] [--lora-type F32|F16|BF16|Q8_0]: the adapter as a llama.cpp LoRA GGUF"},
    {"quantize", tune::cli::cmd_quantize,
     "quantize IN.gguf OUT.gguf TYPE [--imatrix FILE] [--allow-requantize]: re-encode a GGUF with another file type"},
    {"imatrix", tune::cli::cmd_imatrix,
     "imatrix --model DIR|FILE.gguf --data TEXT --out FILE.gguf [--ctx 512] [--chunks N] [--adapter DIR] "
     "[--process-output]: importance matrix (llama-imatrix's GGUF format) for export/quantize --imatrix"},
    {"bench", tune::cli::cmd_bench,
     "bench train --preset NAME [--batch-size 4 --seq-len 2048 --steps 8 --warmup 2 --lora-r 16] [--json]: LoRA "
     "training speed and peak GPU memory on random weights of a real shape (CUDA)"},
    {"plot", tune::cli::cmd_plot, "plot LOG.jsonl [...] --out FILE.svg|png [--labels a,b]: loss and lr curves"},
};

void usage(FILE* f) {
  std::fprintf(f, "usage: tune <verb> [options]\n\nverbs:\n");
  for (const Verb& v : kVerbs) std::fprintf(f, "  %s\n", v.help);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 1 : 0;
  }
  for (const Verb& v : kVerbs) {
    if (std::strcmp(argv[1], v.name) != 0) continue;
    if (argc > 2 && (!std::strcmp(argv[2], "--help") || !std::strcmp(argv[2], "-h"))) {
      std::printf("tune %s\n", v.help);
      return 0;
    }
    try {
      return v.fn(argc - 2, argv + 2);
    } catch (const tune::InternalError& e) {
      std::fprintf(stderr, "tune %s: internal error: %s\n", v.name, e.what());
      return 2;
    } catch (const tune::Error& e) {
      std::fprintf(stderr, "tune %s: error: %s\n", v.name, e.what());
      return 1;
    } catch (const std::bad_alloc&) {
      std::fprintf(stderr, "tune %s: error: out of memory\n", v.name);
      return 1;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "tune %s: internal error: %s\n", v.name, e.what());
      return 2;
    }
  }
  std::fprintf(stderr, "tune: unknown verb '%s'\n\n", argv[1]);
  usage(stderr);
  return 1;
}
