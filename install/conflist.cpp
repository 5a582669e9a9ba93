#include "install/conflist.h"

#include <algorithm>
#include <functional>
#include <map>

#include "config/constants.h"
#include "install/errors.h"
#include "install/json_text.h"

namespace ambient::install {
namespace {

using nlohmann::json;
using nlohmann::ordered_json;
namespace jt = json_text;

constexpr std::string_view kConf = ".conf";
constexpr std::string_view kConflist = ".conflist";
// containerd, CRI-O and the kubelet load *.json too, as a single-plugin configuration like *.conf.
constexpr std::string_view kJson = ".json";

bool is_single_conf_name(std::string_view name) {
  return name.ends_with(kConf) || name.ends_with(kJson);
}

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() > suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

std::string type_of(const json& plugin) {
  if (!plugin.is_object()) return {};
  const auto it = plugin.find("type");
  return it != plugin.end() && it->is_string() ? it->get<std::string>() : std::string();
}

bool is_ours(std::string_view type) {
  return type == contract::kPluginType;
}
bool is_ambient(std::string_view type) {
  return type == contract::kPluginType || type == contract::kIstioPluginType;
}

// The span of the top-level `plugins` array (the last one, as JSON decoders keep the last of
// duplicate keys).
jt::Span plugins_span(std::string_view text) {
  const auto members = jt::members(text, jt::document(text));
  std::optional<jt::Span> found;
  for (const auto& m : members) {
    if (m.key == "plugins") found = m.value;
  }
  if (!found || text[found->begin] != '[') {
    throw InstallError("conflist has no \"plugins\" array");
  }
  return *found;
}

// Removes element i of the plugins array, together with one separator, so that removing an
// element appended by append_plugin gives back the text from before, byte for byte.
std::string remove_element(std::string text, std::size_t i) {
  const auto elems = jt::elements(text, plugins_span(text));
  if (i + 1 < elems.size()) {
    text.erase(elems[i].begin, elems[i + 1].begin - elems[i].begin);
  } else if (i > 0) {
    text.erase(elems[i - 1].end, elems[i].end - elems[i - 1].end);
  } else {
    text.erase(elems[i].begin, elems[i].end - elems[i].begin);
  }
  return text;
}

std::string remove_plugins(std::string text, const std::function<bool(std::string_view)>& drop) {
  for (;;) {
    const auto elems = jt::elements(text, plugins_span(text));
    std::optional<std::size_t> victim;
    for (std::size_t i = elems.size(); i-- > 0;) {
      const auto plugin = json::parse(elems[i].of(text), nullptr, false);
      if (drop(type_of(plugin))) {
        victim = i;
        break;
      }
    }
    if (!victim) return text;
    text = remove_element(std::move(text), *victim);
  }
}

// `value` rendered to sit at `indent` (the element indentation of the array): the first line
// goes where the caller puts it, the following lines get the indent in front.
std::string render_indented(const ordered_json& value, std::string_view indent, bool multiline) {
  if (!multiline) return value.dump();
  // Tab-indented files get tabs inside the entry too.
  const bool tabs = !indent.empty() && indent.find_first_not_of('\t') == std::string_view::npos;
  const std::string pretty = tabs ? value.dump(1, '\t') : value.dump(2);
  std::string out;
  for (const char c : pretty) {
    out.push_back(c);
    if (c == '\n') out.append(indent);
  }
  return out;
}

// Appends `entry` as the last element, with the separator the file already uses between its
// elements (or between '[' and its first element).
std::string append_plugin(std::string text, const ordered_json& entry) {
  const auto array = plugins_span(text);
  const auto elems = jt::elements(text, array);
  std::string sep;
  std::size_t at = 0;
  if (elems.size() >= 2) {
    sep = std::string(
        text.substr(elems[elems.size() - 2].end, elems.back().begin - elems[elems.size() - 2].end));
    at = elems.back().end;
  } else if (elems.size() == 1) {
    sep = "," + text.substr(array.begin + 1, elems[0].begin - array.begin - 1);
    at = elems[0].end;
  } else {
    at = array.begin + 1;
  }
  const auto nl = sep.rfind('\n');
  const bool multiline = nl != std::string::npos;
  const std::string indent = multiline ? sep.substr(nl + 1) : std::string();
  text.insert(at, sep + render_indented(entry, indent, multiline));
  return text;
}

std::string stem_of(std::string_view name) {
  if (ends_with(name, kConflist))
    return std::string(name.substr(0, name.size() - kConflist.size()));
  if (ends_with(name, kConf)) return std::string(name.substr(0, name.size() - kConf.size()));
  if (ends_with(name, kJson)) return std::string(name.substr(0, name.size() - kJson.size()));
  return std::string(name);
}

bool is_plain_conf_name(std::string_view name) {
  return is_single_conf_name(name) && name.find('/') == std::string_view::npos && name != "." &&
         name != "..";
}

struct Entry {
  const ConfFile* file;
  ConfInfo info;
};

std::vector<Entry> inspect_all(const std::vector<ConfFile>& files) {
  std::vector<Entry> out;
  for (const auto& f : files) {
    if (is_cni_config_name(f.name))
      out.push_back({&f, inspect_conf(f)});  // others: not ours to judge
  }
  std::sort(out.begin(), out.end(),
            [](const Entry& a, const Entry& b) { return a.file->name < b.file->name; });
  return out;
}

const Entry* find_entry(const std::vector<Entry>& entries, std::string_view name) {
  for (const auto& e : entries) {
    if (e.file->name == name) return &e;
  }
  return nullptr;
}

bool is_owned(const Entry& e) {
  return e.info.valid && !e.info.owned_copy_of.empty();
}

// A file the runtime could use as the primary network: valid, not our owned copy, and with at
// least one plugin that is neither ours nor Istio's.
std::optional<std::string> primary_problem(const Entry& e) {
  if (!e.info.valid) return e.info.problem;
  if (is_owned(e)) return std::string("our owned copy");
  if (e.info.plugins == e.info.our_entries + e.info.istio_entries) {
    return std::string("holds only ambient CNI entries, no network plugin");
  }
  return std::nullopt;
}

const Entry* pick_primary(const std::vector<Entry>& entries, std::vector<std::string>& warnings) {
  for (const auto& e : entries) {
    const auto problem = primary_problem(e);
    if (!problem) return &e;
    if (!is_owned(e)) warnings.push_back("skipping " + e.file->name + ": " + *problem);
  }
  return nullptr;
}

class OpList {
 public:
  void write(std::string name, std::string text, std::string why) {
    writes_.push_back({FileOp::Kind::kWrite, std::move(name), std::move(text), std::move(why)});
  }
  void remove(std::string name, std::string why) {
    removes_.push_back({FileOp::Kind::kRemove, std::move(name), "", std::move(why)});
  }
  void add(const FileOp& op) {
    (op.kind == FileOp::Kind::kWrite ? writes_ : removes_).push_back(op);
  }
  std::vector<FileOp> take() {
    auto out = std::move(writes_);
    out.insert(out.end(), removes_.begin(), removes_.end());
    return out;
  }

 private:
  std::vector<FileOp> writes_;
  std::vector<FileOp> removes_;
};

// Removes our entries from a file that is not (or no longer) where they belong.
void plan_unchain(const Entry& e, const std::vector<Entry>& all, OpList& ops) {
  const ConfFile& f = *e.file;
  auto reverted = unchain(f);
  if (reverted.name == f.name) {
    if (reverted.text != f.text) ops.write(f.name, reverted.text, "our entry removed");
    return;
  }
  // The wrap is undone: the .conf comes back, unless the primary CNI has written a new one
  // since, which supersedes the copy inside our wrap.
  if (find_entry(all, reverted.name) == nullptr) {
    ops.write(reverted.name, reverted.text, "unwrapped from " + f.name);
  }
  ops.remove(f.name, "wrap of " + reverted.name + " undone");
}

}  // namespace

Mode parse_mode(std::string_view text) {
  if (text == "chained") return Mode::kChained;
  if (text == "owned") return Mode::kOwned;
  throw InstallError("mode must be \"chained\" or \"owned\", not \"" + std::string(text) + "\"");
}

std::string_view mode_name(Mode mode) {
  return mode == Mode::kOwned ? "owned" : "chained";
}

bool is_cni_config_name(std::string_view name) {
  return is_single_conf_name(name) || ends_with(name, kConflist);
}

std::string wrapped_name(std::string_view conf_name) {
  return stem_of(conf_name) + std::string(kConflist);
}

ConfInfo inspect_conf(const ConfFile& file) {
  ConfInfo info;
  const auto bad = [&info](std::string problem) {
    info.problem = std::move(problem);
    return info;
  };
  if (!is_cni_config_name(file.name)) return bad("not a .conf, .conflist or .json file");
  const json doc = json::parse(file.text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return bad("not valid JSON");
  if (!doc.is_object()) return bad("not a JSON object");
  if (const auto v = doc.find("cniVersion"); v != doc.end() && !v->is_string()) {
    return bad("\"cniVersion\" is not a string");
  }
  info.is_list = ends_with(file.name, kConflist);
  if (!info.is_list) {
    if (type_of(doc).empty()) {
      return bad(doc.contains("plugins")
                     ? "a .conf holds one plugin, but this one has \"plugins\" (a .conflist?)"
                     : "no \"type\"");
    }
    info.plugins = 1;
    info.our_entries = is_ours(type_of(doc)) ? 1 : 0;
    info.istio_entries = type_of(doc) == contract::kIstioPluginType ? 1 : 0;
    info.valid = true;
    return info;
  }
  if (const auto n = doc.find("name"); n == doc.end() || !n->is_string()) {
    return bad("no \"name\" string");
  }
  const auto plugins = doc.find("plugins");
  if (plugins == doc.end() || !plugins->is_array()) return bad("no \"plugins\" array");
  if (plugins->empty()) return bad("\"plugins\" is empty");
  for (std::size_t i = 0; i < plugins->size(); ++i) {
    const auto type = type_of((*plugins)[i]);
    if (type.empty()) return bad("plugins[" + std::to_string(i) + "] has no \"type\"");
    info.our_entries += is_ours(type) ? 1 : 0;
    info.istio_entries += type == contract::kIstioPluginType ? 1 : 0;
  }
  info.plugins = plugins->size();
  if (const auto w = doc.find(kWrappedMarker); w != doc.end() && w->is_string()) {
    info.wrapped_from = w->get<std::string>();
  }
  if (const auto o = doc.find(kOwnedMarker); o != doc.end() && o->is_string()) {
    info.owned_copy_of = o->get<std::string>();
  }
  info.valid = true;
  return info;
}

std::string chain_conflist(std::string_view text, const ordered_json& entry) {
  return append_plugin(remove_plugins(std::string(text), is_ambient), entry);
}

std::string wrap_conf(const ConfFile& conf, const ordered_json& entry) {
  const std::string_view text = conf.text;
  const auto doc_span = jt::document(text);
  const json doc = json::parse(doc_span.of(text));
  std::string list = std::string(text.substr(0, doc_span.begin)) + "{\n";
  if (const auto v = doc.find("cniVersion"); v != doc.end()) {
    list += "  \"cniVersion\": " + v->dump() + ",\n";
  }
  const auto n = doc.find("name");
  const json name = n != doc.end() && n->is_string() ? *n : json(stem_of(conf.name));
  list += "  \"name\": " + name.dump() + ",\n";
  list += "  \"" + std::string(kWrappedMarker) + "\": " + json(conf.name).dump() + ",\n";
  list += "  \"plugins\": [\n" + std::string(doc_span.of(text)) + "\n  ]\n}";
  list += text.substr(doc_span.end);
  return chain_conflist(list, entry);
}

ConfFile unchain(const ConfFile& file) {
  const auto info = inspect_conf(file);
  if (!info.valid || !info.is_list) return file;
  const std::string text = remove_plugins(file.text, is_ours);
  if (info.wrapped_from.empty() || !is_plain_conf_name(info.wrapped_from)) {
    return {file.name, text};
  }
  const auto elems = jt::elements(text, plugins_span(text));
  if (elems.size() != 1) return {file.name, text};
  const auto doc = jt::document(text);
  return {info.wrapped_from, std::string(text.substr(0, doc.begin)) +
                                 std::string(elems[0].of(text)) + text.substr(doc.end)};
}

std::string owned_copy(const ConfFile& primary, const ordered_json& entry) {
  ordered_json doc = ordered_json::parse(primary.text);
  ordered_json list;
  if (ends_with(primary.name, kConflist)) {
    list = std::move(doc);
  } else {
    if (doc.contains("cniVersion")) list["cniVersion"] = doc["cniVersion"];
    list["name"] = doc.contains("name") && doc["name"].is_string()
                       ? doc["name"]
                       : ordered_json(stem_of(primary.name));
    list["plugins"] = ordered_json::array({std::move(doc)});
  }
  list.erase(std::string(kWrappedMarker));
  list[std::string(kOwnedMarker)] = primary.name;
  auto& plugins = list["plugins"];
  ordered_json kept = ordered_json::array();
  for (auto& p : plugins) {
    const auto t = p.is_object() && p.contains("type") && p["type"].is_string()
                       ? p["type"].get<std::string>()
                       : std::string();
    if (!is_ambient(t)) kept.push_back(std::move(p));
  }
  kept.push_back(entry);
  plugins = std::move(kept);
  return list.dump(2) + "\n";
}

namespace {

Plan plan_install_steps(const std::vector<ConfFile>& files, Mode mode, std::string_view owned_name,
                        const ordered_json& entry) {
  Plan plan;
  auto entries = inspect_all(files);
  if (mode == Mode::kOwned) {
    if (const auto* taken = find_entry(entries, owned_name);
        taken != nullptr && !is_owned(*taken)) {
      plan.error = "the owned conflist name " + std::string(owned_name) +
                   " is taken by a file that is not ours; choose another name";
      return plan;
    }
    // Entries of ours in other files (chained mode before) go first; the primary is picked from
    // the directory as it will be without them.
    OpList cleanup;
    for (const auto& e : entries) {
      if (e.info.valid && !is_owned(e) && e.info.our_entries > 0) plan_unchain(e, entries, cleanup);
    }
    Plan cleaned_plan;
    cleaned_plan.ops = cleanup.take();
    const auto cleaned = apply_plan(files, cleaned_plan);
    const auto cleaned_entries = inspect_all(cleaned);
    OpList ops;
    for (const auto& op : cleaned_plan.ops) ops.add(op);
    const auto* primary = pick_primary(cleaned_entries, plan.warnings);
    if (primary != nullptr) {
      plan.primary = primary->file->name;
      if (!(owned_name < primary->file->name)) {
        plan.error = "the owned conflist " + std::string(owned_name) +
                     " would not sort before the primary " + primary->file->name +
                     ": the runtime would not use it; choose a name that sorts first";
        return plan;
      }
      const auto wanted = owned_copy(*primary->file, entry);
      const auto* current = find_entry(cleaned_entries, owned_name);
      if (current == nullptr || current->file->text != wanted) {
        ops.write(std::string(owned_name), wanted, "owned copy of " + primary->file->name);
      }
    }
    for (const auto& e : cleaned_entries) {
      if (is_owned(e) && e.file->name != owned_name) ops.remove(e.file->name, "stale owned copy");
    }
    plan.ops = ops.take();
    return plan;
  }

  OpList ops;
  const auto* primary = pick_primary(entries, plan.warnings);
  if (primary == nullptr) return plan;
  const ConfFile& p = *primary->file;
  plan.primary = p.name;
  std::string chained_name = p.name;
  if (!primary->info.is_list) {
    chained_name = wrapped_name(p.name);
    const auto* existing = find_entry(entries, chained_name);
    if (existing != nullptr && existing->info.wrapped_from != p.name) {
      plan.error = "cannot wrap " + p.name + " into " + chained_name +
                   ": that file exists and is not a wrap of ours";
      return plan;
    }
    ops.write(chained_name, wrap_conf(p, entry), "wrapped " + p.name + ", our entry appended");
    ops.remove(p.name, "wrapped into " + chained_name);
  } else {
    const auto chained = chain_conflist(p.text, entry);
    if (chained != p.text) ops.write(p.name, chained, "our entry appended last");
  }
  for (const auto& e : entries) {
    if (&e == primary || e.file->name == chained_name) continue;
    if (is_owned(e)) {
      ops.remove(e.file->name, "owned copy (chained mode)");
    } else if (e.info.valid && e.info.our_entries > 0) {
      plan_unchain(e, entries, ops);
    }
  }
  plan.ops = ops.take();
  return plan;
}

}  // namespace

Plan plan_install(const std::vector<ConfFile>& files, Mode mode, std::string_view owned_name,
                  const ordered_json& entry) {
  Plan plan = plan_install_steps(files, mode, owned_name, entry);
  // What a runtime would do with the directory afterwards: load the first valid file by name.
  const auto after = apply_plan(files, plan);  // inspect_all points into it: keep it alive
  for (const auto& e : inspect_all(after)) {
    if (!e.info.valid) continue;
    plan.runtime_file = e.file->name;
    plan.runtime_loads_ours = e.info.our_entries > 0;
    break;
  }
  if (plan.primary && plan.error.empty() && !plan.runtime_loads_ours) {
    plan.warnings.push_back(
        "a runtime would load " +
        (plan.runtime_file.empty() ? std::string("no file") : plan.runtime_file) +
        ", which has no ambient-cni entry: not installed");
  }
  return plan;
}

Plan plan_uninstall(const std::vector<ConfFile>& files, std::string_view owned_name) {
  Plan plan;
  const auto entries = inspect_all(files);
  OpList ops;
  for (const auto& e : entries) {
    if (is_owned(e)) {
      ops.remove(e.file->name, e.file->name == owned_name ? "our owned copy" : "stale owned copy");
    } else if (e.info.valid && e.info.our_entries > 0) {
      plan_unchain(e, entries, ops);
    }
  }
  plan.ops = ops.take();
  return plan;
}

std::vector<ConfFile> apply_plan(std::vector<ConfFile> files, const Plan& plan) {
  std::map<std::string, std::string> dir;
  for (auto& f : files) dir[f.name] = std::move(f.text);
  for (const auto& op : plan.ops) {
    if (op.kind == FileOp::Kind::kWrite) {
      dir[op.name] = op.text;
    } else {
      dir.erase(op.name);
    }
  }
  std::vector<ConfFile> out;
  for (auto& [name, text] : dir) out.push_back({name, std::move(text)});
  return out;
}

}  // namespace ambient::install
