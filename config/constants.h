// Every literal that must match ztunnel, istiod or the runtimes lives here
// (ambient-contract.md). Header-only so every layer can share it without linking.
#pragma once

#include <cstdint>
#include <string_view>

namespace ambient::contract {

// Labels and annotations (ambient-contract.md §1).
inline constexpr std::string_view kDataplaneModeLabel = "istio.io/dataplane-mode";
inline constexpr std::string_view kDataplaneModeAmbient = "ambient";
inline constexpr std::string_view kDataplaneModeNone = "none";
inline constexpr std::string_view kSidecarStatusAnnotation = "sidecar.istio.io/status";
inline constexpr std::string_view kRedirectionAnnotation = "ambient.istio.io/redirection";
inline constexpr std::string_view kRedirectionEnabled = "enabled";
inline constexpr std::string_view kRedirectionPending = "pending";
inline constexpr std::string_view kBypassInboundCaptureAnnotation =
    "ambient.istio.io/bypass-inbound-capture";
inline constexpr std::string_view kDnsCaptureAnnotation = "ambient.istio.io/dns-capture";
inline constexpr std::string_view kRerouteVirtualInterfacesAnnotation =
    "istio.io/reroute-virtual-interfaces";
inline constexpr std::string_view kUseWaypointLabel = "istio.io/use-waypoint";
inline constexpr std::string_view kZtunnelAppLabel = "app";
inline constexpr std::string_view kZtunnelAppValue = "ztunnel";

// Defaults of the plugin configuration (ambient-contract.md §3).
inline constexpr std::string_view kDefaultExcludedNamespace = "kube-system";
inline constexpr std::string_view kDefaultSystemNamespace = "istio-system";
inline constexpr std::string_view kDefaultPodNamespace = "istio-system";
inline constexpr std::string_view kDefaultDaemonSetName = "ambient-cni-node";
inline constexpr std::string_view kDefaultRunDir = "/var/run/ambient-cni";
inline constexpr std::string_view kDefaultZtunnelSocket = "/var/run/ztunnel/ztunnel.sock";
inline constexpr std::string_view kPluginType = "ambient-cni";
inline constexpr std::string_view kIstioPluginType = "istio-cni";

// In-pod redirection (ambient-contract.md §4).
inline constexpr std::uint32_t kZtunnelMark = 0x539;
inline constexpr std::uint32_t kConnMark = 0x111;
inline constexpr std::uint32_t kMarkMask = 0xfff;
inline constexpr std::uint16_t kOutboundPort = 15001;
inline constexpr std::uint16_t kInboundPlaintextPort = 15006;
inline constexpr std::uint16_t kInboundHbonePort = 15008;
inline constexpr std::uint16_t kDnsProxyPort = 15053;
inline constexpr std::uint32_t kRouteTable = 100;
inline constexpr std::uint32_t kRulePriority = 32764;
inline constexpr std::string_view kProbeSnatV4 = "169.254.7.127";
inline constexpr std::string_view kProbeSnatV6 = "fd16:9254:7127:1337:ffff:ffff:ffff:ffff";
inline constexpr std::string_view kNatTable = "istio-ambient-nat";
inline constexpr std::string_view kMangleTable = "istio-ambient-mangle";
inline constexpr std::string_view kRawTable = "istio-ambient-raw";
inline constexpr std::string_view kProbeSetV4 = "istio-inpod-probes-v4";
inline constexpr std::string_view kProbeSetV6 = "istio-inpod-probes-v6";

// ZDS (ambient-contract.md §6).
inline constexpr std::size_t kZdsMaxMessage = 1024;
inline constexpr int kZdsDeadlineMs = 5000;

// CNI error codes (SPEC "Error"), shared by the plugin and the agent's replies to it.
namespace cni_code {
inline constexpr int kIncompatibleVersion = 1;
inline constexpr int kUnsupportedField = 2;
inline constexpr int kUnknownContainer = 3;
inline constexpr int kInvalidEnvironment = 4;
inline constexpr int kIoFailure = 5;
inline constexpr int kDecodeFailure = 6;
inline constexpr int kInvalidConfig = 7;
inline constexpr int kInvalidNetns = 8;
inline constexpr int kTryAgainLater = 11;
inline constexpr int kStatusPluginNotAvailable = 50;
inline constexpr int kStatusLimitedConnectivity = 51;
inline constexpr int kInternal = 999;
}  // namespace cni_code

}  // namespace ambient::contract
