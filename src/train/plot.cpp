// Plot rendering. One layout serves both formats: the SVG is text; the PNG is rasterized here (lines, a 5x7 font for
// the axis labels) and stored as zlib "stored" blocks, so no image library is needed.
#include "train/plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "io/json.h"

namespace tune {

LogSeries plot_read_log(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw IoError(path + ": cannot open file", "give the train_log.jsonl that tune train wrote");
  LogSeries s;
  int line_no = 0;
  for (std::string line; std::getline(in, line);) {
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const Json j = json_parse(line, path + ":" + std::to_string(line_no));
    if (!j.is_object() || !j.contains("step") || !j.contains("loss") || !j["loss"].is_number())
      throw FormatError(path + ":" + std::to_string(line_no) + ": needs numeric 'step' and 'loss'",
                        "give the train_log.jsonl that tune train wrote");
    s.step.push_back(j["step"].get<double>());
    s.loss.push_back(j["loss"].get<double>());
    s.lr.push_back(j.value("lr", 0.0));
  }
  if (s.step.empty()) throw FormatError(path + ": no log lines", "the run has not finished a step yet");
  return s;
}

namespace {

struct Rgb {
  uint8_t r, g, b;
};
const Rgb kColors[] = {{31, 119, 180}, {214, 39, 40}, {44, 160, 44}, {148, 103, 189}};
const Rgb kLrColor{255, 127, 14}, kAxis{60, 60, 60}, kGrid{225, 225, 225};
constexpr int kW = 900, kH = 500, kLeft = 80, kRight = 80, kTop = 40, kBottom = 60;

std::string fmt(double v) {
  char buf[32];
  if (v != 0 && (std::fabs(v) < 1e-3 || std::fabs(v) >= 1e5)) std::snprintf(buf, sizeof buf, "%.1e", v);
  else std::snprintf(buf, sizeof buf, "%.4g", v);
  return buf;
}

// Canvas: the drawing calls both formats implement.
struct Canvas {
  virtual ~Canvas() = default;
  virtual void line(double x0, double y0, double x1, double y1, Rgb c, double width) = 0;
  virtual void text(double x, double y, const std::string& s, Rgb c, bool right_align) = 0;
};

struct Svg : Canvas {
  std::ostringstream os;
  Svg() {
    os << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << kW << "\" height=\"" << kH
       << "\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  }
  void line(double x0, double y0, double x1, double y1, Rgb c, double w) override {
    char buf[200];
    std::snprintf(buf, sizeof buf,
                  "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"rgb(%d,%d,%d)\" stroke-width=\"%.1f\"/>\n",
                  x0, y0, x1, y1, c.r, c.g, c.b, w);
    os << buf;
  }
  void text(double x, double y, const std::string& s, Rgb c, bool right) override {
    char buf[120];
    std::snprintf(buf, sizeof buf, "<text x=\"%.1f\" y=\"%.1f\" fill=\"rgb(%d,%d,%d)\"%s>", x, y + 4, c.r, c.g, c.b,
                  right ? " text-anchor=\"end\"" : "");
    os << buf << s << "</text>\n";
  }
};

// 5x7 glyphs, one byte per row (low 5 bits, MSB = left column); unknown characters draw nothing.
struct Glyph {
  char ch;
  uint8_t rows[7];
};
const Glyph kFont[] = {
    {'0', {14, 17, 19, 21, 25, 17, 14}}, {'1', {4, 12, 4, 4, 4, 4, 14}},     {'2', {14, 17, 1, 2, 4, 8, 31}},
    {'3', {31, 2, 4, 2, 1, 17, 14}},     {'4', {2, 6, 10, 18, 31, 2, 2}},    {'5', {31, 16, 30, 1, 1, 17, 14}},
    {'6', {6, 8, 16, 30, 17, 17, 14}},   {'7', {31, 1, 2, 4, 8, 8, 8}},      {'8', {14, 17, 17, 14, 17, 17, 14}},
    {'9', {14, 17, 17, 15, 1, 2, 12}},   {'.', {0, 0, 0, 0, 0, 12, 12}},     {'-', {0, 0, 0, 31, 0, 0, 0}},
    {'+', {0, 4, 4, 31, 4, 4, 0}},       {'e', {0, 0, 14, 17, 31, 16, 14}},  {'l', {12, 4, 4, 4, 4, 4, 14}},
    {'o', {0, 0, 14, 17, 17, 17, 14}},   {'s', {0, 0, 15, 16, 14, 1, 30}},   {'r', {0, 0, 22, 25, 16, 16, 16}},
    {'t', {8, 8, 28, 8, 8, 9, 6}},       {'p', {0, 0, 30, 17, 30, 16, 16}},  {'a', {0, 0, 14, 1, 15, 17, 15}},
    {'v', {0, 0, 17, 17, 17, 10, 4}},    {'g', {0, 0, 15, 17, 15, 1, 14}},   {'n', {0, 0, 22, 25, 17, 17, 17}},
    {'i', {4, 0, 12, 4, 4, 4, 14}},      {'m', {0, 0, 26, 21, 21, 17, 17}},  {'(', {2, 4, 8, 8, 8, 4, 2}},
    {')', {8, 4, 2, 2, 2, 4, 8}},        {'_', {0, 0, 0, 0, 0, 0, 31}},      {'/', {1, 1, 2, 4, 8, 16, 16}},
    {'c', {0, 0, 14, 16, 16, 17, 14}},   {'d', {1, 1, 13, 19, 17, 17, 15}},  {'u', {0, 0, 17, 17, 17, 19, 13}},
    {'h', {16, 16, 22, 25, 17, 17, 17}}, {'w', {0, 0, 17, 17, 21, 21, 10}},  {'k', {16, 16, 18, 20, 24, 20, 18}},
    {'f', {6, 9, 8, 28, 8, 8, 8}},       {'b', {16, 16, 22, 25, 17, 17, 30}}, {'y', {0, 0, 17, 17, 15, 1, 14}},
    {'x', {0, 0, 17, 10, 4, 10, 17}},    {'j', {2, 0, 6, 2, 2, 18, 12}},     {'q', {0, 0, 13, 19, 15, 1, 1}},
    {'z', {0, 0, 31, 2, 4, 8, 31}},      {':', {0, 12, 12, 0, 12, 12, 0}},   {',', {0, 0, 0, 0, 12, 4, 8}},
};

struct Png : Canvas {
  std::vector<uint8_t> px = std::vector<uint8_t>(size_t(kW) * kH * 3, 255);
  void dot(int x, int y, Rgb c) {
    if (x < 0 || y < 0 || x >= kW || y >= kH) return;
    uint8_t* p = &px[(size_t(y) * kW + size_t(x)) * 3];
    p[0] = c.r;
    p[1] = c.g;
    p[2] = c.b;
  }
  void line(double x0, double y0, double x1, double y1, Rgb c, double w) override {
    const int n = int(std::max(std::fabs(x1 - x0), std::fabs(y1 - y0))) + 1;
    const int r = int(w / 2);
    for (int i = 0; i <= n; ++i) {
      const double x = x0 + (x1 - x0) * i / n, y = y0 + (y1 - y0) * i / n;
      for (int dx = -r; dx <= r; ++dx)
        for (int dy = -r; dy <= r; ++dy) dot(int(std::lround(x)) + dx, int(std::lround(y)) + dy, c);
    }
  }
  void text(double x, double y, const std::string& s, Rgb c, bool right) override {
    int cx = int(right ? x - 6 * double(s.size()) : x), cy = int(y) - 3;
    for (char ch : s) {
      for (const Glyph& g : kFont)
        if (g.ch == std::tolower(ch))
          for (int row = 0; row < 7; ++row)
            for (int col = 0; col < 5; ++col)
              if (g.rows[row] & (16 >> col)) dot(cx + col, cy + row, c);
      cx += 6;
    }
  }
  std::string encode() const {
    auto be32 = [](std::string& s, uint32_t v) {
      for (int i = 3; i >= 0; --i) s.push_back(char((v >> (8 * i)) & 0xff));
    };
    auto crc = [](const std::string& d) {
      uint32_t c = 0xffffffffu;
      for (unsigned char b : d) {
        c ^= b;
        for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
      }
      return c ^ 0xffffffffu;
    };
    auto chunk = [&](std::string& out, const char* type, const std::string& data) {
      be32(out, uint32_t(data.size()));
      const std::string td = std::string(type) + data;
      out += td;
      be32(out, crc(td));
    };
    // Raw scanlines (filter byte 0) in zlib stored blocks of at most 65535 bytes, then Adler-32.
    std::string raw;
    for (int y = 0; y < kH; ++y) {
      raw.push_back(0);
      raw.append(reinterpret_cast<const char*>(&px[size_t(y) * kW * 3]), size_t(kW) * 3);
    }
    std::string z = "\x78\x01";
    for (size_t off = 0; off < raw.size(); off += 65535) {
      const size_t n = std::min<size_t>(65535, raw.size() - off);
      z.push_back(off + n == raw.size() ? 1 : 0);
      z.push_back(char(n & 0xff));
      z.push_back(char(n >> 8));
      z.push_back(char(~n & 0xff));
      z.push_back(char((~n >> 8) & 0xff));
      z.append(raw, off, n);
    }
    uint32_t a = 1, b = 0;
    for (unsigned char ch : raw) {
      a = (a + ch) % 65521;
      b = (b + a) % 65521;
    }
    be32(z, (b << 16) | a);
    std::string ihdr;
    be32(ihdr, kW);
    be32(ihdr, kH);
    ihdr += std::string("\x08\x02\x00\x00\x00", 5);  // 8-bit RGB
    std::string out = "\x89PNG\r\n\x1a\n";
    chunk(out, "IHDR", ihdr);
    chunk(out, "IDAT", z);
    chunk(out, "IEND", "");
    return out;
  }
};

void draw(Canvas& cv, const std::vector<LogSeries>& series, const std::vector<std::string>& labels) {
  double s0 = 1e300, s1 = -1e300, l0 = 1e300, l1 = -1e300, lr1 = 0;
  for (const LogSeries& s : series)
    for (size_t i = 0; i < s.step.size(); ++i) {
      s0 = std::min(s0, s.step[i]);
      s1 = std::max(s1, s.step[i]);
      if (std::isfinite(s.loss[i])) {
        l0 = std::min(l0, s.loss[i]);
        l1 = std::max(l1, s.loss[i]);
      }
      lr1 = std::max(lr1, s.lr[i]);
    }
  if (s1 <= s0) s1 = s0 + 1;
  if (l1 <= l0) l1 = l0 + 1;
  const double pw = kW - kLeft - kRight, ph = kH - kTop - kBottom;
  auto X = [&](double s) { return kLeft + (s - s0) / (s1 - s0) * pw; };
  auto Y = [&](double l) { return kTop + (1 - (l - l0) / (l1 - l0)) * ph; };
  auto YR = [&](double r) { return kTop + (1 - r / (lr1 > 0 ? lr1 : 1)) * ph; };
  for (int i = 0; i <= 5; ++i) {
    const double y = kTop + ph * i / 5, x = kLeft + pw * i / 5;
    cv.line(kLeft, y, kLeft + pw, y, kGrid, 1);
    cv.text(kLeft - 6, y, fmt(l1 - (l1 - l0) * i / 5), kAxis, true);
    if (lr1 > 0) cv.text(kLeft + pw + 6, y, fmt(lr1 - lr1 * i / 5), kLrColor, false);
    cv.text(x - 10, kTop + ph + 16, fmt(std::round(s0 + (s1 - s0) * i / 5)), kAxis, false);
  }
  cv.line(kLeft, kTop, kLeft, kTop + ph, kAxis, 1);
  cv.line(kLeft, kTop + ph, kLeft + pw, kTop + ph, kAxis, 1);
  cv.text(kLeft + pw / 2 - 12, kTop + ph + 40, "step", kAxis, false);
  cv.text(12, kTop - 16, "loss", kAxis, false);
  if (lr1 > 0) cv.text(kW - 30, kTop - 16, "lr", kLrColor, false);
  for (size_t k = 0; k < series.size(); ++k) {
    const LogSeries& s = series[k];
    const Rgb c = kColors[k % 4];
    for (size_t i = 1; i < s.step.size(); ++i)
      if (std::isfinite(s.loss[i - 1]) && std::isfinite(s.loss[i]))
        cv.line(X(s.step[i - 1]), Y(s.loss[i - 1]), X(s.step[i]), Y(s.loss[i]), c, 1.5);
    if (k == 0 && lr1 > 0)
      for (size_t i = 1; i < s.step.size(); ++i)
        cv.line(X(s.step[i - 1]), YR(s.lr[i - 1]), X(s.step[i]), YR(s.lr[i]), kLrColor, 1);
    cv.line(kLeft + 10, kTop + 12 + 16 * double(k), kLeft + 30, kTop + 12 + 16 * double(k), c, 2);
    cv.text(kLeft + 36, kTop + 12 + 16 * double(k), k < labels.size() ? labels[k] : "loss", c, false);
  }
}

}  // namespace

void plot_write(const std::vector<LogSeries>& series, const std::vector<std::string>& labels, const std::string& out) {
  const bool png = out.size() >= 4 && out.substr(out.size() - 4) == ".png";
  const bool svg = out.size() >= 4 && out.substr(out.size() - 4) == ".svg";
  if (!png && !svg) throw ConfigError("--out " + out + ": unknown image type", "name it .svg or .png");
  if (png) {
    Png p;
    draw(p, series, labels);
    write_file_atomic(out, p.encode());
  } else {
    Svg s;
    draw(s, series, labels);
    s.os << "</svg>\n";
    write_file_atomic(out, s.os.str());
  }
}

}  // namespace tune
