#include "model/tokenizer.h"

#include <queue>

#include "model/utf8.h"

namespace flotilla {
namespace {

constexpr std::string_view kSpaceMarker = "\xe2\x96\x81";  // U+2581

struct Symbol {
  int prev;
  int next;
  size_t start;  // into the normalised text
  size_t len;
};

struct Bigram {
  float score;
  int left;
  size_t size;
  // Higher score first; on ties the leftmost pair first (as SentencePiece does).
  bool operator<(const Bigram& o) const { return score < o.score || (score == o.score && left > o.left); }
};

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// The byte of a "<0xNN>" piece, or -1.
int ByteOfPiece(const std::string& p) {
  if (p.size() != 6 || p.compare(0, 3, "<0x") != 0 || p[5] != '>') return -1;
  const int hi = HexDigit(p[3]), lo = HexDigit(p[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

}  // namespace

Tokenizer::Tokenizer(Vocab vocab) : vocab_(std::move(vocab)) {
  for (int& b : byte_to_id_) b = -1;
  for (int32_t id = 0; id < vocab_.size(); ++id) {
    const TokenType t = vocab_.types[id];
    if (t == TokenType::kByte) {
      const int b = ByteOfPiece(vocab_.pieces[id]);
      if (b >= 0 && byte_to_id_[b] < 0) byte_to_id_[b] = id;
      continue;
    }
    // Only text pieces can be reached by merging characters of user text.
    if (t == TokenType::kNormal || t == TokenType::kUserDefined || t == TokenType::kUndefined) {
      piece_to_id_.emplace(vocab_.pieces[id], id);
    }
  }
}

int32_t Tokenizer::Lookup(std::string_view piece) const {
  auto it = piece_to_id_.find(absl::string_view(piece.data(), piece.size()));
  return it == piece_to_id_.end() ? -1 : it->second;
}

std::vector<int32_t> Tokenizer::Encode(std::string_view raw, bool add_bos) const {
  std::vector<int32_t> out;
  if (add_bos) out.push_back(vocab_.bos_id);
  if (raw.empty()) return out;

  // Normalise: leading space, spaces as U+2581.
  std::string text;
  text.reserve(raw.size() * 2 + 3);
  if (vocab_.add_space_prefix) text.append(kSpaceMarker);
  for (char c : raw) {
    if (c == ' ') text.append(kSpaceMarker); else text.push_back(c);
  }

  // One symbol per UTF-8 character.
  std::vector<Symbol> sym;
  for (size_t i = 0; i < text.size();) {
    const size_t len = std::min<size_t>(Utf8SeqLen(static_cast<unsigned char>(text[i])), text.size() - i);
    sym.push_back({static_cast<int>(sym.size()) - 1, static_cast<int>(sym.size()) + 1, i, len});
    i += len;
  }
  sym.back().next = -1;

  std::priority_queue<Bigram> queue;
  // Merges only ever form vocabulary pieces, so every final symbol is a piece or one character.
  auto try_add = [&](int left, int right) {
    if (left < 0 || right < 0) return;
    const std::string_view piece(text.data() + sym[left].start, sym[left].len + sym[right].len);
    const int32_t id = Lookup(piece);
    if (id < 0) return;
    queue.push({vocab_.scores[id], left, piece.size()});
  };
  for (size_t i = 1; i < sym.size(); ++i) try_add(static_cast<int>(i) - 1, static_cast<int>(i));

  while (!queue.empty()) {
    const Bigram b = queue.top();
    queue.pop();
    Symbol& left = sym[b.left];
    if (left.len == 0 || left.next < 0) continue;
    Symbol& right = sym[left.next];
    if (left.len + right.len != b.size) continue;  // stale: one side has changed since
    left.len += right.len;
    right.len = 0;
    left.next = right.next;
    if (right.next >= 0) sym[right.next].prev = b.left;
    try_add(left.prev, b.left);
    try_add(b.left, left.next);
  }

  for (int i = 0; i != -1 && i < static_cast<int>(sym.size()); i = sym[i].next) {
    const std::string_view piece(text.data() + sym[i].start, sym[i].len);
    const int32_t id = Lookup(piece);
    if (id >= 0) {
      out.push_back(id);
      continue;
    }
    // Not a piece: byte fallback for each byte.
    for (unsigned char c : piece) {
      const int32_t bid = byte_to_id_[c];
      out.push_back(bid >= 0 ? bid : vocab_.unk_id);
    }
  }
  return out;
}

std::string Tokenizer::TokenBytes(int32_t id) const {
  if (id < 0 || id >= vocab_.size()) return "";
  const std::string& p = vocab_.pieces[id];
  switch (vocab_.types[id]) {
    case TokenType::kControl:
    case TokenType::kUnused:
      return "";
    case TokenType::kByte: {
      const int b = ByteOfPiece(p);
      return b < 0 ? "" : std::string(1, static_cast<char>(b));
    }
    case TokenType::kUnknown:
      return " \xe2\x81\x87 ";  // U+2047, as SentencePiece shows unknown pieces
    default:
      break;
  }
  std::string s;
  s.reserve(p.size());
  for (size_t i = 0; i < p.size();) {
    if (p.compare(i, kSpaceMarker.size(), kSpaceMarker) == 0) {
      s.push_back(' ');
      i += kSpaceMarker.size();
    } else {
      s.push_back(p[i++]);
    }
  }
  return s;
}

std::string Tokenizer::Decode(std::span<const int32_t> ids) const {
  std::string bytes;
  for (int32_t id : ids) bytes += TokenBytes(id);
  return SanitizeUtf8(bytes);
}

}  // namespace flotilla
