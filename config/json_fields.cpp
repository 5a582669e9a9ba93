#include "config/json_fields.h"

#include "config/errors.h"

namespace ambient::config::fields {

void bad(const std::string& key, const std::string& what) {
  throw ConfigError(ConfigError::Kind::kDecode, key, key + ": " + what);
}

const nlohmann::json& object(const nlohmann::json& j, const std::string& what) {
  if (!j.is_object()) bad(what, "must be an object");
  return j;
}

std::string string(const nlohmann::json& j, const char* key, bool required) {
  const auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    if (required) bad(key, "is required");
    return {};
  }
  if (!it->is_string()) bad(key, "must be a string");
  return it->get<std::string>();
}

std::vector<std::string> strings(const nlohmann::json& j, const char* key) {
  std::vector<std::string> out;
  const auto it = j.find(key);
  if (it == j.end() || it->is_null()) return out;
  if (!it->is_array()) bad(key, "must be an array of strings");
  for (const auto& e : *it) {
    if (!e.is_string()) bad(key, "must be an array of strings");
    out.push_back(e.get<std::string>());
  }
  return out;
}

bool boolean(const nlohmann::json& j, const char* key, bool fallback) {
  const auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) bad(key, "must be a boolean");
  return it->get<bool>();
}

int integer(const nlohmann::json& j, const char* key, int fallback) {
  const auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_number_integer()) bad(key, "must be an integer");
  return it->get<int>();
}

}  // namespace ambient::config::fields
