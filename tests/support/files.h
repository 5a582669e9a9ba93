// Files in tests: read a whole file for an assertion ("" when missing), its last lines for a
// failure report.
#pragma once

#include <cstddef>
#include <filesystem>
#include <string>

namespace ambient::testing {

std::string read_file(const std::filesystem::path& path);
std::string read_tail(const std::filesystem::path& path, std::size_t lines);

}  // namespace ambient::testing
