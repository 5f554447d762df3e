// Rendering and tokenizing one record with its loss labels (see example.h): ChatML assistant spans in the
// rendered text, one tokenization of the whole text, and tokens mapped onto byte spans.
#include "data/example.h"

#include "core/error.h"

namespace tune {

namespace {

const std::string kAssistantHeader = "<|im_start|>assistant\n";
const std::string kTurnEnd = "<|im_end|>";

// The number of bytes token `id` decodes to. A byte-level token spells each byte as one character of GPT-2's
// alphabet (code points below U+0144), so its length is its character count; an added token is written as
// its text. (A non-ASCII added token that is not special would be undercounted; the caller's check that the
// lengths add up to the text catches it.)
size_t token_byte_length(const Tokenizer& tokenizer, int32_t id) {
  const std::string s = tokenizer.token_text(id);
  if (tokenizer.is_special(id)) return s.size();
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;  // count UTF-8 lead bytes
  return n;
}

// Byte offset of each token in `text` (size ids+1, last = text.size()), or false when the decoded tokens do
// not reproduce `text` byte for byte.
bool token_offsets(const std::string& text, const std::vector<int32_t>& ids, const Tokenizer& tokenizer,
                   std::vector<size_t>& offsets) {
  offsets.assign(1, 0);
  offsets.reserve(ids.size() + 1);
  for (int32_t id : ids) offsets.push_back(offsets.back() + token_byte_length(tokenizer, id));
  return offsets.back() == text.size() && tokenizer.decode(ids) == text;
}

size_t count_role(const OrderedJson& messages, const char* role) {
  size_t n = 0;
  for (const OrderedJson& m : messages) n += m["role"] == role;
  return n;
}

}  // namespace

RenderedChat chat_render(const Record& record, const ChatTemplate& chat_template,
                         const ExampleOptions& options) {
  ChatTemplateOptions topt;
  topt.add_generation_prompt = false;
  topt.extra = options.template_extra;
  RenderedChat out;
  try {
    out.text = chat_template.render_ordered(record.messages, record.tools, topt);
  } catch (const FormatError& e) {
    throw FormatError(record.source + ": chat template: " + e.message(), e.hint());
  }
  if (options.train_on_prompt) return out;
  for (size_t pos = out.text.find(kAssistantHeader); pos != std::string::npos;
       pos = out.text.find(kAssistantHeader, pos)) {
    ByteSpan span{pos + kAssistantHeader.size(), out.text.size()};
    if (size_t end = out.text.find(kTurnEnd, span.begin); end != std::string::npos) {
      span.end = end + kTurnEnd.size();
      if (span.end < out.text.size() && out.text[span.end] == '\n') ++span.end;
    }
    out.spans.push_back(span);
    pos = span.end;
  }
  const size_t turns = count_role(record.messages, "assistant");
  if (out.spans.size() != turns)
    throw FormatError(record.source + ": the chat template rendered " + std::to_string(out.spans.size()) +
                          " '<|im_start|>assistant' turns for " + std::to_string(turns) +
                          " assistant messages",
                      "response-only loss needs a ChatML template (Qwen) and messages that do not contain "
                      "'<|im_start|>'; --train-on-prompt trains on the whole text instead");
  return out;
}

Example example_from_spans(const std::string& text, const std::vector<ByteSpan>& spans,
                           const Tokenizer& tokenizer) {
  Example ex;
  ex.ids = tokenizer.encode(text);
  std::vector<size_t> offsets;
  if (token_offsets(text, ex.ids, tokenizer, offsets)) {
    ex.labels.resize(ex.ids.size());
    size_t s = 0;
    for (size_t i = 0; i < ex.ids.size(); ++i) {
      const size_t b = offsets[i], e = offsets[i + 1];
      while (s < spans.size() && spans[s].end <= b) ++s;
      const bool trained = s < spans.size() && spans[s].begin < e;
      ex.labels[i] = trained ? ex.ids[i] : kIgnoreIndex;
    }
    return ex;
  }
  // Segment by segment: the span boundaries become token boundaries.
  ex.ids.clear();
  auto add = [&](size_t begin, size_t end, bool trained) {
    if (begin >= end) return;
    for (int32_t id : tokenizer.encode(std::string_view(text).substr(begin, end - begin))) {
      ex.ids.push_back(id);
      ex.labels.push_back(trained ? id : kIgnoreIndex);
    }
  };
  size_t at = 0;
  for (const ByteSpan& span : spans) {
    add(at, span.begin, false);
    add(span.begin, span.end, true);
    at = span.end;
  }
  add(at, text.size(), false);
  return ex;
}

Example example_render(const Record& record, const Tokenizer& tokenizer, const ChatTemplate* chat_template,
                       const ExampleOptions& options) {
  Example ex;
  switch (record.format) {
    case DataFormat::kMessages:
    case DataFormat::kShareGpt:
    case DataFormat::kAlpaca: {
      if (!chat_template)
        throw FormatError(record.source + ": a chat record, but the model has no chat template",
                          "add chat_template.jinja to the model directory, or give text or tokens data");
      RenderedChat chat = chat_render(record, *chat_template, options);
      if (!options.train_on_prompt) return example_from_spans(chat.text, chat.spans, tokenizer);
      ex.ids = tokenizer.encode(chat.text);
      ex.labels = ex.ids;
      return ex;
    }
    case DataFormat::kText:
      ex.ids = tokenizer.encode(record.text);
      if (tokenizer.eos_id() >= 0) ex.ids.push_back(tokenizer.eos_id());
      ex.labels = ex.ids;
      return ex;
    case DataFormat::kTokens: {
      const int64_t vocab = tokenizer.vocab_size();
      for (size_t i = 0; i < record.input_ids.size(); ++i) {
        if (record.input_ids[i] >= vocab)
          throw FormatError(record.source + ": input_ids[" + std::to_string(i) +
                                "] = " + std::to_string(record.input_ids[i]) +
                                " is outside the vocabulary (" + std::to_string(vocab) + " ids)",
                            "pre-tokenized data must come from this model's tokenizer");
        if (record.labels[i] >= vocab)
          throw FormatError(record.source + ": labels[" + std::to_string(i) +
                                "] = " + std::to_string(record.labels[i]) + " is outside the vocabulary (" +
                                std::to_string(vocab) + " ids)",
                            "pre-tokenized data must come from this model's tokenizer");
      }
      ex.ids = record.input_ids;
      ex.labels = record.labels;
      return ex;
    }
    case DataFormat::kAuto:
      break;
  }
  TUNE_CHECK(false) << "record without a format: " << record.source;
  return ex;
}

}  // namespace tune
