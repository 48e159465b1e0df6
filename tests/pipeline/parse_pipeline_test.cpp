// The schema checks of parse_pipeline_*: types, allowed keys, values that need no model. Every error
// is compared in full, position included, because the message is the interface a user sees.
#include <stdlib.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "orchestrator/pipeline/pipeline.h"
#include "tests/pipeline/pipeline_examples.h"

namespace segpipe {
namespace {

std::string parse_error(const std::string& yaml) {
  try {
    parse_pipeline_string(yaml, "p.yaml", "/pipes");
  } catch (const InputError& e) {
    return e.what();
  }
  return "(no error)";
}

// The valid example with one segment's body replaced: most tests only need one bad key.
std::string with_segment(const std::string& body) {
  return "version: 1\nmodel: m\nsegments:\n  - name: early\n" + body;
}

TEST(ParsePipeline, DocExampleParses) {
  PipelineSpec s = parse_pipeline_string(test::kDocExample, "doc.yaml", "/work/pipelines");
  EXPECT_EQ(s.source, "doc.yaml");
  EXPECT_EQ(s.model, "../models/tiny-omni");
  EXPECT_EQ(s.model_dir, "/work/models/tiny-omni");  // relative to the YAML file's folder
  EXPECT_EQ(s.tokenizer_dir, "/work/models/tiny-omni");
  EXPECT_EQ(s.defaults.threads, 2);
  EXPECT_EQ(s.transport, Transport::shm);
  ASSERT_EQ(s.segments.size(), 6u);
  EXPECT_EQ(s.segments[2].name, "late");
  EXPECT_EQ(s.segments[2].kind, SegmentKind::layers);
  EXPECT_EQ(s.segments[2].layers, (IndexRange{24, 47}));
  EXPECT_EQ(s.segments[2].placement, ExpertPlacement::banks);
  EXPECT_EQ(s.segments[4].experts, (IndexRange{64, 127}));
  // Marks are 1-based and point at keys: `layers` of 'late' is on line 17, column 5.
  EXPECT_EQ(s.segments[2].marks.keys.at("layers").line, 17);
  EXPECT_EQ(s.segments[2].marks.keys.at("layers").column, 5);
  ASSERT_TRUE(s.generation);
  EXPECT_EQ(s.generation->max_new_tokens, 64);
  EXPECT_EQ(s.generation->top_p, 1.0);
  EXPECT_FALSE(s.restart);
  EXPECT_FALSE(s.timeout_ms);
  EXPECT_FALSE(s.gpu_kernels);
  EXPECT_FALSE(s.gpu_memory);
}

TEST(ParsePipeline, AllOptionalKeys) {
  PipelineSpec s = parse_pipeline_string(test::kTinyFull, "t.yaml", "rel/dir");
  EXPECT_EQ(s.model_dir, "rel/dir/tiny");
  EXPECT_EQ(s.tokenizer_dir, "/opt/tokenizers/qwen3");  // absolute paths stay as written
  EXPECT_EQ(s.defaults.device, (Device{Device::Type::cuda, 0}));
  EXPECT_EQ(s.defaults.dtype, ComputeDType::bfloat16);
  EXPECT_EQ(s.transport, Transport::inproc);
  EXPECT_EQ(s.restart, true);
  EXPECT_EQ(s.timeout_ms, 2500);
  EXPECT_EQ(s.gpu_kernels, GpuKernels::portable);
  EXPECT_EQ(s.gpu_memory, GpuMemory::unified);
  EXPECT_EQ(s.segments[0].max_resident_experts, 2);
  EXPECT_EQ(s.segments[0].settings.device, (Device{Device::Type::cuda, 1}));
  EXPECT_EQ(s.segments[2].placement, ExpertPlacement::local);
  EXPECT_EQ(s.generation->temperature, 0.7);
  EXPECT_EQ(s.generation->seed, 18446744073709551615ull);
}

TEST(ParsePipeline, FileResolvesPathsAgainstItsFolder) {
  std::string tmpl = (std::filesystem::temp_directory_path() / "segpipe-pipeline-test-XXXXXX").string();
  ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
  const std::filesystem::path dir = tmpl;
  std::filesystem::create_directories(dir / "pipes");
  std::string path = (dir / "pipes" / "p.yaml").string();
  std::ofstream(path) << "version: 1\nmodel: ../models/m\nsegments: []\n";
  try {
    parse_pipeline_file(path);
    FAIL() << "expected an error";
  } catch (const InputError& e) {
    EXPECT_EQ(std::string(e.what()), path + ":3:11: 'segments' must be a non-empty list of segments");
  }
  std::ofstream(path) << "version: 1\nmodel: ../models/m\nsegments: [{name: e, kind: embeddings}]\n";
  PipelineSpec s = parse_pipeline_file(path);
  EXPECT_EQ(s.model_dir, (dir / "models" / "m").string());
  std::filesystem::remove_all(dir);
}

TEST(ParsePipeline, MissingFile) {
  EXPECT_THROW(
      {
        try {
          parse_pipeline_file("/nonexistent/p.yaml");
        } catch (const InputError& e) {
          EXPECT_EQ(std::string(e.what()), "/nonexistent/p.yaml: cannot open pipeline file (No such file or directory)");
          throw;
        }
      },
      InputError);
}

TEST(ParsePipeline, Document) {
  EXPECT_EQ(parse_error(""), "p.yaml:1:1: empty pipeline file (expected 'version: 1', 'model' and 'segments')");
  EXPECT_EQ(parse_error("- a\n- b\n"), "p.yaml:1:1: a pipeline file must be a mapping of keys to values");
  EXPECT_EQ(parse_error("version: 1\nmodel: [a\n"), "p.yaml:3:1: YAML syntax error: end of sequence flow not found");
  EXPECT_EQ(parse_error("version: 1\n---\nversion: 1\n"),
            "p.yaml:2:1: a pipeline file holds one YAML document, found a second one");
  // yaml-cpp alone would loop forever on a stray flow token (found by the fuzzer).
  EXPECT_EQ(parse_error(","), "p.yaml:1:1: YAML syntax error: unexpected ','");
  EXPECT_EQ(parse_error("version: 1\nversion: 1\n"), "p.yaml:2:1: duplicate key 'version' (first at line 1)");
  EXPECT_EQ(parse_error("version: 1\n[a]: 1\n"), "p.yaml:2:1: keys must be plain words");
}

TEST(ParsePipeline, Version) {
  EXPECT_EQ(parse_error("model: m\n"), "p.yaml:1:1: missing key 'version' (this reader knows version 1)");
  EXPECT_EQ(parse_error("version: 2\nmodel: m\nfuture_key: 1\n"),
            "p.yaml:1:10: 'version' is 2, this reader knows version 1");
  EXPECT_EQ(parse_error("version: \"1\"\n"), "p.yaml:1:10: 'version' must be the integer 1, got '1'");
  EXPECT_EQ(parse_error("version: 1.0\n"), "p.yaml:1:10: 'version' must be the integer 1, got '1.0'");
}

TEST(ParsePipeline, TopLevelKeys) {
  EXPECT_EQ(parse_error("version: 1\nmodel: m\nsegmnets: []\n"),
            "p.yaml:3:1: unknown top-level key 'segmnets' (did you mean 'segments'?)");
  EXPECT_EQ(parse_error("version: 1\nmodel: m\nwhatever: 1\n"), "p.yaml:3:1: unknown top-level key 'whatever'");
  EXPECT_EQ(parse_error("version: 1\nsegments: []\n"), "p.yaml:1:1: missing key 'model' (the checkpoint folder)");
  EXPECT_EQ(parse_error("version: 1\nmodel: ''\n"), "p.yaml:2:8: 'model' must not be empty");
  EXPECT_EQ(parse_error("version: 1\nmodel: [a]\n"), "p.yaml:2:8: 'model' must be a string");
  EXPECT_EQ(parse_error("version: 1\nmodel:\n"), "p.yaml:2:1: 'model' must be a string");
  EXPECT_EQ(parse_error("version: 1\nmodel: m\n"), "p.yaml:1:1: missing key 'segments'");
  EXPECT_EQ(parse_error("version: 1\nmodel: m\nsegments: {a: 1}\n"),
            "p.yaml:3:11: 'segments' must be a non-empty list of segments");
  EXPECT_EQ(parse_error("version: 1\nmodel: m\ntransport: tcp\nsegments: []\n"),
            "p.yaml:3:12: 'transport' must be one of shm | inproc, got 'tcp'");
  EXPECT_EQ(parse_error("version: 1\nmodel: m\ngpu_kernels: wgmma\n"),
            "p.yaml:3:14: 'gpu_kernels' must be one of auto | portable, got 'wgmma'");
  EXPECT_EQ(parse_error("version: 1\nmodel: m\ngpu_memory: host\n"),
            "p.yaml:3:13: 'gpu_memory' must be one of auto | device | unified, got 'host'");
  EXPECT_EQ(parse_error("version: 1\nmodel: m\nrestart: yes\n"),
            "p.yaml:3:10: 'restart' must be true or false, got 'yes'");
  EXPECT_EQ(parse_error("version: 1\nmodel: m\ntimeout_ms: 0\n"),
            "p.yaml:3:13: 'timeout_ms' must be a positive integer (milliseconds), got '0'");
  EXPECT_EQ(parse_error("version: 1\nmodel: m\ntimeout_ms: 1e4\n"),
            "p.yaml:3:13: 'timeout_ms' must be a positive integer (milliseconds), got '1e4'");
}

// gpu_memory and gpu_kernels: every value each takes, and what is not one (a typo, another case, a
// number, a list, empty) is an error naming the key and the allowed values.
TEST(ParsePipeline, GpuMemoryAndGpuKernelsValues) {
  const std::string head = "version: 1\nmodel: m\nsegments:\n  - {name: e, kind: embeddings}\n";
  for (auto [text, want] : {std::pair{"auto", GpuMemory::automatic}, {"device", GpuMemory::device},
                            {"unified", GpuMemory::unified}}) {
    PipelineSpec s = parse_pipeline_string(head + "gpu_memory: " + text + "\n", "p.yaml", "/pipes");
    ASSERT_TRUE(s.gpu_memory) << text;
    EXPECT_EQ(*s.gpu_memory, want) << text;
  }
  for (auto [text, want] : {std::pair{"auto", GpuKernels::automatic}, {"portable", GpuKernels::portable}}) {
    PipelineSpec s = parse_pipeline_string(head + "gpu_kernels: " + text + "\n", "p.yaml", "/pipes");
    ASSERT_TRUE(s.gpu_kernels) << text;
    EXPECT_EQ(*s.gpu_kernels, want) << text;
  }
  for (const char* bad : {"Unified", "automatic", "1", "[unified]", "''", "host"}) {
    const std::string m = parse_error(head + "gpu_memory: " + bad + "\n");
    EXPECT_NE(m.find("p.yaml:5:"), std::string::npos) << bad << ": " << m;
    EXPECT_NE(m.find("'gpu_memory' must be one of auto | device | unified"), std::string::npos) << bad << ": " << m;
  }
  for (const char* bad : {"Portable", "sm90", "0"}) {
    const std::string m = parse_error(head + "gpu_kernels: " + bad + "\n");
    EXPECT_NE(m.find("'gpu_kernels' must be one of auto | portable"), std::string::npos) << bad << ": " << m;
  }
}

TEST(ParsePipeline, Defaults) {
  EXPECT_EQ(parse_error("version: 1\nmodel: m\ndefaults:\n  devce: cpu\n"),
            "p.yaml:4:3: unknown key 'devce' in 'defaults' (did you mean 'device'?)");
  EXPECT_EQ(parse_error("version: 1\nmodel: m\ndefaults: cpu\n"),
            "p.yaml:3:11: 'defaults' must be a mapping of keys to values");
  EXPECT_EQ(parse_error("version: 1\nmodel: m\ndefaults:\n  layers: [0, 1]\n"),
            "p.yaml:4:3: unknown key 'layers' in 'defaults'");
  EXPECT_EQ(parse_error("version: 1\nmodel: m\ndefaults: {device: gpu:0}\n"),
            "p.yaml:3:20: 'device' in 'defaults' must be cpu or cuda:N, got 'gpu:0'");
  EXPECT_EQ(parse_error("version: 1\nmodel: m\ndefaults: {device: cuda}\n"),
            "p.yaml:3:20: 'device' in 'defaults' must be cpu or cuda:N, got 'cuda'");
  EXPECT_EQ(parse_error("version: 1\nmodel: m\ndefaults: {device: 'cuda:-1'}\n"),
            "p.yaml:3:20: 'device' in 'defaults' must be cpu or cuda:N, got 'cuda:-1'");
  EXPECT_EQ(parse_error("version: 1\nmodel: m\ndefaults: {dtype: fp16}\n"),
            "p.yaml:3:19: 'dtype' in 'defaults' must be one of float32 | bfloat16, got 'fp16'");
  EXPECT_EQ(parse_error("version: 1\nmodel: m\ndefaults: {threads: 0}\n"),
            "p.yaml:3:21: 'threads' in 'defaults' must be a positive integer (at most 4096), got '0'");
  EXPECT_EQ(parse_error("version: 1\nmodel: m\ndefaults: {threads: \"2\"}\n"),
            "p.yaml:3:21: 'threads' in 'defaults' must be a positive integer (at most 4096), got '2'");
}

TEST(ParsePipeline, SegmentShape) {
  EXPECT_EQ(parse_error("version: 1\nmodel: m\nsegments: [embed]\n"),
            "p.yaml:3:12: segment #1 must be a mapping of keys to values");
  EXPECT_EQ(parse_error("version: 1\nmodel: m\nsegments:\n  - kind: embeddings\n"),
            "p.yaml:4:5: segment #1 has no 'name'");
  EXPECT_EQ(parse_error("version: 1\nmodel: m\nsegments:\n  - name: early\n    layers: [0, 1]\n"),
            "p.yaml:4:5: segment 'early' has no 'kind' (embeddings | layers | experts | lm_head | audio_encoder | "
            "vision_encoder)");
  EXPECT_EQ(
      parse_error("version: 1\nmodel: m\nsegments:\n  - name: a b\n"),
      "p.yaml:4:11: 'name' in segment #1 must be 1 to 64 letters, digits, '_', '-' or '.', starting with a letter "
      "or digit, got 'a b'");
  EXPECT_EQ(
      parse_error("version: 1\nmodel: m\nsegments:\n  - name: ''\n"),
      "p.yaml:4:11: 'name' in segment #1 must be 1 to 64 letters, digits, '_', '-' or '.', starting with a letter "
      "or digit, got ''");
  EXPECT_EQ(
      parse_error(with_segment("    kind: layer\n")),
      "p.yaml:5:11: 'kind' in segment 'early' must be one of embeddings | layers | experts | lm_head | audio_encoder | "
            "vision_encoder, got 'layer' "
      "(did you mean 'layers'?)");
}

TEST(ParsePipeline, SegmentKeys) {
  EXPECT_EQ(parse_error(with_segment("    kind: layers\n    layers: [0, 1]\n    devce: cpu\n")),
            "p.yaml:7:5: unknown key 'devce' in segment 'early' (did you mean 'device'?)");
  EXPECT_EQ(
      parse_error(with_segment("    kind: embeddings\n    layers: [0, 1]\n")),
      "p.yaml:6:5: key 'layers' is not allowed in embeddings segment 'early' (only in layers and experts segments)");
  EXPECT_EQ(parse_error(with_segment("    kind: lm_head\n    max_resident_experts: 2\n")),
            "p.yaml:6:5: key 'max_resident_experts' is not allowed in lm_head segment 'early' (only in layers and "
            "experts segments)");
  EXPECT_EQ(parse_error(with_segment("    kind: layers\n    kind: layers\n")),
            "p.yaml:6:5: duplicate key 'kind' in segment #1 (first at line 5)");
  EXPECT_EQ(parse_error(with_segment("    kind: layers\n")),
            "p.yaml:4:5: layers segment 'early' has no 'layers: [first, last]'");
  EXPECT_EQ(parse_error(with_segment("    kind: experts\n    layers: [0, 1]\n")),
            "p.yaml:4:5: experts segment 'early' has no 'experts: [first, last]'");
  EXPECT_EQ(parse_error(with_segment("    kind: layers\n    layers: [0, 1]\n    max_resident_experts: 0\n")),
            "p.yaml:7:27: 'max_resident_experts' in segment 'early' must be a positive integer, got '0'");
}

TEST(ParsePipeline, Ranges) {
  auto layers = [](const std::string& value) {
    return parse_error(with_segment("    kind: layers\n    layers: " + value + "\n"));
  };
  EXPECT_EQ(layers("[0]"), "p.yaml:6:13: 'layers' in segment 'early' must be [first, last]: two integers, inclusive");
  EXPECT_EQ(layers("3"), "p.yaml:6:13: 'layers' in segment 'early' must be [first, last]: two integers, inclusive");
  EXPECT_EQ(layers("[0, 1, 2]"),
            "p.yaml:6:13: 'layers' in segment 'early' must be [first, last]: two integers, inclusive");
  EXPECT_EQ(layers("[3, 1]"), "p.yaml:6:13: 'layers' in segment 'early' is [3, 1]: first must not be after last");
  EXPECT_EQ(layers("[-1, 2]"),
            "p.yaml:6:14: 'layers' in segment 'early' must be [first, last]: two integers >= 0, got '-1'");
  EXPECT_EQ(layers("[0, 1.5]"),
            "p.yaml:6:17: 'layers' in segment 'early' must be [first, last]: two integers >= 0, got '1.5'");
  EXPECT_EQ(layers("[0, 99999999999]"),
            "p.yaml:6:17: 'layers' in segment 'early' must be [first, last]: two integers >= 0, got '99999999999'");
  EXPECT_EQ(layers("[0, [1]]"), "p.yaml:6:17: 'layers' in segment 'early' must be [first, last]: two integers >= 0");

  EXPECT_EQ(parse_error(with_segment("    kind: layers\n    layers: [0, 1]\n    experts: [0, 3]\n")),
            "p.yaml:7:14: 'experts' in layers segment 'early' must be local or banks ([first, last] ranges belong to "
            "experts segments)");
  EXPECT_EQ(
      parse_error(with_segment("    kind: layers\n    layers: [0, 1]\n    experts: bank\n")),
      "p.yaml:7:14: 'experts' in segment 'early' must be one of local | banks, got 'bank' (did you mean 'banks'?)");
  EXPECT_EQ(parse_error(with_segment("    kind: experts\n    layers: [0, 1]\n    experts: banks\n")),
            "p.yaml:7:14: 'experts' in segment 'early' must be [first, last]: two integers, inclusive");
}

TEST(ParsePipeline, Generation) {
  auto gen = [](const std::string& body) {
    return parse_error("version: 1\nmodel: m\nsegments: [{name: e, kind: embeddings}]\ngeneration:\n" + body);
  };
  EXPECT_EQ(gen("  max_new_token: 3\n"),
            "p.yaml:5:3: unknown key 'max_new_token' in 'generation' (did you mean 'max_new_tokens'?)");
  EXPECT_EQ(gen("  max_new_tokens: 0\n"),
            "p.yaml:5:19: 'max_new_tokens' in 'generation' must be an integer >= 1, got '0'");
  EXPECT_EQ(gen("  temperature: -0.5\n"), "p.yaml:5:16: 'temperature' in 'generation' must be >= 0 (0 = greedy)");
  EXPECT_EQ(gen("  temperature: .nan\n"), "p.yaml:5:16: 'temperature' in 'generation' must be a number, got '.nan'");
  EXPECT_EQ(gen("  temperature: hot\n"), "p.yaml:5:16: 'temperature' in 'generation' must be a number, got 'hot'");
  EXPECT_EQ(gen("  top_k: -1\n"), "p.yaml:5:10: 'top_k' in 'generation' must be an integer >= 0 (0 = off), got '-1'");
  EXPECT_EQ(gen("  top_p: 0\n"), "p.yaml:5:10: 'top_p' in 'generation' must be in (0, 1]");
  EXPECT_EQ(gen("  top_p: 1.5\n"), "p.yaml:5:10: 'top_p' in 'generation' must be in (0, 1]");
  EXPECT_EQ(gen("  seed: -1\n"), "p.yaml:5:9: 'seed' in 'generation' must be an integer from 0 to 2^64-1, got '-1'");
  EXPECT_EQ(gen("  seed: 18446744073709551616\n"),
            "p.yaml:5:9: 'seed' in 'generation' must be an integer from 0 to 2^64-1, got '18446744073709551616'");
  EXPECT_EQ(gen("  []\n"), "p.yaml:5:3: 'generation' must be a mapping of keys to values");
}

TEST(ParsePipeline, StringsArePrintableUtf8) {
  // Found by fuzzing: malformed bytes in a path did not survive emit -> parse.
  EXPECT_EQ(parse_error("version: 1\nmodel: ../m\xe3\x03x\n"),
            "p.yaml:2:8: 'model' must be printable UTF-8 text, got '../m\\xe3\\x03x'");
  EXPECT_EQ(parse_error("version: 1\nmodel: \"a\\tb\"\n"), "p.yaml:2:8: 'model' must be printable UTF-8 text, got 'a\\x09b'");
  EXPECT_EQ(parse_error("version: 1\nmodel: m\ntokenizer: \"\\ud800\"\n"),
            "p.yaml:3:19: YAML syntax error: invalid unicode: 55296");  // yaml-cpp's own check
  PipelineSpec s = parse_pipeline_string("version: 1\nmodel: modèles/Qwen3 ü\nsegments: [{name: e, kind: embeddings}]\n");
  EXPECT_EQ(s.model, "modèles/Qwen3 ü");
}

TEST(ParsePipeline, MessagesStayOnOneLine) {
  std::string e = parse_error(with_segment("    kind: \"lay\\ners\\u0000\"\n"));
  EXPECT_EQ(e.find('\n'), std::string::npos) << e;
  EXPECT_NE(e.find("'lay\\x0aers\\x00'"), std::string::npos) << e;
}

}  // namespace
}  // namespace segpipe

namespace segpipe {
namespace {

TEST(ParsePipelineHosts, Keys) {
  const std::string base = "version: 1\nmodel: m\nsegments:\n  - {name: e, kind: embeddings}\n";
  PipelineSpec s = parse_pipeline_string(
      base + "hosts:\n  - {name: a}\n  - {name: b, address: \"[fe80::1]\"}\ndefaults: {host: b}\n", "p.yaml", "/p");
  ASSERT_TRUE(s.hosts);
  ASSERT_EQ(s.hosts->size(), 2u);
  EXPECT_EQ((*s.hosts)[0].name, "a");
  EXPECT_FALSE((*s.hosts)[0].address);
  EXPECT_EQ((*s.hosts)[1].address, "[fe80::1]");
  EXPECT_EQ(s.defaults.host, "b");

  auto error = [&](const std::string& tail) {
    try {
      parse_pipeline_string(base + tail, "p.yaml", "/p");
    } catch (const InputError& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  EXPECT_EQ(error("hosts: []\n"), "p.yaml:5:8: 'hosts' must be a non-empty list of hosts ({name, address})");
  EXPECT_EQ(error("hosts: a\n"), "p.yaml:5:8: 'hosts' must be a non-empty list of hosts ({name, address})");
  EXPECT_EQ(error("hosts:\n  - {address: x}\n"), "p.yaml:6:5: host #1 in 'hosts' has no 'name'");
  EXPECT_EQ(error("hosts:\n  - {name: a, port: 1}\n"), "p.yaml:6:15: unknown key 'port' in host 'a'");
  EXPECT_EQ(error("hosts:\n  - {name: 'a b'}\n"),
            "p.yaml:6:12: 'name' in host #1 must be 1 to 64 letters, digits, '_', '-' or '.', starting with a letter "
            "or digit, got 'a b'");
  EXPECT_EQ(error("hosts:\n  - {name: a, address: '-oProxyCommand=x'}\n"),
            "p.yaml:6:24: 'address' in host 'a' must be a host name or an IP address (letters, digits, '.', '-', "
            "'_', ':', '[', ']'; at most 255 characters), got '-oProxyCommand=x'");
  EXPECT_EQ(error("hosts:\n  - {name: a, address: 'x;rm'}\n"),
            "p.yaml:6:24: 'address' in host 'a' must be a host name or an IP address (letters, digits, '.', '-', "
            "'_', ':', '[', ']'; at most 255 characters), got 'x;rm'");
  EXPECT_EQ(error("defaults: {host: 'x y'}\n"),
            "p.yaml:5:18: 'host' in 'defaults' must name an entry of 'hosts' (1 to 64 letters, digits, '_', '-' or "
            "'.', starting with a letter or digit), got 'x y'");
}

}  // namespace
}  // namespace segpipe
