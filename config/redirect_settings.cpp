#include "config/redirect_settings.h"

#include <algorithm>
#include <cctype>
#include <optional>

#include "config/constants.h"
#include "config/json_fields.h"

namespace ambient::config {
namespace {

// Kubernetes-style bools: true/false/1/0/t/f in any case.
std::optional<bool> parse_bool(std::string v) {
  std::transform(v.begin(), v.end(), v.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (v == "true" || v == "1" || v == "t") return true;
  if (v == "false" || v == "0" || v == "f") return false;
  return std::nullopt;
}

std::string trim(std::string_view s) {
  const auto a = s.find_first_not_of(" \t");
  if (a == std::string_view::npos) return {};
  return std::string(s.substr(a, s.find_last_not_of(" \t") - a + 1));
}

}  // namespace

RedirectSettings redirect_settings_for(const Labels& annotations, bool default_dns_capture,
                                       bool ipv6_enabled) {
  RedirectSettings s;
  s.dns_capture = default_dns_capture;
  s.ipv6 = ipv6_enabled;
  const auto flag = [&](std::string_view key, bool& into) {
    const auto it = annotations.find(key);
    if (it == annotations.end()) return;
    if (const auto v = parse_bool(it->second)) {
      into = *v;
    } else {
      s.warnings.push_back("annotation " + std::string(key) + "=\"" + it->second +
                           "\" is not a boolean; ignored");
    }
  };
  flag(contract::kDnsCaptureAnnotation, s.dns_capture);
  flag(contract::kBypassInboundCaptureAnnotation, s.bypass_inbound_capture);
  if (const auto it = annotations.find(contract::kRerouteVirtualInterfacesAnnotation);
      it != annotations.end()) {
    std::string_view list = it->second;
    std::size_t pos = 0;
    while (pos <= list.size()) {
      const auto end = std::min(list.find(',', pos), list.size());
      if (auto name = trim(list.substr(pos, end - pos)); !name.empty()) {
        s.reroute_interfaces.push_back(std::move(name));
      }
      pos = end + 1;
    }
  }
  return s;
}

nlohmann::json to_json(const RedirectSettings& s) {
  return {{"dnsCapture", s.dns_capture},
          {"ipv6", s.ipv6},
          {"bypassInboundCapture", s.bypass_inbound_capture},
          {"rerouteInterfaces", s.reroute_interfaces}};
}

RedirectSettings redirect_settings_from_json(const nlohmann::json& j) {
  fields::object(j, "redirect");
  RedirectSettings s;
  s.dns_capture = fields::boolean(j, "dnsCapture", true);
  s.ipv6 = fields::boolean(j, "ipv6", true);
  s.bypass_inbound_capture = fields::boolean(j, "bypassInboundCapture", false);
  s.reroute_interfaces = fields::strings(j, "rerouteInterfaces");
  return s;
}

}  // namespace ambient::config
