// Chat templates: unit tests of the Jinja engine (whitespace control, scoping, filters, tests, Python
// semantics, errors) and the acceptance test: the official Qwen templates render the conversations of
// tests/data/chat/conversations.json exactly as transformers' apply_chat_template does
// (goldens tests/data/chat/expected_<family>.json, made by tools/reference/make_chat_refs.py).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "core/error.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/jinja/template.h"

namespace {

using nlohmann::ordered_json;
using tune::ChatTemplate;
using tune::ChatTemplateOptions;
using tune::FormatError;

std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return "";
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Renders `src` with the variables of the JSON object `vars`.
std::string render(const std::string& src, const std::string& vars = "{}") {
  tune::jinja::DictData ctx;
  const ordered_json parsed = ordered_json::parse(vars);
  for (const auto& [k, v] : parsed.items()) ctx.set(k, tune::jinja::Value::from_json(v));
  return tune::jinja::Template(src).render(ctx);
}

// The message of the FormatError that rendering (or parsing) `src` throws; "" if none.
std::string error_of(const std::string& src, const std::string& vars = "{}") {
  try {
    render(src, vars);
  } catch (const FormatError& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

TEST(JinjaLexer, TrimAndLstripBlocks) {
  // trim_blocks eats the newline after a block tag; lstrip_blocks the indentation before it.
  EXPECT_EQ(render("a\n  {% if true %}\n  b\n  {% endif %}\n  c"), "a\n  b\n  c");
  // Not for expressions, and not when the tag does not start its line.
  EXPECT_EQ(render("a\n  {{ 'v' }}\n  x {% if true %}y{% endif %}\n"), "a\n  v\n  x y");
  // `-` strips all whitespace on its side, newlines included; `+` keeps it.
  EXPECT_EQ(render("a \n {{- 'b' -}} \n c"), "abc");
  EXPECT_EQ(render("a\n \t {%+ if true %}x{% endif %}"), "a\n \t x");
  EXPECT_EQ(render("{% if true +%}\nx{% endif %}"), "\nx");
  // Comments behave like blocks; one trailing newline of the template is dropped; \r\n becomes \n.
  EXPECT_EQ(render("x {# c #}\ny\n  {#- c2 -#}\n z\n"), "x yz");
  EXPECT_EQ(render("a\r\nb\r\n\r\n"), "a\nb\n");
  EXPECT_EQ(render("{% raw %}{{ x }}{% endraw %}"), "{{ x }}");
  // `}}` inside a dict literal does not end the tag.
  EXPECT_EQ(render("{{ {'a': {'b': 1}} }}"), "{'a': {'b': 1}}");
}

TEST(JinjaLexer, StringLiterals) {
  EXPECT_EQ(render(R"({{ 'a\tb\u00e9\x41\n' ~ "it's" ~ 'x' 'y' }})"), "a\tbéA\nit'sxy");
  EXPECT_EQ(render(R"({{ '\\' ~ '\'' ~ "\"" }})"), "\\'\"");
}

TEST(JinjaStatements, IfElifElse) {
  const std::string t = "{% if x == 1 %}one{% elif x == 2 %}two{% else %}many{% endif %}";
  EXPECT_EQ(render(t, R"({"x": 1})"), "one");
  EXPECT_EQ(render(t, R"({"x": 2})"), "two");
  EXPECT_EQ(render(t, R"({"x": 5})"), "many");
}

TEST(JinjaStatements, ForLoop) {
  EXPECT_EQ(
      render("{% for i in [1, 2, 3] %}{{ loop.index0 }}{{ loop.index }}{{ loop.revindex }}{{ loop.first }}"
             "{{ loop.last }}{{ loop.length }};{% endfor %}"),
      "013TrueFalse3;122FalseFalse3;231FalseTrue3;");
  EXPECT_EQ(render("{% for i in [1, 2] %}{{ loop.previtem }}|{{ loop.nextitem }};{% endfor %}"), "|2;1|;");
  EXPECT_EQ(render("{% for i in [1, 2, 3] if i > 1 %}{{ loop.index }}/{{ loop.length }} {% endfor %}"),
            "1/2 2/2 ");
  EXPECT_EQ(render("{% for i in [] %}x{% else %}empty{% endfor %}"), "empty");
  EXPECT_EQ(render("{% for k, v in {'a': 1, 'b': 2}|items %}{{ k }}={{ v }} {% endfor %}"), "a=1 b=2 ");
  EXPECT_EQ(render("{% for k in {'b': 1, 'a': 2} %}{{ k }}{% endfor %}"), "ba");
  EXPECT_EQ(render("{% for c in 'héllo' %}{{ c }}.{% endfor %}"), "h.é.l.l.o.");
  EXPECT_EQ(render("{% for i in range(5) %}{% if i == 1 %}{% continue %}{% endif %}{% if i == 3 %}{% break %}"
                   "{% endif %}{{ i }}{% endfor %}"),
            "02");
  EXPECT_EQ(render("{% for i in range(4) %}{{ loop.cycle('a', 'b') }}{% endfor %}"), "abab");
}

TEST(JinjaStatements, Scoping) {
  // A loop iteration sees outer variables, but its own sets stay inside that iteration.
  EXPECT_EQ(render("{% set x = 0 %}{% for i in [1, 2] %}{{ x }}{% set x = i %}{{ x }}{% endfor %}{{ x }}"),
            "01020");
  EXPECT_EQ(render("{% set x = 1 %}{% for x in [2] %}{{ x }}{% endfor %}{{ x }}"), "21");
  // `if` opens no scope; namespaces carry state out of loops.
  EXPECT_EQ(render("{% if true %}{% set z = 5 %}{% endif %}{{ z }}"), "5");
  EXPECT_EQ(render("{% set ns = namespace(a=1) %}{% for i in [1, 2] %}{% set ns.a = ns.a + i %}{% endfor "
                   "%}{{ ns.a }}"),
            "4");
  EXPECT_EQ(render("{% set a, b = [1, 2] %}{{ b }}{{ a }}"), "21");
  EXPECT_EQ(render("{% set x %}  hi {{ 1 }}\n{% endset %}[{{ x }}]{% set y | upper %}abc{% endset %}{{ y }}"),
            "[  hi 1\n]ABC");
  EXPECT_EQ(render("{% filter upper %}abc{% endfilter %}"), "ABC");
  EXPECT_TRUE(contains(error_of("{% set x = 1 %}{% set x.a = 2 %}"), "non-namespace"));
}

TEST(JinjaStatements, Macros) {
  // Macros read the template's variables when called; their own sets stay local.
  EXPECT_EQ(render("{% macro m() %}{{ x }}{% endmacro %}{% set x = 1 %}{{ m() }}{% set x = 2 %}{{ m() }}"),
            "12");
  EXPECT_EQ(
      render("{% set x = 1 %}{% macro m() %}{{ x }}{% set x = 3 %}{{ x }}{% endmacro %}{{ m() }}{{ x }}"),
      "131");
  EXPECT_EQ(render("{% macro m(a, b=2, c=a) %}{{ a }}{{ b }}{{ c }}{% endmacro %}{{ m(1) }} {{ m(1, c=5) }}"),
            "121 125");
  EXPECT_EQ(render("{% macro m(a) %}[{{ a }}]{% endmacro %}{{ m() }}"), "[]");
  EXPECT_EQ(render("{% macro m(a) %}{{ varargs }}{{ kwargs }}{% endmacro %}{{ m(1, 2, z=3) }}"),
            "(2,){'z': 3}");
  EXPECT_TRUE(contains(error_of("{% macro m(a) %}{% endmacro %}{{ m(1, 2) }}"), "takes not more than 1"));
  EXPECT_TRUE(contains(error_of("{% macro m(a) %}{% endmacro %}{{ m(b=2) }}"), "no keyword argument 'b'"));
  EXPECT_EQ(render("{% macro m(x) %}  {{ x }}  {% endmacro %}[{{ m('v')|trim }}]"), "[v]");
}

TEST(JinjaValues, PythonStr) {
  EXPECT_EQ(render("{{ none }} {{ true }} {{ false }} {{ 3 }} {{ 4.0 }} {{ x }}|"),
            "None True False 3 4.0 |");
  EXPECT_EQ(render(R"({{ {'a': 1, 'b': [1, 2.5, none, true, "it's", 'q"']} }})"),
            R"({'a': 1, 'b': [1, 2.5, None, True, "it's", 'q"']})");
  EXPECT_EQ(render("{{ (1, 2) }} {{ ('a',) }} {{ {'a': 1}|items|list }}"), "(1, 2) ('a',) [('a', 1)]");
  EXPECT_EQ(render("{{ [1.5, 1e-5, 1e16, 0.1 + 0.2, -0.0, 1 / 3, 0.0001, 123456789.0] }}"),
            "[1.5, 1e-05, 1e+16, 0.30000000000000004, -0.0, 0.3333333333333333, 0.0001, 123456789.0]");
  EXPECT_EQ(render(R"({{ ['a\u0001\u007f\u00a0\u200b😀', '\\', '\n'] }})"),
            R"(['a\x01\x7f\xa0\u200b😀', '\\', '\n'])");
  EXPECT_EQ(render("{{ v }}", R"({"v": {"x": 100000.0, "y": 1E2, "z": -7}})"),
            "{'x': 100000.0, 'y': 100.0, 'z': -7}");
}

TEST(JinjaValues, Operators) {
  EXPECT_EQ(
      render("{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % -3 }} {{ 7 / 2 }} {{ 4 / 2 }} {{ 2 ** 10 }} {{ 2 ** -1 }}"),
      "3 -4 -2 3.5 2.0 1024 0.5");
  EXPECT_EQ(
      render("{{ -7.5 // 2 }} {{ 10.5 % 3 }} {{ 1 + true }} {{ 1.5 + 1 }} {{ 'ab' * 2 }} {{ [1] * 2 }}"),
      "-4.0 1.5 2 2.5 abab [1, 1]");
  EXPECT_EQ(render("{{ -2 ** 2 }} {{ 2 ** 3 ** 2 }} {{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }}"), "4 64 True False");
  EXPECT_EQ(render("{{ 'a' ~ 1 ~ none ~ true ~ x }}"), "a1NoneTrue");
  EXPECT_EQ(render("{{ 0 or 'x' }} {{ 'y' and '' }}| {{ 1 if x else 2 }} {{ 3 if x }}|"), "x | 2 |");
  EXPECT_EQ(render("{{ 1 == 1.0 }} {{ true == 1 }} {{ [1] == [1.0] }} {{ x == none }} {{ x != 1 }}"),
            "True True True False True");
  EXPECT_EQ(
      render("{{ 'a' in 'cab' }} {{ 1 in [1, 2] }} {{ 'a' in {'a': 1} }} {{ 'a' in x }} {{ 3 not in [3] }}"),
      "True True True False False");
  EXPECT_EQ(render("{{ not 1 == 2 }} {{ not 'a' in 'abc' }}"), "True False");
  EXPECT_TRUE(contains(error_of("{{ 'a' + 1 }}"), "can only concatenate str (not \"int\") to str"));
  EXPECT_TRUE(contains(error_of("{{ 1 + 'a' }}"), "unsupported operand type(s) for +: 'int' and 'str'"));
  EXPECT_TRUE(contains(error_of("{{ 'a' < 1 }}"), "'<' not supported between instances of 'str' and 'int'"));
  EXPECT_TRUE(contains(error_of("{{ 1 / 0 }}"), "division by zero"));
  EXPECT_TRUE(contains(error_of("{{ 2 ** 70 }}"), "OverflowError"));
}

TEST(JinjaValues, Undefined) {
  EXPECT_EQ(render("[{{ x }}{{ x|length }}{{ x|list }}{{ x|trim }}{{ x is defined }}{{ x is sequence }}]"),
            "[0[]FalseTrue]");
  EXPECT_EQ(render("{{ none.y is defined }} {{ 'abc'.y is defined }} {{ {'a': 1}.b is defined }}"),
            "False False False");
  EXPECT_TRUE(contains(error_of("{{ x.y }}"), "UndefinedError: 'x' is undefined"));
  EXPECT_TRUE(contains(error_of("{{ x + 1 }}"), "'x' is undefined"));
  EXPECT_TRUE(contains(error_of("{{ {'a': 1}.b.c }}"), "'dict object' has no attribute 'b'"));
  EXPECT_TRUE(contains(error_of("{{ x|tojson }}"), "not JSON serializable"));
}

TEST(JinjaValues, AttributesAndItems) {
  const std::string msg = R"({"m": {"role": "user", "items": 5, "content": "hé"}, "l": [1, 2, 3]})";
  EXPECT_EQ(
      render("{{ m.role }} {{ m['role'] }} {{ m.items is callable }} {{ m['items'] }} {{ m.get('x', 7) }}",
             msg),
      "user user True 5 7");
  EXPECT_EQ(render("{{ l[-1] }} {{ l[5] is defined }} {{ l[::-1] }} {{ l[1:] }} {{ l[:-1] }} {{ l.0 }}", msg),
            "3 False [3, 2, 1] [2, 3] [1, 2] 1");
  EXPECT_EQ(render("{{ 'héllo'[1:3] }} {{ 'héllo'|length }} {{ 'abcdef'[::2] }} {{ 'abc'[-1] }}"),
            "él 5 ace c");
  EXPECT_EQ(render("{{ m.keys()|list }} {{ m.values()|list|length }} {{ m.items()|list|first }}", msg),
            "['role', 'items', 'content'] 3 ('role', 'user')");
  EXPECT_TRUE(contains(error_of("{{ l.append(4) }}", msg), "SecurityError"));
}

TEST(JinjaValues, StringMethods) {
  EXPECT_EQ(render("{{ 'a,b,,c'.split(',') }} {{ ' a  b '.split() }} {{ 'abc'.split('b', 1) }} {{ 'a b "
                   "c'.split(none, 1) }}"),
            "['a', 'b', '', 'c'] ['a', 'b'] ['a', 'c'] ['a', 'b c']");
  EXPECT_EQ(render("{{ 'a b c'.rsplit(' ', 1) }} {{ 'x</think>y</think>z'.split('</think>')[-1] }}"),
            "['a b', 'c'] z");
  EXPECT_EQ(render("[{{ '  x  '.strip() }}|{{ 'xxaxx'.strip('x') }}|{{ '\n\nab\n'.lstrip('\n') }}|{{ "
                   "'ab\n\n'.rstrip() }}]"),
            "[x|a|ab\n|ab]");
  EXPECT_EQ(
      render("{{ 'abc'.startswith('ab') }} {{ 'abc'.endswith(('x', 'c')) }} {{ 'abc'.startswith('b', 1) }}"),
      "True True True");
  EXPECT_EQ(render("{{ 'aXa'.replace('a', 'b') }} {{ 'aaa'.replace('a', 'b', 2) }} {{ 'AbC'.upper() }} {{ "
                   "'AbC'.lower() }}"),
            "bXb bba ABC abc");
  EXPECT_EQ(
      render(
          "{{ \"they're\".title() }} {{ 'hello'.capitalize() }} {{ 'Straße'.upper() }} {{ 'ÀÉ'.lower() }}"),
      "They'Re Hello STRASSE àé");
  EXPECT_EQ(
      render(
          "{{ 'abcb'.count('b') }} {{ 'abc'.find('c') }} {{ 'abc'.find('z') }} {{ '-'.join(['a', 'b']) }}"),
      "2 2 -1 a-b");
  EXPECT_TRUE(contains(error_of("{{ 'x'.format(1) }}"), "unsupported string method 'format'"));
}

TEST(JinjaFilters, Tojson) {
  // transformers' tojson: json.dumps(ensure_ascii=False) with Python's default separators, key order kept.
  EXPECT_EQ(render("{{ v|tojson }}", R"({"v": {"b": 1, "a": [1, 2.5, null, true, "é\"\n<>&"]}})"),
            R"({"b": 1, "a": [1, 2.5, null, true, "é\"\n<>&"]})");
  EXPECT_EQ(render("{{ 'é😀'|tojson(ensure_ascii=true) }} {{ {'b': 1, 'a': 2}|tojson(sort_keys=true) }}"),
            R"("\u00e9\ud83d\ude00" {"a": 2, "b": 1})");
  EXPECT_EQ(render("{{ {'a': {'b': []}, 'c': {}}|tojson(indent=2) }}"),
            "{\n  \"a\": {\n    \"b\": []\n  },\n  \"c\": {}\n}");
  EXPECT_EQ(render("{{ {'a': 1, 'b': [1, 2]}|tojson(separators=(',', ':')) }}"), R"({"a":1,"b":[1,2]})");
  EXPECT_EQ(render("{{ [1e20, 1.0, 1e-7, 12345678901234]|tojson }}"), "[1e+20, 1.0, 1e-07, 12345678901234]");
}

TEST(JinjaFilters, Common) {
  EXPECT_EQ(
      render("[{{ '  x \n'|trim }}] {{ 'abc'|length }} {{ [1, 2]|count }} {{ 3|string ~ none|string }}"),
      "[x] 3 2 3None");
  EXPECT_EQ(
      render(
          "{{ x|default('d') }} [{{ ''|default('d') }}] {{ ''|default('d', true) }} {{ none|default('d') }}"),
      "d [] d None");
  EXPECT_EQ(
      render(
          "{{ [3, 1, 2]|sort }} {{ ['b', 'A', 'a']|sort }} {{ [3, 1, 2]|reverse|list }} {{ 'abc'|reverse }}"),
      "[1, 2, 3] ['A', 'a', 'b'] [2, 1, 3] cba");
  EXPECT_EQ(
      render(
          "{{ ['a', 'b']|join(', ') }} {{ [1, 2]|first }} {{ [1, 2]|last }} {{ [1, 2]|map('string')|join }}"),
      "a, b 1 2 12");
  EXPECT_EQ(render("{{ [{'a': 1}, {'a': 2}, {'b': 3}]|selectattr('a')|list }} {{ [{'a': 1}, {'a': "
                   "2}]|map(attribute='a')|list }}"),
            "[{'a': 1}, {'a': 2}] [1, 2]");
  EXPECT_EQ(
      render("{{ [{'a': 1}, {'b': 2}]|selectattr('a', 'defined')|list }} {{ [1, 2, 3]|select('odd')|list }}"
             " {{ [1, 2, 3]|reject('odd')|list }} {{ [{'r': 'x'}, {'r': 'y'}]|rejectattr('r', 'eq', "
             "'x')|list }}"),
      "[{'a': 1}] [1, 3] [2] [{'r': 'y'}]");
  EXPECT_EQ(render("{{ 'Hello World'|lower }} {{ 'abc'|upper }} {{ \"they're here\"|title }} {{ "
                   "'aaa'|replace('a', 'b', 2) }}"),
            "hello world ABC They're Here bba");
  EXPECT_EQ(render("{{ '  a\n b '|indent(2) }}|{{ 'a\nb\n\nc'|indent(2, true) }}|{{ 'a\n\nb'|indent(2, "
                   "blank=true) }}"),
            "  a\n   b |  a\n  b\n\n  c|a\n  \n  b");
  EXPECT_EQ(
      render("{{ {'b': 1, 'A': 2}|dictsort }} {{ [1, 2]|sum }} {{ [3, 1]|max }} {{ [1, 1, 2]|unique|list }}"),
      "[('A', 2), ('b', 1)] 3 3 [1, 2]");
  EXPECT_EQ(render("{{ 3.7|int }} {{ '3.7'|int }} {{ 'x'|int }} {{ '4'|float }} {{ -3|abs }}"),
            "3 3 0 4.0 3");
  // |safe makes Markup: `+` with a plain string escapes the plain one (markupsafe), `~` does not.
  EXPECT_EQ(render("{{ 'a<b>'|safe + '<c>' }} {{ 'a<b>'|safe ~ '<c>' }} {{ '<x>'|e }}"),
            "a<b>&lt;c&gt; a<b><c> &lt;x&gt;");
  EXPECT_TRUE(contains(error_of("{{ 'abc'|items }}"), "Can only get item pairs from a mapping."));
}

TEST(JinjaTests, TypeTests) {
  const std::string vars = R"({"s": "x", "n": null, "d": {"a": 1}, "l": [1], "i": 3, "f": 1.5, "b": true})";
  EXPECT_EQ(
      render("{{ s is string }}{{ n is none }}{{ d is mapping }}{{ l is sequence }}{{ d is sequence }}"
             "{{ s is iterable }}{{ n is iterable }}{{ i is number }}{{ b is number }}{{ b is integer }}"
             "{{ f is float }}{{ b is true }}{{ i is true }}{{ false is false }}{{ x is undefined }}",
             vars),
      "TrueTrueTrueTrueTrueTrueFalseTrueTrueFalseTrueTrueFalseTrueTrue");
  EXPECT_EQ(
      render(
          "{{ 4 is even }}{{ 5 is divisibleby 2 }}{{ 'ab' is lower }}{{ 2 is in [1, 2] }}{{ s is not none }}"
          "{{ 'upper' is filter }}{{ 'none' is test }}",
          vars),
      "TrueFalseTrueTrueTrueTrueTrue");
}

TEST(JinjaErrors, ParseErrorsNameConstructAndLine) {
  EXPECT_TRUE(contains(error_of("a\n{{ x|nosuchfilter }}"), "line 2: unknown filter 'nosuchfilter'"));
  EXPECT_TRUE(contains(error_of("{% if x is nosuchtest %}{% endif %}"), "unknown test 'nosuchtest'"));
  EXPECT_TRUE(contains(error_of("\n\n{% include 'x.j2' %}"), "line 3: unsupported tag 'include'"));
  EXPECT_TRUE(contains(error_of("{% do x %}"), "unsupported tag 'do'"));
  EXPECT_TRUE(contains(error_of("{% frobnicate %}"), "unknown tag 'frobnicate'"));
  EXPECT_TRUE(contains(error_of("{% for x in y recursive %}{% endfor %}"), "recursive"));
  EXPECT_TRUE(contains(error_of("{% if x %}"), "expected 'elif'"));
  EXPECT_TRUE(contains(error_of("{% endif %}"), "unexpected 'endif'"));
  EXPECT_TRUE(contains(error_of("{{ x "), "unclosed"));
  EXPECT_TRUE(contains(error_of("{{ 'abc }}"), "unterminated string"));
  EXPECT_TRUE(contains(error_of("{% break %}"), "outside of a for loop"));
  EXPECT_THROW(ChatTemplate("{{ foo("), FormatError);
}

TEST(JinjaErrors, RaiseException) {
  const std::string e = error_of("line one\n{{ raise_exception('No user query found.') }}");
  EXPECT_TRUE(contains(e, "line 2: No user query found.")) << e;
}

TEST(ChatTemplate, RenderVariables) {
  ChatTemplate t(
      "{{ bos_token is defined }} {{ eos_token }} {{ tools }} {{ documents }} {{ add_generation_prompt }} "
      "{{ enable_thinking }} {{ messages|length }}");
  t.set_special_tokens("", "<|im_end|>");
  ChatTemplateOptions opt;
  opt.add_generation_prompt = true;
  opt.extra = {{"enable_thinking", false}};
  EXPECT_EQ(t.render(nlohmann::json::array(), nullptr, opt), "False <|im_end|> None None True False 0");
}

TEST(ChatTemplate, KeyOrder) {
  ChatTemplate t("{{ tools[0]|tojson }}");
  const std::string tools = R"([{"type": "function", "function": {"name": "f"}}])";
  EXPECT_EQ(t.render_ordered(ordered_json::array(), ordered_json::parse(tools), {}),
            tools.substr(1, tools.size() - 2));
  // nlohmann::json sorts keys: documented in chat_template.h.
  EXPECT_EQ(t.render(nlohmann::json::array(), nlohmann::json::parse(tools), {}),
            R"({"function": {"name": "f"}, "type": "function"})");
}

TEST(ChatTemplate, FromModelDir) {
  const std::string qwen3 = TUNE_SOURCE_DIR "/.testdata/qwen3";
  if (!std::filesystem::exists(qwen3 + "/tokenizer_config.json"))
    FAIL() << qwen3 << " missing: run scripts/fetch_testdata.sh";
  ChatTemplate t = ChatTemplate::from_model_dir(qwen3);
  const auto msgs = nlohmann::json::parse(R"([{"role": "user", "content": "hi"}])");
  ChatTemplateOptions opt;
  opt.add_generation_prompt = true;
  opt.extra = {{"enable_thinking", false}};
  EXPECT_EQ(t.render(msgs, nullptr, opt),
            "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n");

  const auto dir =
      std::filesystem::temp_directory_path() / ("tune_chat_template_test_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  {
    std::ofstream(dir / "tokenizer_config.json")
        << R"({"bos_token": {"content": "<s>"}, "eos_token": "</s>", "chat_template": [)"
        << R"({"name": "tool_use", "template": "T"}, {"name": "default", "template": "{{ bos_token }}D{{ eos_token }}"}]})";
  }
  EXPECT_EQ(ChatTemplate::from_model_dir(dir.string()).render(msgs, nullptr, {}), "<s>D</s>");
  { std::ofstream(dir / "chat_template.jinja") << "J{{ messages[0].content }}"; }
  EXPECT_EQ(ChatTemplate::from_model_dir(dir.string()).render(msgs, nullptr, {}), "Jhi");
  std::filesystem::remove_all(dir);
  EXPECT_THROW(ChatTemplate::from_model_dir(dir.string()), FormatError);
}

// --- acceptance: transformers' renderings of the official templates ---

uint64_t fnv1a64(const std::string& s) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001B3ull;
  return h;
}

struct FamilyResult {
  int cases = 0, matched = 0, conversations_rendered = 0;
};

FamilyResult check_family(const std::string& family) {
  FamilyResult r;
  const ordered_json expected =
      ordered_json::parse(read_text(TUNE_TEST_DATA_DIR "/chat/expected_" + family + ".json"));
  const ordered_json data = ordered_json::parse(read_text(TUNE_TEST_DATA_DIR "/chat/conversations.json"));
  const std::string path =
      TUNE_SOURCE_DIR "/.testdata/llama/models/templates/" + expected["template_file"].get<std::string>();
  const std::string source = read_text(path);
  if (source.empty()) {
    ADD_FAILURE() << path << " missing: run scripts/fetch_testdata.sh";
    return r;
  }
  char hash[17];
  std::snprintf(hash, sizeof hash, "%016llx", static_cast<unsigned long long>(fnv1a64(source)));
  if (expected["template_fnv1a64"] != hash) {
    ADD_FAILURE() << path << " is not the template the goldens were made from (re-run make_chat_refs.py)";
    return r;
  }
  ChatTemplate tmpl(source);
  tmpl.set_special_tokens(expected["special_tokens"].value("bos_token", ""),
                          expected["special_tokens"].value("eos_token", ""));
  std::map<int, bool> conversation_ok;  // conversation -> all its option sets rendered identically
  for (const auto& c : expected["cases"]) {
    const int ci = c["conversation"].get<int>();
    const auto& conv = data["conversations"][ci];
    ChatTemplateOptions opt;
    opt.add_generation_prompt = c["options"]["add_generation_prompt"].get<bool>();
    opt.extra = nlohmann::json::parse(c["options"]["extra"].dump());
    const std::string what = family + " conversation " + std::to_string(ci) + " (" +
                             conv["name"].get<std::string>() + ") options " + c["options"].dump();
    ++r.cases;
    bool ok = false;
    std::string got, error;
    try {
      got = tmpl.render_ordered(conv["messages"], conv["tools"], opt);
    } catch (const FormatError& e) {
      error = e.what();
    }
    if (c.contains("text")) {
      ok = error.empty() && got == c["text"].get<std::string>();
      EXPECT_TRUE(ok) << what << "\nexpected: " << c["text"].get<std::string>() << "\ngot: " << got << error;
    } else {
      // The template raised in transformers: tune must raise too, with the same message for
      // raise_exception().
      ok = !error.empty();
      if (c["error_type"] == "TemplateError") ok = ok && contains(error, c["error"].get<std::string>());
      EXPECT_TRUE(ok) << what << "\nexpected error: " << c["error"]
                      << "\ngot: " << (error.empty() ? got : error);
    }
    r.matched += ok;
    auto [it, fresh] = conversation_ok.emplace(ci, c.contains("text"));
    it->second = it->second && ok && c.contains("text");
  }
  for (const auto& [ci, ok] : conversation_ok) r.conversations_rendered += ok;
  std::printf(
      "%s: %d/%d cases identical to transformers; %d conversations rendered identically with every option "
      "set\n",
      family.c_str(), r.matched, r.cases, r.conversations_rendered);
  return r;
}

class ChatTemplateGolden : public ::testing::TestWithParam<const char*> {};

TEST_P(ChatTemplateGolden, MatchesTransformers) {
  const FamilyResult r = check_family(GetParam());
  EXPECT_EQ(r.matched, r.cases);
  EXPECT_GE(r.conversations_rendered, 30);
}

INSTANTIATE_TEST_SUITE_P(Qwen, ChatTemplateGolden,
                         ::testing::Values("qwen2_5", "qwen3", "qwen3_5", "qwq", "qwen3_coder"));

}  // namespace
