// tune merge --model DIR --adapter DIR --out DIR [--dtype bf16|f16|f32]: base + LoRA -> one HF checkpoint.
#include <cstdio>

#include "cli/args.h"
#include "cli/commands.h"
#include "export/merge.h"
#include "model/lora_peft.h"

namespace tune::cli {

int cmd_merge(int argc, char** argv) {
  Args a("merge", argc, argv, {"--model", "--adapter", "--out", "--dtype"}, {});
  const std::string dt = a.get("--dtype", "bf16");
  const DType dtype = dt == "bf16" ? DType::BF16 : dt == "f16" ? DType::F16 : dt == "f32" ? DType::F32 : DType::U8;
  if (dtype == DType::U8) throw ConfigError("tune merge: --dtype must be bf16, f16 or f32, got '" + dt + "'");
  const std::string model_dir = a.require("--model");
  const Model m = model_load(model_dir);
  const LoraAdapter adapter = lora_load_peft(a.require("--adapter"), m);
  merge_lora_to_hf(model_dir, m, adapter, a.require("--out"), dtype);
  std::printf("merged %lld LoRA parameters (r %lld, scale %g) into %s (%s)\n", (long long)adapter.num_parameters(),
              (long long)adapter.config.rank, adapter.config.scale(), a.require("--out").c_str(), dt.c_str());
  return 0;
}

}  // namespace tune::cli
