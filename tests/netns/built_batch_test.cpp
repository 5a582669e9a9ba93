// The nf_tables batches netns builds itself instead of asking libnftables (the host probe set's
// element changes, the removal of our tables): the messages must be the ones libnftables sends
// for the same commands, so the kernel state cannot differ. Recorded in a throwaway netns.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>

#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "config/constants.h"
#include "netns/host_probe.h"
#include "netns/netns.h"
#include "netns/nft.h"
#include "netns/nft_batch.h"
#include "netns/redirect.h"
#include "tests/netns/netns_test_env.h"

namespace ambient::netns {
namespace {

// An attribute tree as text ("type:value" leaves, "type[...]" nests), skipping padding (which
// libnftables leaves uninitialised) and the top-level attributes in `skip`.
std::string tree(std::string_view attrs, const std::set<std::uint16_t>& skip = {}) {
  std::string out;
  std::size_t at = 0;
  while (at + sizeof(nlattr) <= attrs.size()) {
    nlattr a{};
    std::memcpy(&a, attrs.data() + at, sizeof a);
    if (a.nla_len < sizeof a || a.nla_len > attrs.size() - at) return out + " <malformed>";
    const auto type = static_cast<std::uint16_t>(a.nla_type & NLA_TYPE_MASK);
    const auto value = attrs.substr(at + NLA_HDRLEN, a.nla_len - NLA_HDRLEN);
    if (!skip.contains(type)) {
      if (a.nla_type & NLA_F_NESTED) {
        out += std::to_string(type) + "[" + tree(value) + "] ";
      } else {
        out += std::to_string(type) + ":" + testing::PrintToString(std::string(value)) + " ";
      }
    }
    at += NLA_ALIGN(a.nla_len);
  }
  return out;
}

// The nf_tables messages between BATCH_BEGIN and BATCH_END: type, flags without the ack (which
// a sender chooses), nfgenmsg and attribute tree, minus the set's transaction id
// (NFTA_SET_ELEM_LIST_SET_ID: only for a set created in the same batch, which ours never is).
std::vector<std::string> transaction_messages(const std::vector<std::string>& payloads) {
  std::vector<std::string> out;
  bool inside = false;
  for (const auto& p : payloads) {
    std::size_t at = 0;
    while (at + sizeof(nlmsghdr) <= p.size()) {
      nlmsghdr h{};
      std::memcpy(&h, p.data() + at, sizeof h);
      if (h.nlmsg_len < sizeof h || h.nlmsg_len > p.size() - at) break;
      if (h.nlmsg_type == NFNL_MSG_BATCH_BEGIN) {
        inside = true;
      } else if (h.nlmsg_type == NFNL_MSG_BATCH_END) {
        inside = false;
      } else if (inside) {
        const std::string_view m = std::string_view(p).substr(at, h.nlmsg_len);
        const auto gen = m.substr(NLMSG_HDRLEN, sizeof(nfgenmsg));
        out.push_back(std::to_string(h.nlmsg_type) + " flags " +
                      std::to_string(h.nlmsg_flags & ~NLM_F_ACK) + " " +
                      testing::PrintToString(std::string(gen)) + " " +
                      tree(m.substr(NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(nfgenmsg))),
                           {NFTA_SET_ELEM_LIST_SET_ID}));
      }
      at += NLMSG_ALIGN(h.nlmsg_len);
    }
  }
  return out;
}

std::string key_of(const char* ip) {
  unsigned char b[16];
  const bool v6 = std::strchr(ip, ':') != nullptr;
  inet_pton(v6 ? AF_INET6 : AF_INET, ip, b);
  return std::string(reinterpret_cast<const char*>(b), v6 ? 16 : 4);
}

// The fast path writes elements with a netlink batch of its own: it must be exactly what
// libnftables sends for the same command, so the kernel state (and Istio's, which uses the same
// comments) cannot differ.
TEST(BuiltBatch, ElementChangesAreWhatLibnftablesSends) {
  AMBIENT_REQUIRE_ROOT();
  struct Case {
    std::string command;
    nft::SetElementOp op;
  };
  const std::string t(contract::kNatTable), s4(contract::kProbeSetV4), s6(contract::kProbeSetV6);
  const std::vector<Case> cases = {
      {"add element inet " + t + " " + s4 + " { 10.1.2.3 comment \"pod-uid-1\" }",
       {true, s4, key_of("10.1.2.3"), "pod-uid-1"}},
      {"add element inet " + t + " " + s6 + " { fd00::1:2 comment \"0f1e2d3c-aaaa-bbbb\" }",
       {true, s6, key_of("fd00::1:2"), "0f1e2d3c-aaaa-bbbb"}},
      {"delete element inet " + t + " " + s4 + " { 10.1.2.3 }",
       {false, s4, key_of("10.1.2.3"), ""}},
      {"delete element inet " + t + " " + s6 + " { fd00::1:2 }",
       {false, s6, key_of("fd00::1:2"), ""}},
  };
  run_in_scratch_netns([&] {
    nft::run(HostProbeSnat::render_base({}), "base");
    for (const auto& c : cases) {
      const auto theirs = transaction_messages(nft::run_recorded(c.command, c.command));
      ASSERT_EQ(theirs.size(), 1u) << c.command << ": libnftables sent no single message "
                                   << "(is sendmsg() interposed in this binary?)";
      const auto ours = transaction_messages({nft::set_elements_batch(t, {c.op}).bytes});
      ASSERT_EQ(ours.size(), 1u);
      EXPECT_EQ(ours[0], theirs[0]) << c.command;
    }
  });
}

TEST(BuiltBatch, RemovalIsWhatLibnftablesSendsAndWorksWithOrWithoutTables) {
  AMBIENT_REQUIRE_ROOT();
  const std::vector<std::string_view> tables = {contract::kNatTable, contract::kMangleTable,
                                                contract::kRawTable};
  run_in_scratch_netns([&] {
    const auto theirs = transaction_messages(nft::run_recorded(render_removal(), "removal"));
    const auto ours = transaction_messages({nft::remove_tables_batch(tables).bytes});
    ASSERT_EQ(theirs.size(), 6u) << "is sendmsg() interposed in this binary?";
    EXPECT_EQ(ours, theirs);
    nft::replay_here(nft::remove_tables_batch(tables));  // nothing there: still fine
    RedirectOptions o;
    o.ipv6 = true;
    nft::run(RedirectPlan(o).render(), "apply");
    ASSERT_FALSE(nft::run("list tables", "list").empty());
    nft::replay_here(nft::remove_tables_batch(tables));
    EXPECT_EQ(nft::run("list tables", "list"), "");
  });
}

}  // namespace
}  // namespace ambient::netns
