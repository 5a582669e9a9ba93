#include "plugin/cni_version.h"

#include <algorithm>
#include <charconv>
#include <vector>

#include "plugin/cni_error.h"

namespace ambient::plugin {
namespace {

std::vector<long> parts(std::string_view v) {
  std::vector<long> out;
  std::size_t pos = 0;
  while (pos <= v.size()) {
    const auto end = std::min(v.find('.', pos), v.size());
    long n = 0;
    const auto* first = v.data() + pos;
    const auto* last = v.data() + end;
    const auto [ptr, ec] = std::from_chars(first, last, n);
    if (ec != std::errc() || ptr != last || first == last) return {};
    out.push_back(n);
    pos = end + 1;
  }
  return out;
}

bool has_ip_version_field(std::string_view version) {
  return compare_versions(version, "1.0.0") < 0;
}

std::string ip_family(const std::string& address) {
  return address.find(':') == std::string::npos ? "4" : "6";
}

}  // namespace

bool is_supported_version(std::string_view version) {
  return std::find(kSupportedVersions.begin(), kSupportedVersions.end(), version) !=
         kSupportedVersions.end();
}

int compare_versions(std::string_view a, std::string_view b) {
  const auto pa = parts(a);
  const auto pb = parts(b);
  if (pa.empty() || pb.empty()) return pa.empty() == pb.empty() ? 0 : (pa.empty() ? -1 : 1);
  for (std::size_t i = 0; i < std::max(pa.size(), pb.size()); ++i) {
    const long x = i < pa.size() ? pa[i] : 0;
    const long y = i < pb.size() ? pb[i] : 0;
    if (x != y) return x < y ? -1 : 1;
  }
  return 0;
}

nlohmann::json convert_result(const nlohmann::json& result, std::string_view from_version,
                              std::string_view to_version) {
  if (!result.is_object()) {
    throw CniError(cni_code::kDecodeFailure, "prevResult must be a JSON object");
  }
  std::string from(from_version);
  if (const auto v = result.find("cniVersion"); v != result.end() && v->is_string()) {
    from = v->get<std::string>();
  }
  if (!is_supported_version(from)) {
    throw CniError(cni_code::kIncompatibleVersion,
                   "prevResult has unsupported cniVersion \"" + from + "\"");
  }
  nlohmann::json out = result;
  out["cniVersion"] = std::string(to_version);
  const bool from_has = has_ip_version_field(from);
  const bool to_has = has_ip_version_field(to_version);
  if (from_has == to_has) return out;

  if (auto ips = out.find("ips"); ips != out.end() && ips->is_array()) {
    for (std::size_t i = 0; i < ips->size(); ++i) {
      auto& ip = (*ips)[i];
      if (!ip.is_object()) {
        throw CniError(cni_code::kDecodeFailure,
                       "prevResult.ips[" + std::to_string(i) + "] must be an object");
      }
      if (to_has) {
        const auto addr = ip.find("address");
        if (addr == ip.end() || !addr->is_string()) {
          throw CniError(cni_code::kDecodeFailure,
                         "prevResult.ips[" + std::to_string(i) + "].address must be a string");
        }
        ip["version"] = ip_family(addr->get<std::string>());
      } else {
        ip.erase("version");
      }
    }
  }
  return out;
}

std::vector<std::string> result_ips(const nlohmann::json& result) {
  std::vector<std::string> out;
  if (!result.is_object()) return out;
  const auto ips = result.find("ips");
  if (ips == result.end() || !ips->is_array()) return out;
  for (const auto& ip : *ips) {
    if (!ip.is_object() || !ip.contains("address") || !ip["address"].is_string()) continue;
    auto addr = ip["address"].get<std::string>();
    if (const auto slash = addr.find('/'); slash != std::string::npos) addr.resize(slash);
    if (!addr.empty()) out.push_back(std::move(addr));
  }
  return out;
}

}  // namespace ambient::plugin
