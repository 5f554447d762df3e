// The CLI verbs. Each takes the arguments after the verb and returns the process exit code; user errors are thrown
// as tune::Error and reported by main.
#pragma once

namespace tune::cli {

int cmd_info(int argc, char** argv);
int cmd_logits(int argc, char** argv);
int cmd_init(int argc, char** argv);
int cmd_merge(int argc, char** argv);
int cmd_plot(int argc, char** argv);
int cmd_train(int argc, char** argv);
int cmd_tokenize(int argc, char** argv);
int cmd_data(int argc, char** argv);
int cmd_generate(int argc, char** argv);
int cmd_chat(int argc, char** argv);
int cmd_kld(int argc, char** argv);
int cmd_perplexity(int argc, char** argv);
int cmd_export(int argc, char** argv);
int cmd_quantize(int argc, char** argv);
int cmd_imatrix(int argc, char** argv);
int cmd_bench(int argc, char** argv);

}  // namespace tune::cli
