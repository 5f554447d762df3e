// BPE merge loop and its hash tables. Short pieces (almost all) merge with a linear scan over a small array
// of pair ranks; long ones (CJK or Thai runs without spaces) with a min-heap over a linked list, O(n log n).
#include "tokenizer/bpe.h"

#include <algorithm>
#include <cstring>
#include <mutex>
#include <queue>

namespace tune {
namespace {

// Pieces with at most this many bytes use the quadratic scan, which beats the heap on short words.
constexpr size_t kSmallWord = 48;
// The shared cache stops growing here (HF's stops at 10,000 words); longer pieces are not cached at all.
constexpr size_t kCacheMaxWords = 1 << 18;
constexpr size_t kCacheMaxWordBytes = 256;

}  // namespace

uint64_t word_hash(std::string_view word) {
  const char* p = word.data();
  size_t n = word.size();
  uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0xC2B2AE3D27D4EB4Full);
  while (n >= 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    h = (h ^ w) * 0xBF58476D1CE4E5B9ull;
    h ^= h >> 31;
    p += 8;
    n -= 8;
  }
  if (n > 0) {
    uint64_t w = 0;
    std::memcpy(&w, p, n);
    h = (h ^ w) * 0x94D049BB133111EBull;
    h ^= h >> 29;
  }
  return h * 0xD6E8FEB86659FD93ull ^ (h >> 32);
}

void MergeTable::reserve(size_t n) {
  size_t cap = 16;
  while (cap < 2 * n) cap *= 2;
  slots_.assign(cap, Slot{kNone, kNone});
  mask_ = cap - 1;
  shift_ = 64 - __builtin_ctzll(cap);
}

void MergeTable::insert(int32_t a, int32_t b, uint32_t rank, int32_t merged) {
  const uint64_t key = pair_key(a, b);
  for (size_t i = slot_of(key);; i = (i + 1) & mask_) {
    Slot& s = slots_[i];
    if (s.key == key) return;
    if (s.key == kNone) {
      s = Slot{key, (static_cast<uint64_t>(rank) << 32) | static_cast<uint32_t>(merged)};
      return;
    }
  }
}

const int32_t* WordCache::find(std::string_view word, uint64_t hash, uint32_t& count) const {
  if (slots_.empty()) return nullptr;
  const size_t mask = slots_.size() - 1;
  for (size_t i = hash & mask;; i = (i + 1) & mask) {
    const uint32_t s = slots_[i];
    if (s == 0) return nullptr;
    const Entry& e = entries_[s - 1];
    if (e.hash == hash && e.key_len == word.size() &&
        std::memcmp(keys_.data() + e.key_offset, word.data(), word.size()) == 0) {
      count = e.ids_len;
      return ids_.data() + e.ids_offset;
    }
  }
}

void WordCache::insert(std::string_view word, uint64_t hash, const int32_t* ids, uint32_t count) {
  if (2 * (entries_.size() + 1) > slots_.size()) grow();
  const size_t mask = slots_.size() - 1;
  size_t i = hash & mask;
  while (slots_[i] != 0) i = (i + 1) & mask;
  entries_.push_back(Entry{hash, static_cast<uint32_t>(keys_.size()), static_cast<uint32_t>(word.size()),
                           static_cast<uint32_t>(ids_.size()), count});
  keys_.append(word);
  ids_.insert(ids_.end(), ids, ids + count);
  slots_[i] = static_cast<uint32_t>(entries_.size());
}

void WordCache::grow() {
  const size_t cap = slots_.empty() ? 64 : slots_.size() * 2;
  slots_.assign(cap, 0);
  const size_t mask = cap - 1;
  for (size_t k = 0; k < entries_.size(); ++k) {
    size_t i = entries_[k].hash & mask;
    while (slots_[i] != 0) i = (i + 1) & mask;
    slots_[i] = static_cast<uint32_t>(k + 1);
  }
}

BpeModel::BpeModel(const int32_t (&byte_ids)[256], MergeTable merges, bool ignore_merges,
                   std::vector<std::pair<std::string, int32_t>> whole_words)
    : merges_(std::move(merges)), ignore_merges_(ignore_merges) {
  std::copy(byte_ids, byte_ids + 256, byte_ids_);
  if (ignore_merges_) {
    whole_words_ = std::make_unique<WordCache>();
    for (const auto& [word, id] : whole_words) whole_words_->insert(word, word_hash(word), &id, 1);
  }
}

BpeModel::~BpeModel() = default;

void BpeModel::encode_word(std::string_view word, std::vector<int32_t>& out) const {
  if (ignore_merges_) {
    uint32_t count = 0;
    if (const int32_t* ids = whole_words_->find(word, word_hash(word), count)) {
      out.insert(out.end(), ids, ids + count);
      return;
    }
  }
  if (word.size() <= kSmallWord) {
    merge_small(word, out);
  } else {
    merge_large(word, out);
  }
}

void BpeModel::merge_small(std::string_view word, std::vector<int32_t>& out) const {
  int32_t ids[kSmallWord];
  uint64_t pairs[kSmallWord];  // pairs[i]: (rank << 32 | merged) of (ids[i], ids[i + 1]), or kNone
  size_t n = 0;
  for (unsigned char b : word) {
    if (byte_ids_[b] >= 0) ids[n++] = byte_ids_[b];
  }
  for (size_t i = 0; i + 1 < n; ++i) pairs[i] = merges_.find(ids[i], ids[i + 1]);
  while (n > 1) {
    size_t best = 0;
    uint64_t best_rank = pairs[0] >> 32;
    for (size_t i = 1; i + 1 < n; ++i) {
      if ((pairs[i] >> 32) < best_rank) {
        best_rank = pairs[i] >> 32;
        best = i;
      }
    }
    if (pairs[best] == MergeTable::kNone) break;
    ids[best] = static_cast<int32_t>(pairs[best] & 0xFFFFFFFFu);
    for (size_t i = best + 1; i + 1 < n; ++i) {
      ids[i] = ids[i + 1];
      pairs[i] = pairs[i + 1];
    }
    --n;
    if (best > 0) pairs[best - 1] = merges_.find(ids[best - 1], ids[best]);
    if (best + 1 < n) pairs[best] = merges_.find(ids[best], ids[best + 1]);
  }
  out.insert(out.end(), ids, ids + n);
}

void BpeModel::merge_large(std::string_view word, std::vector<int32_t>& out) const {
  struct Symbol {
    int32_t id;
    int32_t prev, next;  // neighbours in the list, -1 at the ends
    bool alive;
  };
  std::vector<Symbol> syms;
  syms.reserve(word.size());
  for (unsigned char b : word) {
    if (byte_ids_[b] < 0) continue;
    const int32_t i = static_cast<int32_t>(syms.size());
    syms.push_back(Symbol{byte_ids_[b], i - 1, i + 1, true});
  }
  if (syms.empty()) return;
  syms.back().next = -1;
  // (rank << 32 | left position): the smallest rank first, the leftmost on ties.
  std::priority_queue<uint64_t, std::vector<uint64_t>, std::greater<>> heap;
  auto push = [&](int32_t left) {
    const int32_t right = syms[left].next;
    if (right < 0) return;
    const uint64_t m = merges_.find(syms[left].id, syms[right].id);
    if (m != MergeTable::kNone) heap.push((m & ~uint64_t{0xFFFFFFFF}) | static_cast<uint32_t>(left));
  };
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(syms.size()); ++i) push(i);
  while (!heap.empty()) {
    const uint64_t top = heap.top();
    heap.pop();
    const int32_t left = static_cast<int32_t>(top & 0xFFFFFFFFu);
    Symbol& l = syms[left];
    if (!l.alive || l.next < 0) continue;
    // Entries go stale when a neighbour merged since; ranks are unique per pair, so equal ranks mean the
    // pair is unchanged.
    const uint64_t m = merges_.find(l.id, syms[l.next].id);
    if (m == MergeTable::kNone || (m >> 32) != (top >> 32)) continue;
    Symbol& r = syms[l.next];
    l.id = static_cast<int32_t>(m & 0xFFFFFFFFu);
    r.alive = false;
    l.next = r.next;
    if (r.next >= 0) syms[r.next].prev = left;
    if (l.prev >= 0) push(l.prev);
    push(left);
  }
  for (int32_t i = 0; i >= 0; i = syms[i].next) out.push_back(syms[i].id);
}

BpeModel::Session::Session(const BpeModel& model) : model_(model), lock_(model.cache_mutex_) {}

BpeModel::Session::~Session() = default;

void BpeModel::Session::encode_word(std::string_view word, std::vector<int32_t>& out) {
  if (word.size() > kCacheMaxWordBytes) {
    model_.encode_word(word, out);
    return;
  }
  const uint64_t h = word_hash(word);
  uint32_t count = 0;
  if (const int32_t* ids = model_.cache_.find(word, h, count)) {
    out.insert(out.end(), ids, ids + count);
    return;
  }
  if (pending_) {
    if (const int32_t* ids = pending_->find(word, h, count)) {
      out.insert(out.end(), ids, ids + count);
      return;
    }
  } else {
    pending_ = std::make_unique<WordCache>();
  }
  const size_t start = out.size();
  model_.encode_word(word, out);
  if (pending_->size() < kCacheMaxWords) {
    pending_->insert(word, h, out.data() + start, static_cast<uint32_t>(out.size() - start));
  }
}

void BpeModel::Session::finish() {
  lock_.unlock();
  if (!pending_) return;
  std::unique_lock<std::shared_mutex> lock(model_.cache_mutex_);
  // Another session may have added some of the same words meanwhile.
  pending_->for_each([&](std::string_view word, uint64_t h, const int32_t* p, uint32_t count) {
    uint32_t existing = 0;
    if (model_.cache_.size() < kCacheMaxWords && !model_.cache_.find(word, h, existing)) {
      model_.cache_.insert(word, h, p, count);
    }
  });
}

}  // namespace tune
