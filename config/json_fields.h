// Reading fields of the node-local JSON documents (run-dir files, agent messages): every wrong
// type or missing key is a ConfigError (kDecode) naming the key.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace ambient::config::fields {

[[noreturn]] void bad(const std::string& key, const std::string& what);
const nlohmann::json& object(const nlohmann::json& j, const std::string& what);
// A string; an absent or null key is "" unless required.
std::string string(const nlohmann::json& j, const char* key, bool required = false);
std::vector<std::string> strings(const nlohmann::json& j, const char* key);
bool boolean(const nlohmann::json& j, const char* key, bool fallback);
int integer(const nlohmann::json& j, const char* key, int fallback);

}  // namespace ambient::config::fields
