// tune export --model DIR [--adapter DIR] --gguf TYPE --out FILE.gguf [--imatrix FILE.gguf] [--name NAME]:
// writes the model (with a PEFT LoRA adapter merged in f32 first) as a llama.cpp GGUF of file type TYPE
// (F32, F16, BF16, Q8_0, Q6_K, Q5_K_M, Q4_K_M, Q3_K_M, Q2_K). Progress goes to stderr.
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include "cli/args.h"
#include "cli/commands.h"
#include "export/merge.h"
#include "export/gguf_export.h"
#include "io/gguf.h"
#include "io/json.h"
#include "model/lora_peft.h"
#include "model/model_gguf.h"
#include "tokenizer/tokenizer_json.h"

namespace fs = std::filesystem;

namespace tune::cli {

namespace {

// A GGUF imatrix (llama-imatrix's default format): <weight>.in_sum2 {cols, n_mat} / <weight>.counts {1, n_mat}
// -> mean x² per column (slices with no tokens get 1, as llama-quantize does).
std::map<std::string, std::vector<float>> load_imatrix(const std::string& path) {
  if (!is_gguf_path(path))
    throw UnsupportedError("--imatrix " + path + ": only GGUF imatrix files are read",
                           "write it with llama-imatrix's default GGUF format (a .gguf name)");
  const GgufFile f(path);
  std::map<std::string, std::vector<float>> out;
  const std::string suffix = ".in_sum2";
  for (const GgufTensorInfo& t : f.tensors()) {
    if (t.name.size() <= suffix.size() || t.name.compare(t.name.size() - suffix.size(), suffix.size(), suffix))
      continue;
    const std::string base = t.name.substr(0, t.name.size() - suffix.size());
    const Tensor sums = f.tensor(t.name).to(DType::F32);
    const GgufTensorInfo* ci = f.find_tensor(base + ".counts");
    if (!ci) throw FormatError(path + ": " + base + ".counts missing");
    const Tensor counts = f.tensor(ci->name).to(DType::F32);
    const int64_t n_mat = counts.numel(), cols = sums.numel() / std::max<int64_t>(1, n_mat);
    std::vector<float> v(size_t(sums.numel()));
    for (int64_t m = 0; m < n_mat; ++m) {
      const float c = counts.f32()[m];
      for (int64_t j = 0; j < cols; ++j) v[size_t(m * cols + j)] = c > 0 ? sums.f32()[m * cols + j] / c : 1.f;
    }
    out[base] = std::move(v);
  }
  if (out.empty()) throw FormatError(path + ": no *.in_sum2 tensors; is this an imatrix GGUF?");
  return out;
}

std::string read_text(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

}  // namespace

int cmd_export(int argc, char** argv) {
  Args a("export", argc, argv, {"--model", "--adapter", "--gguf", "--out", "--imatrix", "--name"}, {});
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
    imatrix = load_imatrix(a.get("--imatrix", ""));
    opt.imatrix = &imatrix;
    std::fprintf(stderr, "imatrix: %zu entries\n", imatrix.size());
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
