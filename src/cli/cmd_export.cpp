// tune export --model DIR [--adapter DIR] --gguf TYPE --out FILE.gguf [--imatrix FILE] [--name NAME]:
// writes the model (with a PEFT LoRA adapter merged in f32 first) as a llama.cpp GGUF of file type TYPE
// (F32, F16, BF16, Q8_0, Q6_K, Q5_K_M, Q4_K_M, Q3_K_M, Q2_K), quantized with the importance matrix's weights
// when --imatrix names one (GGUF or legacy .dat, from tune imatrix or llama-imatrix). Progress goes to stderr.
// tune export --adapter DIR --lora-gguf FILE.gguf [--model DIR] [--lora-type F32|F16|BF16|Q8_0] [--name NAME]:
// writes the PEFT adapter alone as a llama.cpp LoRA adapter GGUF (llama.cpp's --lora), for the base model's GGUF.
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include "cli/args.h"
#include "cli/commands.h"
#include "eval/imatrix.h"
#include "export/merge.h"
#include "export/gguf_export.h"
#include "export/lora_gguf.h"
#include "io/gguf.h"
#include "io/json.h"
#include "model/lora_peft.h"
#include "model/model_gguf.h"
#include "tokenizer/tokenizer_json.h"

namespace fs = std::filesystem;

namespace tune::cli {

namespace {

std::string read_text(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// --adapter DIR --lora-gguf OUT.gguf [--model DIR] [--lora-type F32|F16|BF16|Q8_0]: the adapter alone, as a
// llama.cpp LoRA adapter GGUF for the base model's own GGUF. Only the base model's config and tensor headers
// are read (from adapter_config.json's base_model_name_or_path when --model is not given).
int export_lora_gguf(const Args& a) {
  for (const char* f : {"--gguf", "--out", "--imatrix"})
    if (a.has(f))
      throw ConfigError(std::string(f) + " does not apply with --lora-gguf",
                        "--lora-gguf FILE writes the adapter alone; export the base model in a separate call");
  const std::string adapter_dir = a.require("--adapter"), out = a.get("--lora-gguf", "");
  std::string dir = a.get("--model", "");
  if (dir.empty()) {
    const std::string cfg = (fs::path(adapter_dir) / "adapter_config.json").string();
    const Json j = json_load_file(cfg);
    if (!j.contains("base_model_name_or_path") || !j["base_model_name_or_path"].is_string())
      throw ConfigError(cfg + ": base_model_name_or_path missing", "name the base model with --model DIR");
    dir = j["base_model_name_or_path"].get<std::string>();
  }
  const Model m = model_load(dir, DType::F32, Device::CPU, /*with_data=*/false);
  const LoraAdapter ad = lora_load_peft(adapter_dir, m);
  LoraGgufOptions o;
  const std::string type = a.get("--lora-type", "F32");
  const GgufFileType ft = gguf_file_type_parse(type);
  if (ft == GgufFileType::F32) o.type = DType::F32;
  else if (ft == GgufFileType::F16) o.type = DType::F16;
  else if (ft == GgufFileType::BF16) o.type = DType::BF16;
  else if (ft == GgufFileType::Q8_0) o.type = DType::Q8_0;
  else throw ConfigError("--lora-type " + type + ": an adapter GGUF is F32, F16, BF16 or Q8_0");
  o.name = a.get("--name", fs::path(adapter_dir).filename().string());
  lora_export_gguf(ad, m, out, o);
  std::printf("wrote %s (LoRA adapter for %s, rank %lld, %s)\n", out.c_str(), gguf_arch_name(m.config),
              (long long)ad.config.rank, type.c_str());
  return 0;
}

}  // namespace

int cmd_export(int argc, char** argv) {
  Args a("export", argc, argv,
         {"--model", "--adapter", "--gguf", "--out", "--imatrix", "--name", "--lora-gguf", "--lora-type"}, {});
  if (a.has("--lora-gguf")) return export_lora_gguf(a);
  const std::string dir = a.require("--model"), out = a.require("--out");
  GgufExportOptions opt;
  opt.type = gguf_file_type_parse(a.require("--gguf"));
  std::fprintf(stderr, "loading %s\n", dir.c_str());
  Model m = model_load(dir);
  if (a.has("--adapter")) {
    const LoraAdapter ad = lora_load_peft(a.get("--adapter", ""), m);
    std::fprintf(stderr, "merging adapter %s (scale %.4g) in f32\n", a.get("--adapter", "").c_str(),
                 ad.config.scale());
    lora_merge_into(m, ad);
  }
  std::map<std::string, std::vector<float>> imatrix;
  if (a.has("--imatrix")) {
    const Imatrix im = imatrix_load(a.get("--imatrix", ""));
    imatrix = imatrix_importance(im);
    opt.imatrix = &imatrix;
    opt.imatrix_file = a.get("--imatrix", "");
    opt.imatrix_dataset = im.datasets.empty() ? "" : im.datasets[0];
    opt.imatrix_chunks = im.chunk_count;
    std::fprintf(stderr, "imatrix: %zu entries from %lld chunks\n", imatrix.size(), (long long)im.chunk_count);
  }
  opt.name = a.get("--name", fs::path(dir).filename().string());
  if (opt.name.empty()) opt.name = fs::path(dir).parent_path().filename().string();
  std::optional<Tokenizer> tok;
  const fs::path tj = fs::path(dir) / "tokenizer.json";
  if (fs::exists(tj)) {
    tok = Tokenizer::from_dir(dir);
    opt.added_tokens = read_tokenizer_json(tj.string()).added;
  } else {
    std::fprintf(stderr, "note: %s has no tokenizer.json; writing a byte-level placeholder vocabulary\n",
                 dir.c_str());
  }
  const fs::path jinja = fs::path(dir) / "chat_template.jinja", tc = fs::path(dir) / "tokenizer_config.json";
  if (fs::exists(jinja)) {
    opt.chat_template = read_text(jinja);
  } else if (fs::exists(tc)) {
    const Json cfg = json_load_file(tc.string());
    if (cfg.contains("chat_template") && cfg["chat_template"].is_string())
      opt.chat_template = cfg["chat_template"].get<std::string>();
  }
  opt.progress = [](const std::string& line) { std::fprintf(stderr, "%s\n", line.c_str()); };
  gguf_export(m, tok ? &*tok : nullptr, out, opt);
  std::printf("wrote %s (%s, %s)\n", out.c_str(), gguf_arch_name(m.config), gguf_file_type_name(opt.type));
  return 0;
}

}  // namespace tune::cli
