// Byte-level BPE model: merges raw bytes of one pre-tokenized piece into token ids by merge rank, as the
// Hugging Face `tokenizers` BPE model does (lowest rank first, leftmost on ties), with a shared word cache.
// Depends on nothing else in tune; the vocab and merges come from the caller as byte strings and id pairs.
#pragma once

#include <cstdint>
#include <memory>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

namespace tune {

// Open-addressing map from a pair of token ids to (rank, merged id): the hot lookup of the merge loop.
class MergeTable {
 public:
  static constexpr uint64_t kNone = ~uint64_t{0};
  void reserve(size_t n);
  // Keeps the first (lowest-rank) entry of a pair given twice, as the merges list is read in rank order.
  void insert(int32_t a, int32_t b, uint32_t rank, int32_t merged);
  // (rank << 32 | merged id), or kNone.
  uint64_t find(int32_t a, int32_t b) const {
    const uint64_t key = pair_key(a, b);
    for (size_t i = slot_of(key);; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.key == key) return s.value;
      if (s.key == kNone) return kNone;
    }
  }

 private:
  struct Slot {
    uint64_t key;
    uint64_t value;
  };
  static uint64_t pair_key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  size_t slot_of(uint64_t key) const { return static_cast<size_t>((key * 0x9E3779B97F4A7C15ull) >> shift_); }

  std::vector<Slot> slots_;
  size_t mask_ = 0;
  int shift_ = 64;
};

// Maps byte strings (pre-tokenized pieces) to the ids they encode to.
class WordCache {
 public:
  // Returns the ids of `word` (hash from word_hash) or nullptr; `count` receives their number.
  const int32_t* find(std::string_view word, uint64_t hash, uint32_t& count) const;
  void insert(std::string_view word, uint64_t hash, const int32_t* ids, uint32_t count);
  size_t size() const { return entries_.size(); }
  // f(word, hash, ids, count) for every entry, in insertion order.
  template <class F>
  void for_each(F&& f) const {
    for (const Entry& e : entries_) {
      f(std::string_view(keys_.data() + e.key_offset, e.key_len), e.hash, ids_.data() + e.ids_offset,
        e.ids_len);
    }
  }

 private:
  struct Entry {
    uint64_t hash;
    uint32_t key_offset, key_len, ids_offset, ids_len;
  };
  void grow();

  std::vector<uint32_t> slots_;  // entry index + 1; 0 is empty
  std::vector<Entry> entries_;
  std::string keys_;
  std::vector<int32_t> ids_;
};

uint64_t word_hash(std::string_view word);

class BpeModel {
 public:
  // byte_ids[b]: id of the token of the single byte b, or -1 (such bytes are dropped, as HF does without
  // unk). whole_words: with `ignore_merges`, pieces that are a vocab entry as a whole map to it directly.
  BpeModel(const int32_t (&byte_ids)[256], MergeTable merges, bool ignore_merges,
           std::vector<std::pair<std::string, int32_t>> whole_words);
  ~BpeModel();

  // Appends the ids of one piece (raw bytes), without the cache.
  void encode_word(std::string_view word, std::vector<int32_t>& out) const;

  // One encode call's use of the shared cache: a shared lock for lookups; the words it had to merge are kept
  // locally and added to the shared cache by finish().
  class Session {
   public:
    explicit Session(const BpeModel& model);
    ~Session();
    void encode_word(std::string_view word, std::vector<int32_t>& out);
    void finish();

   private:
    const BpeModel& model_;
    std::shared_lock<std::shared_mutex> lock_;
    std::unique_ptr<WordCache> pending_;
  };

 private:
  void merge_small(std::string_view word, std::vector<int32_t>& out) const;
  void merge_large(std::string_view word, std::vector<int32_t>& out) const;

  int32_t byte_ids_[256];
  MergeTable merges_;
  bool ignore_merges_;
  std::unique_ptr<WordCache> whole_words_;
  mutable std::shared_mutex cache_mutex_;
  mutable WordCache cache_;
};

}  // namespace tune
