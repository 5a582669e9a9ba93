// The CNI configuration directory as the installer sees it, and what it does to it: pure
// transforms from file contents to file contents (golden-tested in tests/golden/conflist), with
// no file I/O. install/files.h applies a Plan to a real directory.
//
// Chained mode: the primary (the lexicographically first valid *.conf / *.conflist / *.json, as the
// runtime picks it) gets our entry appended as the last plugin. Any older entry of ours and any
// Istio `istio-cni` entry is removed first: two ambient CNI plugins in one chain would both
// redirect the pod and fight over its netns (and over ztunnel), so we replace Istio's rather
// than run beside it. Every other byte of the file stays as the primary CNI wrote it (the edit is
// a text splice, not a re-serialisation), so removing our entry restores the file exactly.
// A single-plugin .conf is wrapped into a .conflist of the same stem whose plugins[0] is the
// original text verbatim; the .conf is removed. The wrapped list is marked (top-level key
// kWrappedMarker naming the .conf) so the reversal can write the .conf back byte for byte.
//
// Owned mode: the primary is left alone; a copy of it with our entry is written under a name
// that sorts before it (default 00-ambient-cni.conflist, marked with kOwnedMarker), so the
// runtime uses our copy — also after a reboot, before our pod runs. The copy is recomputed from
// the primary whenever the directory changes (the watcher), so it follows the primary's edits.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace ambient::install {

enum class Mode { kChained, kOwned };
// "chained" / "owned"; throws InstallError otherwise.
Mode parse_mode(std::string_view text);
std::string_view mode_name(Mode mode);

inline constexpr std::string_view kDefaultOwnedName = "00-ambient-cni.conflist";
// Top-level key of a .conflist we made by wrapping a .conf: the .conf's file name.
inline constexpr std::string_view kWrappedMarker = "ambientCniWrappedConf";
// Top-level key of our owned copy: the primary's file name.
inline constexpr std::string_view kOwnedMarker = "ambientCniOwnedCopyOf";

struct ConfFile {
  std::string name;  // file name inside the conf dir
  std::string text;
  bool operator==(const ConfFile&) const = default;
};

// True for names a runtime loads as network configuration: *.conf, *.conflist, *.json (a .json
// is a single plugin, like a .conf).
bool is_cni_config_name(std::string_view name);

// What one file is, by libcni's rules: a .conflist needs a string `name` and a non-empty
// `plugins` array of objects with a non-empty string `type`; a .conf needs a `type`.
struct ConfInfo {
  bool valid = false;
  std::string problem;  // why it is not valid
  bool is_list = false;
  std::string wrapped_from;   // kWrappedMarker
  std::string owned_copy_of;  // kOwnedMarker
  std::size_t plugins = 0;
  std::size_t our_entries = 0;    // type "ambient-cni"
  std::size_t istio_entries = 0;  // type "istio-cni"
};
ConfInfo inspect_conf(const ConfFile& file);

// A valid .conflist's text with every ambient-cni and istio-cni plugin removed and `entry`
// appended last, formatted like the file's other elements. Idempotent.
std::string chain_conflist(std::string_view text, const nlohmann::ordered_json& entry);
// A valid .conf wrapped into a .conflist text (the .conf verbatim as plugins[0]), entry appended.
std::string wrap_conf(const ConfFile& conf, const nlohmann::ordered_json& entry);
// `conf_name` with .conf replaced by .conflist.
std::string wrapped_name(std::string_view conf_name);
// The reversal of chain_conflist / wrap_conf for one file: our entries removed; a wrap we made
// undone (the original .conf name and bytes). Files without entries of ours come back unchanged.
ConfFile unchain(const ConfFile& file);
// Owned mode: a copy of the primary (wrapped when it is a .conf) with ours appended, marked.
std::string owned_copy(const ConfFile& primary, const nlohmann::ordered_json& entry);

struct FileOp {
  enum class Kind { kWrite, kRemove };
  Kind kind = Kind::kWrite;
  std::string name;
  std::string text;  // kWrite
  std::string why;   // for the log
  bool operator==(const FileOp&) const = default;
};

struct Plan {
  std::optional<std::string> primary;  // the primary CNI's file (before the plan)
  std::vector<FileOp> ops;             // writes first, then removals
  std::vector<std::string> warnings;   // skipped invalid files, …
  std::string error;                   // nothing can be done until this is fixed

  // After the plan, the file a runtime loads (the first valid one by name) holds our entry. False
  // means pods would start without us: never reported as installed.
  bool runtime_loads_ours = false;
  std::string runtime_file;  // that file's name ("" when there is none)

  bool waiting() const { return !primary && error.empty(); }
  bool installed() const { return primary && error.empty() && runtime_loads_ours; }
  // Nothing to do: what is on disk is what the installer wants.
  bool in_place() const { return installed() && ops.empty(); }
};

// What install (or keeping it installed) does to a directory holding `files`.
Plan plan_install(const std::vector<ConfFile>& files, Mode mode, std::string_view owned_name,
                  const nlohmann::ordered_json& entry);
// What uninstall does: our owned copy removed, our entries removed, wraps undone. Nothing else
// is touched (an Istio entry removed at install is not brought back: it is not ours).
Plan plan_uninstall(const std::vector<ConfFile>& files, std::string_view owned_name);

// The directory after `plan` (in memory): for tests and for planning in steps.
std::vector<ConfFile> apply_plan(std::vector<ConfFile> files, const Plan& plan);

}  // namespace ambient::install
