// One record -> one tokenized Example: token ids and labels aligned with them (transformers' convention; the
// model shifts). Chat records are rendered by the model's chat template and, by default, only the assistant
// turns carry loss. Depends on data/jsonl.h and tokenizer/ (Tokenizer, ChatTemplate).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "data/jsonl.h"
#include "ops/cross_entropy.h"  // kIgnoreIndex = -100, the label of a token without loss
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace tune {

struct Example {
  std::vector<int32_t> ids;     // (T)
  std::vector<int32_t> labels;  // (T): labels[t] = ids[t] where token t is trained, kIgnoreIndex elsewhere
};

struct ExampleOptions {
  bool train_on_prompt = false;                              // chat records: every token carries loss
  nlohmann::json template_extra = nlohmann::json::object();  // extra template variables, e.g. enable_thinking
};

// A byte range [begin, end) of a rendered text.
struct ByteSpan {
  size_t begin = 0, end = 0;
};

// A conversation rendered by its chat template (no generation prompt) and the byte spans that carry loss.
//
// Response-only loss: for a ChatML template (all Qwen models) a trained span starts right after
// "<|im_start|>assistant\n" and ends after the turn's closing "<|im_end|>" *and the "\n" that follows it*.
// The assistant header is the prompt; everything the model must produce (a Qwen3 <think> block, the content,
// tool calls, <|im_end|>) is trained, so the model learns to stop. The trailing newline is trained too, as in
// TRL's training templates (qwen2_5/qwen3_training.jinja put "<|im_end|>\n" inside {% generation %}) and in
// Unsloth's train_on_responses_only (it trains everything up to the next "<|im_start|>user\n"); at inference
// generation stops at <|im_end|>, so the newline only keeps the loss comparable with those trainers.
struct RenderedChat {
  std::string text;
  std::vector<ByteSpan> spans;  // in order; empty with train_on_prompt (the whole text is trained)
};

// FormatError (prefixed by record.source) if the template fails, or if it does not render one
// "<|im_start|>assistant\n" per assistant message (a template that is not ChatML, or a user message that
// contains the marker), unless train_on_prompt.
RenderedChat chat_render(const Record& record, const ChatTemplate& chat_template,
                         const ExampleOptions& options);

// Tokenizes `text` once and labels every token that overlaps a span (a token that straddles a span boundary,
// e.g. "\n\n\n" from the header's "\n" and content that starts with "\n\n", is trained: it carries response
// bytes; this matches transformers' char_to_token assistant masks). Token i covers the bytes of its decoded
// form at the running sum of decoded lengths; when those do not reproduce `text` exactly (NFC normalization,
// added tokens that strip spaces), the text is tokenized segment by segment at the span boundaries instead.
Example example_from_spans(const std::string& text, const std::vector<ByteSpan>& spans,
                           const Tokenizer& tokenizer);

// Any record: chat formats through chat_render + example_from_spans; text: encode(text) + EOS (when the
// tokenizer has one), all trained; tokens: as given, ids checked against the vocabulary. `chat_template` may
// be null when the data holds no chat records (FormatError otherwise).
Example example_render(const Record& record, const Tokenizer& tokenizer, const ChatTemplate* chat_template,
                       const ExampleOptions& options);

}  // namespace tune
