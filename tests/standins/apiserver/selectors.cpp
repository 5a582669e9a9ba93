#include "tests/standins/apiserver/selectors.h"

#include <algorithm>
#include <cctype>
#include <stdexcept>

namespace ambient::testing {
namespace {

enum class TokenType {
  kIdentifier,
  kEquals,
  kDoubleEquals,
  kNotEquals,
  kBang,
  kOpen,
  kClose,
  kComma,
  kEnd
};

struct Token {
  TokenType type;
  std::string text;
};

bool is_identifier_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' ||
         c == '/';
}

std::vector<Token> tokenize(std::string_view text) {
  std::vector<Token> tokens;
  size_t i = 0;
  while (i < text.size()) {
    const char c = text[i];
    if (std::isspace(static_cast<unsigned char>(c))) {
      ++i;
    } else if (c == '=') {
      if (i + 1 < text.size() && text[i + 1] == '=') {
        tokens.push_back({TokenType::kDoubleEquals, "=="});
        i += 2;
      } else {
        tokens.push_back({TokenType::kEquals, "="});
        ++i;
      }
    } else if (c == '!') {
      if (i + 1 < text.size() && text[i + 1] == '=') {
        tokens.push_back({TokenType::kNotEquals, "!="});
        i += 2;
      } else {
        tokens.push_back({TokenType::kBang, "!"});
        ++i;
      }
    } else if (c == '(') {
      tokens.push_back({TokenType::kOpen, "("});
      ++i;
    } else if (c == ')') {
      tokens.push_back({TokenType::kClose, ")"});
      ++i;
    } else if (c == ',') {
      tokens.push_back({TokenType::kComma, ","});
      ++i;
    } else if (is_identifier_char(c)) {
      size_t end = i;
      while (end < text.size() && is_identifier_char(text[end])) ++end;
      tokens.push_back({TokenType::kIdentifier, std::string(text.substr(i, end - i))});
      i = end;
    } else {
      throw std::invalid_argument("unexpected character '" + std::string(1, c) + "' at " +
                                  std::to_string(i));
    }
  }
  tokens.push_back({TokenType::kEnd, ""});
  return tokens;
}

// Label keys: an optional DNS-subdomain prefix and a name of at most 63 characters.
void check_key(const std::string& key) {
  const size_t slash = key.find('/');
  const std::string name = slash == std::string::npos ? key : key.substr(slash + 1);
  if (name.empty() || name.size() > 63 || key.find('/', slash + 1) != std::string::npos ||
      (slash != std::string::npos && slash == 0)) {
    throw std::invalid_argument("invalid label key \"" + key + "\"");
  }
}

void check_value(const std::string& value) {
  if (value.size() > 63 || value.find('/') != std::string::npos) {
    throw std::invalid_argument("invalid label value \"" + value + "\"");
  }
}

const nlohmann::json* labels_of(const nlohmann::json& object) {
  auto metadata = object.find("metadata");
  if (metadata == object.end() || !metadata->is_object()) return nullptr;
  auto labels = metadata->find("labels");
  if (labels == metadata->end() || !labels->is_object()) return nullptr;
  return &*labels;
}

}  // namespace

LabelSelectorQuery LabelSelectorQuery::parse(std::string_view text) {
  LabelSelectorQuery query;
  const auto tokens = tokenize(text);
  size_t pos = 0;
  auto peek = [&]() -> const Token& { return tokens[pos]; };
  auto expect_identifier = [&](const char* what) {
    if (peek().type != TokenType::kIdentifier) {
      throw std::invalid_argument(std::string("expected ") + what + ", found \"" + peek().text +
                                  "\"");
    }
    return tokens[pos++].text;
  };
  if (peek().type == TokenType::kEnd) return query;
  while (true) {
    SelectorRequirement requirement;
    if (peek().type == TokenType::kBang) {
      ++pos;
      requirement.key = expect_identifier("a label key after '!'");
      requirement.op = SelectorRequirement::Op::kDoesNotExist;
    } else {
      requirement.key = expect_identifier("a label key");
      const Token& op = peek();
      if (op.type == TokenType::kEquals || op.type == TokenType::kDoubleEquals ||
          op.type == TokenType::kNotEquals) {
        ++pos;
        requirement.op = op.type == TokenType::kNotEquals ? SelectorRequirement::Op::kNotEquals
                                                          : SelectorRequirement::Op::kEquals;
        // An empty value is allowed ("a=" selects a label with an empty value).
        std::string value;
        if (peek().type == TokenType::kIdentifier) value = tokens[pos++].text;
        requirement.values.push_back(value);
      } else if (op.type == TokenType::kIdentifier && (op.text == "in" || op.text == "notin")) {
        requirement.op =
            op.text == "in" ? SelectorRequirement::Op::kIn : SelectorRequirement::Op::kNotIn;
        ++pos;
        if (peek().type != TokenType::kOpen)
          throw std::invalid_argument("expected '(' after " + op.text);
        ++pos;
        while (true) {
          std::string value;
          if (peek().type == TokenType::kIdentifier) value = tokens[pos++].text;
          requirement.values.push_back(value);
          if (peek().type == TokenType::kComma) {
            ++pos;
            continue;
          }
          if (peek().type == TokenType::kClose) {
            ++pos;
            break;
          }
          throw std::invalid_argument("expected ',' or ')' in the value set of \"" +
                                      requirement.key + "\"");
        }
      } else if (op.type == TokenType::kComma || op.type == TokenType::kEnd) {
        requirement.op = SelectorRequirement::Op::kExists;
      } else {
        throw std::invalid_argument("unexpected \"" + op.text + "\" after \"" + requirement.key +
                                    "\"");
      }
    }
    check_key(requirement.key);
    for (const auto& value : requirement.values) check_value(value);
    query.requirements_.push_back(std::move(requirement));
    if (peek().type == TokenType::kEnd) break;
    if (peek().type != TokenType::kComma) {
      throw std::invalid_argument("expected ',' between requirements, found \"" + peek().text +
                                  "\"");
    }
    ++pos;
  }
  return query;
}

bool LabelSelectorQuery::matches(const nlohmann::json& object) const {
  const nlohmann::json* labels = labels_of(object);
  for (const auto& requirement : requirements_) {
    std::optional<std::string> value;
    if (labels != nullptr) {
      auto it = labels->find(requirement.key);
      if (it != labels->end() && it->is_string()) value = it->get<std::string>();
    }
    const auto& values = requirement.values;
    const bool in_set = value && std::find(values.begin(), values.end(), *value) != values.end();
    switch (requirement.op) {
      case SelectorRequirement::Op::kEquals:
      case SelectorRequirement::Op::kIn:
        if (!in_set) return false;
        break;
      case SelectorRequirement::Op::kNotEquals:
      case SelectorRequirement::Op::kNotIn:
        if (in_set) return false;  // a missing label satisfies != and notin
        break;
      case SelectorRequirement::Op::kExists:
        if (!value) return false;
        break;
      case SelectorRequirement::Op::kDoesNotExist:
        if (value) return false;
        break;
    }
  }
  return true;
}

std::string field_value(const nlohmann::json& object, std::string_view field) {
  const nlohmann::json* node = &object;
  size_t start = 0;
  while (start <= field.size()) {
    const size_t dot = field.find('.', start);
    const std::string part(
        field.substr(start, dot == std::string_view::npos ? field.npos : dot - start));
    if (!node->is_object()) return "";
    auto it = node->find(part);
    if (it == node->end()) return "";
    node = &*it;
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  if (node->is_string()) return node->get<std::string>();
  if (node->is_boolean()) return node->get<bool>() ? "true" : "false";
  if (node->is_number()) return node->dump();
  return "";
}

FieldSelectorQuery FieldSelectorQuery::parse(std::string_view text, std::string_view kind) {
  // The field labels the real server supports for these kinds (a subset for pods).
  static const std::vector<std::string> kPodFields = {
      "metadata.name",    "metadata.namespace", "spec.nodeName", "spec.serviceAccountName",
      "spec.hostNetwork", "spec.restartPolicy", "status.phase",  "status.podIP"};
  static const std::vector<std::string> kNamespaceFields = {"metadata.name", "status.phase"};
  static const std::vector<std::string> kEventFields = {"metadata.name",
                                                        "metadata.namespace",
                                                        "involvedObject.kind",
                                                        "involvedObject.namespace",
                                                        "involvedObject.name",
                                                        "involvedObject.uid",
                                                        "involvedObject.apiVersion",
                                                        "involvedObject.resourceVersion",
                                                        "involvedObject.fieldPath",
                                                        "reason",
                                                        "reportingComponent",
                                                        "source",
                                                        "type"};
  static const std::vector<std::string> kConfigMapFields = {"metadata.name", "metadata.namespace"};
  const auto& supported = kind == "Pod"         ? kPodFields
                          : kind == "Event"     ? kEventFields
                          : kind == "ConfigMap" ? kConfigMapFields
                                                : kNamespaceFields;
  FieldSelectorQuery query;
  size_t start = 0;
  while (start < text.size()) {
    size_t comma = text.find(',', start);
    if (comma == std::string_view::npos) comma = text.size();
    std::string term(text.substr(start, comma - start));
    start = comma + 1;
    term.erase(0, term.find_first_not_of(' '));
    term.erase(term.find_last_not_of(' ') + 1);
    if (term.empty()) continue;
    Term parsed;
    size_t op = term.find("!=");
    size_t op_len = 2;
    if (op != std::string::npos) {
      parsed.equal = false;
    } else if ((op = term.find("==")) != std::string::npos) {
      op_len = 2;
    } else if ((op = term.find('=')) != std::string::npos) {
      op_len = 1;
    } else {
      throw std::invalid_argument("invalid selector: '" + term + "'; can't understand '" + term +
                                  "'");
    }
    parsed.field = term.substr(0, op);
    parsed.value = term.substr(op + op_len);
    if (std::find(supported.begin(), supported.end(), parsed.field) == supported.end()) {
      throw std::invalid_argument("field label not supported: " + parsed.field);
    }
    query.terms_.push_back(std::move(parsed));
  }
  return query;
}

bool FieldSelectorQuery::matches(const nlohmann::json& object) const {
  for (const auto& term : terms_) {
    // An Event's field label "source" is source.component.
    const std::string field = term.field == "source" ? "source.component" : term.field;
    if ((field_value(object, field) == term.value) != term.equal) return false;
  }
  return true;
}

}  // namespace ambient::testing
