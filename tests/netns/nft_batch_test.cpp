// The recorded-batch checks of netns/nft_batch.h on hand-built netlink bytes (no privileges): what
// is kept and renumbered, and every recording that must not be replayed in another netns.
#include "netns/nft_batch.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "netns/error.h"

namespace ambient::netns::nft {
namespace {

struct A {
  std::uint16_t type;
  std::string value;  // raw bytes (strings with their NUL)
};

std::string str(const std::string& s) {
  return s + '\0';
}

// One nfnetlink message: header, nfgenmsg, attributes, padded to 4 bytes.
std::string message(std::uint16_t type, std::uint16_t flags, std::uint32_t seq, std::uint8_t family,
                    const std::vector<A>& attrs = {}, std::uint16_t res_id = 0) {
  std::string body;
  nfgenmsg g{};
  g.nfgen_family = family;
  g.version = NFNETLINK_V0;
  g.res_id = htons(res_id);
  body.append(reinterpret_cast<const char*>(&g), sizeof g);
  for (const auto& a : attrs) {
    nlattr h{};
    h.nla_len = static_cast<std::uint16_t>(NLA_HDRLEN + a.value.size());
    h.nla_type = a.type;
    body.append(reinterpret_cast<const char*>(&h), sizeof h);
    body += a.value;
    body.append(NLA_ALIGN(h.nla_len) - h.nla_len, '\0');
  }
  nlmsghdr n{};
  n.nlmsg_len = static_cast<std::uint32_t>(NLMSG_HDRLEN + body.size());
  n.nlmsg_type = type;
  n.nlmsg_flags = flags;
  n.nlmsg_seq = seq;
  n.nlmsg_pid = 4242;
  std::string out(reinterpret_cast<const char*>(&n), sizeof n);
  out += body;
  out.append(NLMSG_ALIGN(n.nlmsg_len) - n.nlmsg_len, '\0');
  return out;
}

constexpr std::uint16_t nft(int op) {
  return static_cast<std::uint16_t>((NFNL_SUBSYS_NFTABLES << 8) | op);
}

std::string begin(std::uint32_t seq = 100) {
  return message(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, seq, AF_UNSPEC, {}, NFNL_SUBSYS_NFTABLES);
}
std::string end(std::uint32_t seq = 200) {
  return message(NFNL_MSG_BATCH_END, NLM_F_REQUEST, seq, AF_UNSPEC, {}, NFNL_SUBSYS_NFTABLES);
}
// (With an ack request, which the batch drops: only its last message asks for one.)
std::string add_table(const std::string& t, std::uint32_t seq = 101) {
  return message(nft(NFT_MSG_NEWTABLE), NLM_F_REQUEST | NLM_F_ACK, seq, NFPROTO_INET,
                 {{NFTA_TABLE_NAME, str(t)}, {NFTA_TABLE_FLAGS, std::string(4, '\0')}});
}
std::string flush_table(const std::string& t, std::uint32_t seq = 102) {
  return message(nft(NFT_MSG_DELRULE), NLM_F_REQUEST, seq, NFPROTO_INET,
                 {{NFTA_RULE_TABLE, str(t)}});
}
std::string add_chain(const std::string& t, const std::string& c, std::uint32_t seq = 103) {
  return message(nft(NFT_MSG_NEWCHAIN), NLM_F_REQUEST | NLM_F_CREATE, seq, NFPROTO_INET,
                 {{NFTA_CHAIN_TABLE, str(t)}, {NFTA_CHAIN_NAME, str(c)}});
}
std::string add_rule(const std::string& t, const std::string& c, std::vector<A> extra = {},
                     std::uint16_t flags = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_APPEND) {
  std::vector<A> attrs = {{NFTA_RULE_TABLE, str(t)}, {NFTA_RULE_CHAIN, str(c)}};
  for (auto& a : extra) attrs.push_back(std::move(a));
  return message(nft(NFT_MSG_NEWRULE), flags, 104, NFPROTO_INET, attrs);
}
std::string delete_table(const std::string& t) {
  return message(nft(NFT_MSG_DELTABLE), NLM_F_REQUEST, 105, NFPROTO_INET,
                 {{NFTA_TABLE_NAME, str(t)}});
}
// A cache query as libnftables sends it before its transaction.
std::string get_gen() {
  return message(nft(NFT_MSG_GETGEN), NLM_F_REQUEST, 7, AF_UNSPEC);
}

std::vector<nlmsghdr> headers_of(const std::string& bytes) {
  std::vector<nlmsghdr> out;
  std::size_t at = 0;
  while (at + sizeof(nlmsghdr) <= bytes.size()) {
    nlmsghdr h{};
    std::memcpy(&h, bytes.data() + at, sizeof h);
    out.push_back(h);
    at += NLMSG_ALIGN(h.nlmsg_len);
  }
  EXPECT_EQ(at, bytes.size());
  return out;
}

// The recording must be refused, with `why` in the reason.
void expect_refused(const std::vector<std::string>& recording, const std::string& why) {
  try {
    from_recording(recording);
    ADD_FAILURE() << "accepted a recording that should be refused for: " << why;
  } catch (const NetnsError& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Nftables);
    EXPECT_NE(std::string(e.what()).find(why), std::string::npos) << e.what();
  }
}

TEST(NftBatch, KeepsTheTransactionNumberedWithAnAckForTheLastMessage) {
  const std::string rule = add_rule("nat", "output");
  const Batch b = from_recording(
      {get_gen() + get_gen(), begin() + add_table("nat") + flush_table("nat") +
                                  add_chain("nat", "output") + rule + delete_table("raw") + end()});
  EXPECT_EQ(b.messages,
            (std::vector<std::string>{"add table inet nat", "flush table inet nat",
                                      "add chain inet nat output", "add rule inet nat output",
                                      "delete table inet raw"}));
  const auto h = headers_of(b.bytes);
  ASSERT_EQ(h.size(), 7u);
  EXPECT_EQ(h.front().nlmsg_type, NFNL_MSG_BATCH_BEGIN);
  EXPECT_EQ(h.back().nlmsg_type, NFNL_MSG_BATCH_END);
  for (std::size_t i = 0; i < h.size(); ++i) {
    EXPECT_EQ(h[i].nlmsg_seq, i) << i;
    EXPECT_EQ(h[i].nlmsg_pid, 0u) << i;
    const bool last_message = i + 2 == h.size();
    EXPECT_EQ((h[i].nlmsg_flags & NLM_F_ACK) != 0, last_message) << i;
  }
  EXPECT_EQ(h[4].nlmsg_flags, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_APPEND);
  EXPECT_EQ(h[5].nlmsg_flags, NLM_F_REQUEST | NLM_F_ACK);
  // Everything after the header is the recorded message, byte for byte.
  std::size_t rule_at = 0;
  for (std::size_t i = 0; i < 4; ++i) rule_at += NLMSG_ALIGN(h[i].nlmsg_len);
  EXPECT_EQ(b.bytes.substr(rule_at + sizeof(nlmsghdr), rule.size() - sizeof(nlmsghdr)),
            rule.substr(sizeof(nlmsghdr)));
}

TEST(NftBatch, ATransactionSplitOverSeveralSendsIsOne) {
  const Batch b = from_recording({begin() + add_table("nat"), add_chain("nat", "output"), end()});
  EXPECT_EQ(b.messages.size(), 2u);
}

TEST(NftBatch, ItsOwnBeginReplacesTheRecordedOneAndAGenerationIdGoes) {
  // A generation id would make the kernel refuse the batch in any other netns (ERESTART).
  const std::string with_genid =
      message(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, 9, AF_UNSPEC,
              {{NFNL_BATCH_GENID, std::string("\0\0\0\x2a", 4)}}, NFNL_SUBSYS_NFTABLES);
  const Batch b = from_recording({with_genid + add_table("nat") + end()});
  const auto h = headers_of(b.bytes);
  ASSERT_EQ(h.size(), 3u);
  EXPECT_EQ(h[0].nlmsg_len, NLMSG_LENGTH(sizeof(nfgenmsg)));
  nfgenmsg g{};
  std::memcpy(&g, b.bytes.data() + NLMSG_HDRLEN, sizeof g);
  EXPECT_EQ(ntohs(g.res_id), NFNL_SUBSYS_NFTABLES);
}

TEST(NftBatch, PaddingIsZeroedAtEveryLevel) {
  // libnftables leaves whatever its buffer held in attribute padding.
  std::string inner;
  nlattr ih{};
  ih.nla_len = NLA_HDRLEN + 5;
  ih.nla_type = 1;
  inner.append(reinterpret_cast<const char*>(&ih), sizeof ih);
  inner += "meta";
  inner += '\0';
  inner.append(3, '\xcc');
  std::string rule =
      add_rule("natx", "output",
               {{static_cast<std::uint16_t>(NFTA_RULE_EXPRESSIONS | NLA_F_NESTED), inner}});
  const auto table = rule.find("natx");
  ASSERT_NE(table, std::string::npos);
  rule.replace(table + 5, 3, "\xcc\xcc\xcc");  // after "natx\0", 3 bytes to the next attribute
  const Batch b = from_recording({begin() + rule + end()});
  EXPECT_EQ(b.bytes.find('\xcc'), std::string::npos);
  EXPECT_NE(b.bytes.find(std::string("natx\0\0\0\0", 8)), std::string::npos);
  EXPECT_NE(b.bytes.find(std::string("meta\0\0\0\0", 8)), std::string::npos);
  EXPECT_EQ(b.messages, std::vector<std::string>{"add rule inet natx output"});
}

TEST(NftBatch, NothingRecordedIsRefused) {
  expect_refused({}, "no transaction");
  expect_refused({get_gen()}, "no transaction");
}

TEST(NftBatch, AnIncompleteOrRepeatedTransactionIsRefused) {
  expect_refused({begin() + add_table("nat")}, "no BATCH_END");
  expect_refused({end() + begin() + add_table("nat") + end()}, "BATCH_END without");
  expect_refused({begin() + end()}, "empty transaction");
  expect_refused({begin() + add_table("a") + end(), begin() + add_table("b") + end()},
                 "more than one transaction");
}

TEST(NftBatch, TruncatedOrMalformedBytesAreRefused) {
  const std::string whole = begin() + add_table("nat") + end();
  expect_refused({whole.substr(0, whole.size() - 3)}, "claims");
  expect_refused({whole + std::string(5, '\0')}, "truncated netlink header");
  std::string bad_attr = add_table("nat");
  // The first attribute's length now runs past the message.
  const std::uint16_t too_long = 200;
  std::memcpy(bad_attr.data() + NLMSG_HDRLEN + sizeof(nfgenmsg), &too_long, sizeof too_long);
  expect_refused({begin() + bad_attr + end()}, "malformed attribute");
}

TEST(NftBatch, OnlyAddsAndDeletesOfTablesChainsAndRulesAreReplayed) {
  const std::string set = message(nft(NFT_MSG_NEWSET), NLM_F_REQUEST | NLM_F_CREATE, 3,
                                  NFPROTO_INET, {{NFTA_SET_TABLE, str("nat")}});
  expect_refused({begin() + set + end()}, "not an add or delete");
  const std::string query_inside = get_gen();
  expect_refused({begin() + query_inside + end()}, "not an add or delete");
  const std::string other_subsystem =
      message(static_cast<std::uint16_t>(NFNL_SUBSYS_IPSET << 8), NLM_F_REQUEST, 3, NFPROTO_IPV4);
  expect_refused({begin() + other_subsystem + end()}, "is not nf_tables");
  // Outside the transaction only cache queries are tolerated (and dropped).
  expect_refused({add_table("nat") + begin() + add_table("nat") + end()},
                 "outside the transaction");
}

TEST(NftBatch, KernelHandlesAndPositionsAreRefused) {
  const std::string handle(8, '\x01');
  expect_refused({begin() + add_rule("nat", "output", {{NFTA_RULE_HANDLE, handle}}) + end()},
                 "rule by its kernel handle");
  expect_refused({begin() + add_rule("nat", "output", {{NFTA_RULE_POSITION, handle}}) + end()},
                 "rule position");
  expect_refused({begin() +
                  message(nft(NFT_MSG_DELTABLE), NLM_F_REQUEST, 3, NFPROTO_INET,
                          {{NFTA_TABLE_HANDLE, handle}}) +
                  end()},
                 "table by its kernel handle");
  expect_refused({begin() +
                  message(nft(NFT_MSG_NEWCHAIN), NLM_F_REQUEST, 3, NFPROTO_INET,
                          {{NFTA_CHAIN_TABLE, str("nat")}, {NFTA_CHAIN_HANDLE, handle}}) +
                  end()},
                 "chain by its kernel handle");
}

TEST(NftBatch, EchoAndReplaceRequestsAreRefused) {
  expect_refused(
      {begin() + add_rule("nat", "output", {}, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_ECHO) + end()},
      "message flags");
  expect_refused({begin() + add_rule("nat", "output", {}, NLM_F_REQUEST | NLM_F_REPLACE) + end()},
                 "message flags");
}

// Element batches (the host probe set's fast path): one message per op between BEGIN and END,
// the last one acked; a bad key or set is refused before anything is sent.
TEST(NftBatch, ElementBatchesAreNumberedAndRefuseBadElements) {
  const Batch b = set_elements_batch("t", {{true, "s4", std::string(4, '\x0a'), "uid-1"},
                                           {false, "s6", std::string(16, '\x01'), ""}});
  ASSERT_EQ(b.messages.size(), 2u);
  EXPECT_EQ(b.messages[0], "add element inet t s4 { 10.10.10.10 }");
  EXPECT_EQ(b.messages[1], "delete element inet t s6 { 101:101:101:101:101:101:101:101 }");
  std::vector<nlmsghdr> headers;
  for (std::size_t at = 0; at + sizeof(nlmsghdr) <= b.bytes.size();) {
    nlmsghdr h{};
    std::memcpy(&h, b.bytes.data() + at, sizeof h);
    ASSERT_GE(h.nlmsg_len, sizeof h);
    headers.push_back(h);
    at += NLMSG_ALIGN(h.nlmsg_len);
  }
  ASSERT_EQ(headers.size(), 4u);
  EXPECT_EQ(headers[0].nlmsg_type, NFNL_MSG_BATCH_BEGIN);
  EXPECT_EQ(headers[1].nlmsg_type, (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWSETELEM);
  EXPECT_EQ(headers[2].nlmsg_type, (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_DELSETELEM);
  EXPECT_EQ(headers[3].nlmsg_type, NFNL_MSG_BATCH_END);
  for (std::uint32_t i = 0; i < headers.size(); ++i) EXPECT_EQ(headers[i].nlmsg_seq, i);
  EXPECT_FALSE(headers[1].nlmsg_flags & NLM_F_ACK);
  EXPECT_TRUE(headers[2].nlmsg_flags & NLM_F_ACK);
  EXPECT_TRUE(headers[1].nlmsg_flags & NLM_F_CREATE);
  EXPECT_THROW(set_elements_batch("t", {{true, "s4", std::string(5, '\0'), ""}}), NetnsError);
  EXPECT_THROW(set_elements_batch("t", {{true, "", std::string(4, '\0'), ""}}), NetnsError);
  EXPECT_THROW(set_elements_batch("", {{true, "s", std::string(4, '\0'), ""}}), NetnsError);
  EXPECT_THROW(set_elements_batch("t", {{true, "s", std::string(4, '\0'), std::string(300, 'x')}}),
               NetnsError);
}

}  // namespace
}  // namespace ambient::netns::nft
