// CLI flag parsing (orchestrator/commands/cli_args.h): unknown flags, missing values and malformed numbers are
// InputErrors naming the flag.
#include <gtest/gtest.h>

#include "orchestrator/commands/cli_args.h"
#include "segments/core/errors.h"

namespace segpipe {
namespace {

const std::set<std::string> kValues = {"--model", "--seed", "--temperature", "--golden"};
const std::set<std::string> kSwitches = {"--chat"};

CliArgs parse(std::vector<std::string> a) { return CliArgs("generate", a, kValues, kSwitches); }

void expect_error(const std::function<void()>& fn, const std::string& needle) {
  try {
    fn();
    ADD_FAILURE() << "expected InputError naming " << needle;
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(CliArgs, ValuesSwitchesAndPositionals) {
  CliArgs a = parse({"pos1", "--model", "m", "--seed=42", "--chat", "--golden", "a", "--golden=b", "pos2"});
  EXPECT_EQ(a.get("--model"), "m");
  EXPECT_EQ(a.get_int("--seed", 0, 0, 100), 42);
  EXPECT_TRUE(a.has("--chat"));
  EXPECT_FALSE(a.has("--temperature"));
  EXPECT_EQ(a.get_double("--temperature", 0.7, 0, 10), 0.7);
  EXPECT_EQ(a.all("--golden"), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(a.positional(), (std::vector<std::string>{"pos1", "pos2"}));
  EXPECT_EQ(a.get_or("--missing", "d"), "d");
  EXPECT_TRUE(parse({"--help"}).help());
  // A value may itself start with dashes when given after the flag.
  EXPECT_EQ(parse({"--model", "--chat"}).get("--model"), "--chat");
}

TEST(CliArgs, UnknownFlag) {
  expect_error([] { parse({"--modle", "m"}); }, "--modle");
  expect_error([] { parse({"--model=m", "--nope=1"}); }, "--nope");
}

TEST(CliArgs, MissingValue) {
  expect_error([] { parse({"--model"}); }, "--model");
  expect_error([] { parse({"--chat", "--seed"}); }, "--seed");
}

TEST(CliArgs, SwitchWithValue) { expect_error([] { parse({"--chat=yes"}); }, "--chat"); }

TEST(CliArgs, BadInteger) {
  for (const char* v : {"abc", "12x", "", "1.5", "99999999999999999999999", "0x10"})
    expect_error([&] { parse({"--seed", v}).get_int("--seed", 0, 0, 1000); }, "--seed");
  expect_error([] { parse({"--seed", "1001"}).get_int("--seed", 0, 0, 1000); }, "--seed");
  expect_error([] { parse({"--seed", "-1"}).get_int("--seed", 0, 0, 1000); }, "--seed");
}

TEST(CliArgs, BadDouble) {
  for (const char* v : {"warm", "", "nan", "1e999", "-0.5", "11"})
    expect_error([&] { parse({"--temperature", v}).get_double("--temperature", 0, 0, 10); }, "--temperature");
}

TEST(CliArgs, RepeatedSingleValueFlag) {
  expect_error([] { parse({"--model", "a", "--model", "b"}).get("--model"); }, "--model");
}

TEST(CliArgs, IdList) {
  EXPECT_EQ(parse_id_list("1 2,3\t4\n5", "--tokens"), (std::vector<int32_t>{1, 2, 3, 4, 5}));
  EXPECT_TRUE(parse_id_list("  ", "--tokens").empty());
  for (const char* t : {"1 x", "-1", "2147483648", "1.0"}) expect_error([&] { parse_id_list(t, "--tokens"); }, "--tokens");
}

}  // namespace
}  // namespace segpipe
