#include "install/json_text.h"

#include <stdexcept>

#include <nlohmann/json.hpp>

namespace ambient::install::json_text {
namespace {

bool is_ws(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

// One past the closing quote of the string whose opening quote is at pos.
std::size_t string_end(std::string_view text, std::size_t pos) {
  for (std::size_t i = pos + 1; i < text.size(); ++i) {
    if (text[i] == '\\') {
      ++i;
    } else if (text[i] == '"') {
      return i + 1;
    }
  }
  throw std::invalid_argument("unterminated JSON string");
}

// One past the bracket that closes the container opened at pos.
std::size_t container_end(std::string_view text, std::size_t pos) {
  int depth = 0;
  for (std::size_t i = pos; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '"') {
      i = string_end(text, i) - 1;
    } else if (c == '{' || c == '[') {
      ++depth;
    } else if (c == '}' || c == ']') {
      if (--depth == 0) return i + 1;
    }
  }
  throw std::invalid_argument("unterminated JSON container");
}

}  // namespace

std::size_t skip_ws(std::string_view text, std::size_t pos) {
  while (pos < text.size() && is_ws(text[pos])) ++pos;
  return pos;
}

Span value_at(std::string_view text, std::size_t pos) {
  if (pos >= text.size()) throw std::invalid_argument("JSON value expected at end of text");
  const char c = text[pos];
  if (c == '{' || c == '[') return {pos, container_end(text, pos)};
  if (c == '"') return {pos, string_end(text, pos)};
  std::size_t end = pos;
  while (end < text.size() && !is_ws(text[end]) && text[end] != ',' && text[end] != ']' &&
         text[end] != '}') {
    ++end;
  }
  return {pos, end};
}

Span document(std::string_view text) {
  return value_at(text, skip_ws(text, 0));
}

std::vector<Member> members(std::string_view text, Span object) {
  std::vector<Member> out;
  if (object.end - object.begin < 2 || text[object.begin] != '{') {
    throw std::invalid_argument("not a JSON object");
  }
  std::size_t pos = skip_ws(text, object.begin + 1);
  while (pos < object.end - 1) {
    Member m;
    m.key_span = {pos, string_end(text, pos)};
    m.key = nlohmann::json::parse(m.key_span.of(text)).get<std::string>();
    pos = skip_ws(text, m.key_span.end);
    if (text[pos] != ':') throw std::invalid_argument("':' expected in JSON object");
    m.value = value_at(text, skip_ws(text, pos + 1));
    pos = skip_ws(text, m.value.end);
    out.push_back(std::move(m));
    if (text[pos] == ',') pos = skip_ws(text, pos + 1);
  }
  return out;
}

std::vector<Span> elements(std::string_view text, Span array) {
  std::vector<Span> out;
  if (array.end - array.begin < 2 || text[array.begin] != '[') {
    throw std::invalid_argument("not a JSON array");
  }
  std::size_t pos = skip_ws(text, array.begin + 1);
  while (pos < array.end - 1) {
    const Span v = value_at(text, pos);
    out.push_back(v);
    pos = skip_ws(text, v.end);
    if (text[pos] == ',') pos = skip_ws(text, pos + 1);
  }
  return out;
}

}  // namespace ambient::install::json_text
