#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "config/errors.h"
#include "config/labels.h"

namespace ambient::config {
namespace {

LabelSelector sel(const char* json) {
  return LabelSelector::parse(nlohmann::json::parse(json), "s");
}

TEST(LabelSelector, EmptyMatchesEverything) {
  EXPECT_TRUE(sel("{}").matches({}));
  EXPECT_TRUE(sel("{}").matches({{"a", "b"}}));
  EXPECT_TRUE(LabelSelector::parse(nullptr, "s").matches_everything());
}

TEST(LabelSelector, MatchLabelsNeedsEveryPair) {
  const auto s = sel(R"({"matchLabels":{"a":"1","b":"2"}})");
  EXPECT_TRUE(s.matches({{"a", "1"}, {"b", "2"}, {"c", "3"}}));
  EXPECT_FALSE(s.matches({{"a", "1"}}));
  EXPECT_FALSE(s.matches({{"a", "1"}, {"b", "3"}}));
}

TEST(LabelSelector, Operators) {
  const auto in = sel(R"({"matchExpressions":[{"key":"k","operator":"In","values":["x","y"]}]})");
  EXPECT_TRUE(in.matches({{"k", "y"}}));
  EXPECT_FALSE(in.matches({{"k", "z"}}));
  EXPECT_FALSE(in.matches({}));

  const auto not_in =
      sel(R"({"matchExpressions":[{"key":"k","operator":"NotIn","values":["x"]}]})");
  EXPECT_TRUE(not_in.matches({{"k", "y"}}));
  EXPECT_TRUE(not_in.matches({}));  // absent key matches NotIn, as in Kubernetes
  EXPECT_FALSE(not_in.matches({{"k", "x"}}));

  const auto exists = sel(R"({"matchExpressions":[{"key":"k","operator":"Exists"}]})");
  EXPECT_TRUE(exists.matches({{"k", ""}}));
  EXPECT_FALSE(exists.matches({{"j", "k"}}));

  const auto absent = sel(R"({"matchExpressions":[{"key":"k","operator":"DoesNotExist"}]})");
  EXPECT_TRUE(absent.matches({}));
  EXPECT_FALSE(absent.matches({{"k", "v"}}));
}

TEST(LabelSelector, LabelsAndExpressionsAreAnded) {
  const auto s = sel(
      R"({"matchLabels":{"a":"1"},"matchExpressions":[{"key":"b","operator":"DoesNotExist"}]})");
  EXPECT_TRUE(s.matches({{"a", "1"}}));
  EXPECT_FALSE(s.matches({{"a", "1"}, {"b", "x"}}));
  EXPECT_EQ(s.to_string(), "a=1,!b");
}

TEST(LabelSelector, ValuesAreCaseSensitive) {
  EXPECT_FALSE(sel(R"({"matchLabels":{"m":"ambient"}})").matches({{"m", "Ambient"}}));
}

struct BadSelector {
  const char* json;
  const char* key;
};

class BadSelectors : public ::testing::TestWithParam<BadSelector> {};

TEST_P(BadSelectors, NameTheField) {
  try {
    sel(GetParam().json);
    FAIL() << "accepted " << GetParam().json;
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.key(), GetParam().key) << e.what();
    EXPECT_EQ(e.kind(), ConfigError::Kind::kInvalid);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Validation, BadSelectors,
    ::testing::Values(
        BadSelector{R"([])", "s"}, BadSelector{R"({"matchLabels":[]})", "s.matchLabels"},
        BadSelector{R"({"matchLabels":{"a":1}})", "s.matchLabels.a"},
        BadSelector{R"({"matchExpressions":{}})", "s.matchExpressions"},
        BadSelector{R"({"matchExpressions":[{"operator":"In","values":["a"]}]})",
                    "s.matchExpressions[0].key"},
        BadSelector{R"({"matchExpressions":[{"key":"k","operator":"in","values":["a"]}]})",
                    "s.matchExpressions[0].operator"},
        BadSelector{R"({"matchExpressions":[{"key":"k","operator":"In"}]})",
                    "s.matchExpressions[0].values"},
        BadSelector{R"({"matchExpressions":[{"key":"k","operator":"Exists","values":["a"]}]})",
                    "s.matchExpressions[0].values"},
        BadSelector{R"({"matchExpressions":[{"key":"k","operator":"NotIn","values":[1]}]})",
                    "s.matchExpressions[0].values[0]"}));

}  // namespace
}  // namespace ambient::config
