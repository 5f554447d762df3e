// tune quantize IN.gguf OUT.gguf TYPE [--imatrix FILE] [--allow-requantize]: re-encodes a GGUF (every key
// copied) with the per-tensor types of file type TYPE, from the dequantized weights, weighting the quantization
// error by the importance matrix as llama-quantize --imatrix does. Input already quantized
// below Q8_0 is refused unless --allow-requantize (quantizing quantized weights again compounds the error).
#include <cstdio>

#include "cli/args.h"
#include "cli/commands.h"
#include "core/error.h"
#include "eval/imatrix.h"
#include "export/gguf_export.h"
#include "io/gguf.h"

namespace tune::cli {

int cmd_quantize(int argc, char** argv) {
  Args a("quantize", argc, argv, {"--imatrix"}, {"--allow-requantize"});
  if (a.positionals().size() != 3)
    throw ConfigError("tune quantize: expected IN.gguf OUT.gguf TYPE", "e.g. tune quantize m-f16.gguf m-q4.gguf Q4_K_M");
  const std::string in = a.positionals()[0], out = a.positionals()[1];
  const GgufFileType type = gguf_file_type_parse(a.positionals()[2]);
  {
    const GgufFile f(in);
    for (const GgufTensorInfo& t : f.tensors()) {
      const bool plain = t.has_dtype && (t.dtype == DType::F32 || t.dtype == DType::F16 || t.dtype == DType::BF16 ||
                                         t.dtype == DType::Q8_0);
      if (!plain && !a.has("--allow-requantize"))
        throw ConfigError(in + ": tensor " + t.name + " is already quantized below Q8_0",
                          "quantize from an F32/F16/BF16/Q8_0 file, or pass --allow-requantize to accept the "
                          "extra error");
    }
  }
  GgufExportOptions opt;
  opt.type = type;
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
  opt.progress = [](const std::string& l) { std::fprintf(stderr, "%s\n", l.c_str()); };
  gguf_requantize(in, out, opt);
  std::printf("wrote %s (%s)\n", out.c_str(), gguf_file_type_name(type));
  return 0;
}

}  // namespace tune::cli
