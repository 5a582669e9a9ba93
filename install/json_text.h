// Where values sit in a JSON text, so the installer can splice a conflist (remove one plugin,
// append one) and leave every other byte as the primary CNI wrote it. The text must already be
// valid JSON (checked with nlohmann::json first): these functions locate, they do not validate.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace ambient::install::json_text {

struct Span {
  std::size_t begin = 0;  // first byte of the value
  std::size_t end = 0;    // one past its last byte
  std::string_view of(std::string_view text) const { return text.substr(begin, end - begin); }
};

struct Member {
  std::string key;  // decoded
  Span key_span;    // the quoted key
  Span value;
};

// Index of the first non-whitespace byte at or after pos (text.size() when none).
std::size_t skip_ws(std::string_view text, std::size_t pos);
// The span of the value starting at `pos` (which must be a value's first byte).
Span value_at(std::string_view text, std::size_t pos);
// The document's top-level value.
Span document(std::string_view text);
// The members of the object at `object` ({…}), in text order.
std::vector<Member> members(std::string_view text, Span object);
// The elements of the array at `array` ([…]), in text order.
std::vector<Span> elements(std::string_view text, Span array);

}  // namespace ambient::install::json_text
