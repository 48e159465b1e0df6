// safetensors reader (segments/checkpoint/safetensors.h): every malformed file is an InputError that
// names the file and the tensor or key; valid files round-trip their values and are read zero-copy,
// mapping only the tensors asked for.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "segments/checkpoint/safetensors.h"
#include "segments/checkpoint/safetensors_writer.h"
#include "segments_test_support.h"

namespace segpipe {
namespace {

using testing::expect_input_error;
using testing::raw_safetensors;
using testing::TempDir;
using testing::write_bytes;
namespace fs = std::filesystem;

// A file with a hand-written header and a data region of `data_bytes` bytes.
std::string raw_file(const TempDir& d, const std::string& header, uint64_t data_bytes, const std::string& name = "t.safetensors") {
  std::string p = d.file(name);
  write_bytes(p, raw_safetensors(header, data_bytes));
  return p;
}

void expect_open_error(const std::string& path, std::initializer_list<std::string> needles) {
  expect_input_error([&] { SafetensorsFile::open(path); }, needles);
}

// A hand-written file (raw_file) that opening must refuse with a message naming the file and `needles`.
void expect_refused(const TempDir& d, const std::string& header, uint64_t data_bytes, std::vector<std::string> needles) {
  std::string p = raw_file(d, header, data_bytes);
  needles.insert(needles.begin(), p);
  expect_input_error([&] { SafetensorsFile::open(p); }, needles);
}

TEST(SafetensorsReader, FileShorterThanEightBytes) {
  TempDir d;
  for (size_t n : {0u, 1u, 7u}) {
    std::string p = d.file("short" + std::to_string(n) + ".safetensors");
    write_bytes(p, std::string(n, '\x01'));
    expect_open_error(p, {p, "truncated"});
  }
}

TEST(SafetensorsReader, DataRegionCutShort) {
  TempDir d;
  std::string p = d.file("cut.safetensors");
  write_safetensors(p, {{"a", DType::F32, {4}}, {"b", DType::F32, {3, 2}}}, {},
                    [](const TensorSpec&, uint64_t, uint64_t n, void* out) { std::memset(out, 0, n * 4); });
  std::string bytes = testing::read_bytes(p);
  write_bytes(p, bytes.substr(0, bytes.size() - 5));  // the last tensor ('b', written second) loses 5 bytes
  expect_open_error(p, {p, "'b'", "out of range"});
}

TEST(SafetensorsReader, HeaderLengthRunsPastEndOfFile) {
  TempDir d;
  std::string p = d.file("past.safetensors");
  std::string header = R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
  write_bytes(p, testing::le64(header.size() + 100) + header + "abcd");
  expect_open_error(p, {p, "header length"});
}

TEST(SafetensorsReader, HeaderLengthOverHundredMegabytes) {
  TempDir d;
  std::string p = d.file("huge.safetensors");
  // The file itself is small: the bound must be checked before anything is allocated or read.
  write_bytes(p, testing::le64(100'000'001) + "{}");
  expect_open_error(p, {p, "header length", "100"});
  write_bytes(p, testing::le64(~0ull) + "{}");
  expect_open_error(p, {p, "header length"});
}

TEST(SafetensorsReader, MalformedJson) {
  TempDir d;
  for (const std::string h : {R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]})", "{\"a\": }", "not json", "",
                              R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}} trailing)"}) {
    expect_refused(d, h, 4, {"JSON"});
  }
}

TEST(SafetensorsReader, HeaderNotAnObject) {
  TempDir d;
  for (const std::string h : {"[1, 2, 3]", "42", "\"text\"", "null"}) {
    expect_refused(d, h, 0, {"object"});
  }
}

TEST(SafetensorsReader, UnknownDtype) {
  TempDir d;
  expect_refused(d, R"({"w":{"dtype":"F33","shape":[1],"data_offsets":[0,4]}})", 4, {"'w'", "F33"});
  expect_refused(d, R"({"w":{"dtype":"f32","shape":[1],"data_offsets":[0,4]}})", 4, {"'w'", "dtype"});  // names are case-sensitive
}

TEST(SafetensorsReader, MissingDtype) {
  TempDir d;
  expect_refused(d, R"({"w":{"shape":[1],"data_offsets":[0,4]}})", 4, {"'w'", "dtype"});
  expect_refused(d, R"({"w":{"dtype":7,"shape":[1],"data_offsets":[0,4]}})", 4, {"'w'", "dtype"});
}

TEST(SafetensorsReader, ShapeAndSizeMismatch) {
  TempDir d;
  // [2, 3] F32 needs 24 bytes, the offsets give 20.
  expect_refused(d, R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,20]}})", 20, {"'w'", "size mismatch"});
  // Right byte count for BF16, wrong for the declared F32.
  expect_refused(d, R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,8]}})", 8, {"'w'", "size mismatch"});
}

TEST(SafetensorsReader, OverlappingOffsets) {
  TempDir d;
  expect_refused(d, R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                    R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12, {"'b'", "overlap"});
  // An empty tensor placed inside another one overlaps it too.
  expect_refused(d, R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                    R"("z":{"dtype":"F32","shape":[0],"data_offsets":[4,4]}})", 8, {"'z'", "overlap"});
}

TEST(SafetensorsReader, OffsetsOutOfRange) {
  TempDir d;
  expect_refused(d, R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})", 8, {"'w'", "out of range"});
  expect_refused(d, R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", 8, {"'w'", "data_offsets"});  // end < begin
  expect_refused(d, R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,18446744073709551615]}})", 8, {"'w'"});
  expect_refused(d, R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", 8, {"'w'", "data_offsets"});
  expect_refused(d, R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}})", 8, {"'w'", "data_offsets"});
}

TEST(SafetensorsReader, GapsInTheDataRegion) {
  TempDir d;
  expect_refused(d, R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                    R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})", 12, {"'b'", "gap"});
  // A gap at the start.
  expect_refused(d, R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8, {"'a'", "gap"});
  // Bytes left over after the last tensor.
  expect_refused(d, R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 12, {"cover"});
}

TEST(SafetensorsReader, DuplicateTensorNames) {
  TempDir d;
  expect_refused(d, R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                    R"("w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8, {"'w'", "duplicate"});
}

TEST(SafetensorsReader, NegativeOrNonIntegerShape) {
  TempDir d;
  for (const std::string dims : {"[-1]", "[2,-3]", "[1.5]", "[\"4\"]", "[null]", "[true]", "[[2]]", "4"}) {
    expect_refused(d, R"({"w":{"dtype":"F32","shape":)" + dims + R"(,"data_offsets":[0,4]}})", 4, {"'w'", "shape"});
  }
}

TEST(SafetensorsReader, ShapeProductOverflowIsAnError) {
  TempDir d;
  // 2^32 * 2^32 wraps to 0 in 64 bits; with data_offsets [0, 0] a wrapped product would pass.
  expect_refused(d, R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}})", 0, {"'w'", "shape"});
}

TEST(SafetensorsReader, ParseHeaderNamesWhereItWasCalled) {
  expect_input_error([] { parse_safetensors_header("{", 0, "somewhere.safetensors"); }, {"somewhere.safetensors"});
  auto h = parse_safetensors_header(R"({"__metadata__":{"k":"v"}})", 0, "x");
  EXPECT_TRUE(h.tensors.empty());
  EXPECT_EQ(h.metadata.at("k"), "v");
  expect_input_error([] { parse_safetensors_header(R"({"__metadata__":{"k":1}})", 0, "m.safetensors"); },
                     {"m.safetensors", "__metadata__", "'k'"});
}

TEST(SafetensorsReader, MissingTensorIsAnErrorNamingIt) {
  TempDir d;
  std::string p = d.file("one.safetensors");
  write_safetensors(p, {{"a", DType::F32, {1}}}, {}, [](const TensorSpec&, uint64_t, uint64_t n, void* o) {
    std::memset(o, 0, n * 4);
  });
  auto f = SafetensorsFile::open(p);
  expect_input_error([&] { f->view("nope"); }, {p, "'nope'"});
  expect_input_error([&] { SafetensorsFile::open(d.file("absent.safetensors")); }, {d.file("absent.safetensors")});
}

// ---- valid files ----

// Values each dtype can hold exactly, so the expected values are known without any conversion.
double test_value(uint64_t i) { return (static_cast<double>(i % 41) - 20.0) * 0.25; }

TEST(SafetensorsReader, RoundTripOfEveryComputeDtype) {
  TempDir d;
  std::string p = d.file("rt.safetensors");
  std::vector<TensorSpec> specs = {{"f32", DType::F32, {3, 5}},
                                   {"bf16", DType::BF16, {7}},
                                   {"f16", DType::F16, {2, 3, 4}},
                                   {"i64", DType::I64, {6}}};
  // Element encodings spelled out from the format definitions (bf16 = top half of an f32; f16
  // written from sign / exponent / mantissa), not through the library's converters.
  auto encode_f16 = [](double v) -> uint16_t {
    if (v == 0) return 0;
    uint16_t sign = v < 0 ? 0x8000 : 0;
    double a = std::fabs(v);
    int e;
    double m = std::frexp(a, &e);  // a = m * 2^e, m in [0.5, 1)
    uint16_t exp = static_cast<uint16_t>(e - 1 + 15);
    uint16_t man = static_cast<uint16_t>((m * 2 - 1) * 1024);
    return static_cast<uint16_t>(sign | (exp << 10) | man);
  };
  write_safetensors(p, specs, {{"format", "pt"}, {"note", "hello"}},
                    [&](const TensorSpec& t, uint64_t first, uint64_t n, void* out) {
                      for (uint64_t i = 0; i < n; i++) {
                        double v = test_value(first + i);
                        if (t.dtype == DType::F32) {
                          static_cast<float*>(out)[i] = static_cast<float>(v);
                        } else if (t.dtype == DType::BF16) {
                          float f = static_cast<float>(v);
                          uint32_t u;
                          std::memcpy(&u, &f, 4);
                          static_cast<uint16_t*>(out)[i] = static_cast<uint16_t>(u >> 16);
                        } else if (t.dtype == DType::F16) {
                          static_cast<uint16_t*>(out)[i] = encode_f16(v);
                        } else {
                          static_cast<int64_t*>(out)[i] = static_cast<int64_t>(first + i) * -3000000000LL;
                        }
                      }
                    });
  auto f = SafetensorsFile::open(p);
  EXPECT_EQ(f->header().metadata.at("format"), "pt");
  EXPECT_EQ(f->header().metadata.at("note"), "hello");
  for (const TensorSpec& s : specs) {
    TensorView v = f->view(s.name);
    EXPECT_EQ(v.name, s.name);
    EXPECT_EQ(v.dtype, s.dtype);
    EXPECT_EQ(v.shape, s.shape);
    ASSERT_EQ(v.nbytes, s.nbytes());
    for (int64_t i = 0; i < v.numel(); i++) {
      double got;
      if (s.dtype == DType::F32) {
        got = static_cast<const float*>(v.data)[i];
      } else if (s.dtype == DType::BF16) {
        got = testing::ref_bf16(static_cast<const uint16_t*>(v.data)[i]);
      } else if (s.dtype == DType::F16) {
        got = testing::ref_f16(static_cast<const uint16_t*>(v.data)[i]);
      } else {
        int64_t x;
        std::memcpy(&x, static_cast<const char*>(v.data) + i * 8, 8);
        EXPECT_EQ(x, i * -3000000000LL) << s.name << "[" << i << "]";
        continue;
      }
      EXPECT_EQ(got, test_value(static_cast<uint64_t>(i))) << s.name << "[" << i << "]";
    }
  }
}

TEST(SafetensorsReader, EmptyTensors) {
  TempDir d;
  std::string p = d.file("empty.safetensors");
  write_safetensors(p, {{"a", DType::F32, {2}}, {"e0", DType::F32, {0}}, {"e1", DType::BF16, {3, 0, 2}}, {"b", DType::F16, {1}}},
                    {}, [](const TensorSpec& t, uint64_t, uint64_t n, void* o) { std::memset(o, 0x3c, n * dtype_size(t.dtype)); });
  auto f = SafetensorsFile::open(p);
  for (const char* n : {"e0", "e1"}) {
    TensorView v = f->view(n);
    EXPECT_EQ(v.nbytes, 0u);
    EXPECT_EQ(v.numel(), 0);
  }
  EXPECT_EQ(f->view("e1").shape, (std::vector<int64_t>{3, 0, 2}));
  EXPECT_EQ(f->view("a").nbytes, 8u);
  EXPECT_EQ(f->view("b").nbytes, 2u);
  // A file holding nothing but an empty tensor is valid too.
  std::string q = raw_file(d, R"({"z":{"dtype":"I64","shape":[0],"data_offsets":[0,0]}})", 0, "only-empty.safetensors");
  EXPECT_EQ(SafetensorsFile::open(q)->view("z").nbytes, 0u);
}

TEST(SafetensorsReader, MetadataIsNotATensor) {
  TempDir d;
  std::string p = raw_file(d,
                           R"({"__metadata__":{"format":"pt","x":""},"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
                           4);
  auto f = SafetensorsFile::open(p);
  EXPECT_EQ(f->header().tensors.size(), 1u);
  EXPECT_FALSE(f->has("__metadata__"));
  EXPECT_EQ(f->header().metadata.size(), 2u);
  EXPECT_EQ(f->header().metadata.at("x"), "");
  std::string q = raw_file(d, R"({"__metadata__":[1]})", 0, "bad-meta.safetensors");
  expect_open_error(q, {q, "__metadata__"});
}

// The address range and file of the mapping that holds `p`, from /proc/self/maps.
bool mapping_of(const void* p, std::string& file) {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  auto a = reinterpret_cast<uintptr_t>(p);
  while (std::getline(maps, line)) {
    uintptr_t lo = 0, hi = 0;
    if (std::sscanf(line.c_str(), "%" SCNxPTR "-%" SCNxPTR, &lo, &hi) != 2) continue;
    if (a >= lo && a < hi) {
      auto slash = line.find('/');
      file = slash == std::string::npos ? "" : line.substr(slash);
      return true;
    }
  }
  return false;
}

TEST(SafetensorsReader, ViewsAreZeroCopyAndOnlyRequestedTensorsAreMapped) {
  TempDir d;
  std::string p = d.file("zc.safetensors");
  // Tensors larger than a page, so each needs its own mapping.
  std::vector<TensorSpec> specs = {{"a", DType::F32, {3000}}, {"b", DType::BF16, {5001}}, {"c", DType::F32, {2, 2048}}};
  write_safetensors(p, specs, {}, [](const TensorSpec& t, uint64_t first, uint64_t n, void* o) {
    for (uint64_t i = 0; i < n * dtype_size(t.dtype); i++) static_cast<unsigned char*>(o)[i] = static_cast<unsigned char>(first + i + t.name[0]);
  });
  auto f = SafetensorsFile::open(p);
  EXPECT_EQ(f->mapped_tensor_bytes(), 0u) << "opening must not map tensor bytes";
  TensorView b = f->view("b");
  EXPECT_EQ(f->mapped_tensor_bytes(), 5001u * 2);
  TensorView b2 = f->view("b");  // a second view shares the mapping
  EXPECT_EQ(b2.data, b.data);
  EXPECT_EQ(f->mapped_tensor_bytes(), 5001u * 2);
  std::string file;
  ASSERT_TRUE(mapping_of(b.data, file));
  EXPECT_EQ(fs::canonical(file), fs::canonical(p)) << "the view must point into a mapping of the file itself";
  ASSERT_TRUE(mapping_of(static_cast<const char*>(b.data) + b.nbytes - 1, file));
  EXPECT_EQ(fs::canonical(file), fs::canonical(p));
  // The bytes are the file's bytes at the tensor's offset.
  std::string bytes = testing::read_bytes(p);
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | static_cast<unsigned char>(bytes[static_cast<size_t>(i)]);
  const TensorEntry& e = f->header().tensors.at("b");
  EXPECT_EQ(std::memcmp(b.data, bytes.data() + 8 + hlen + e.begin, b.nbytes), 0);
  TensorView c = f->view("c");
  EXPECT_EQ(f->mapped_tensor_bytes(), 5001u * 2 + 4096u * 4);
  EXPECT_EQ(std::memcmp(c.data, bytes.data() + 8 + hlen + f->header().tensors.at("c").begin, c.nbytes), 0);
  f->unmap("b");
  EXPECT_EQ(f->mapped_tensor_bytes(), 4096u * 4);
}

// Pages of [p, p + n) present in this process's page tables (/proc/self/pagemap, bit 63).
size_t present_pages(const void* p, size_t n) {
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t first = reinterpret_cast<uintptr_t>(p) / page, last = (reinterpret_cast<uintptr_t>(p) + n - 1) / page;
  const int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  size_t present = 0;
  for (uintptr_t i = first; i <= last; i++) {
    uint64_t e = 0;
    if (pread(fd, &e, 8, static_cast<off_t>(i * 8)) == 8) present += (e >> 63) & 1;
  }
  close(fd);
  return present;
}

// gpu_memory: unified gives a tensor's pages back once the device holds it (release_pages): gone from
// this process, the mapping still valid and reading the same bytes; a range outside the view is ignored.
TEST(SafetensorsReader, ReleasedPagesLeaveTheProcessAndReadBackTheSame) {
  TempDir d;
  std::string p = d.file("rel.safetensors");
  std::vector<TensorSpec> specs = {{"a", DType::F32, {100}}, {"big", DType::F32, {40000}}, {"z", DType::BF16, {300}}};
  write_safetensors(p, specs, {}, [](const TensorSpec& t, uint64_t first, uint64_t n, void* o) {
    for (uint64_t i = 0; i < n * dtype_size(t.dtype); i++) static_cast<unsigned char*>(o)[i] = static_cast<unsigned char>((first + i) * 7 + t.name[0]);
  });
  // The page tables this test reads must be this process's own: under user-mode emulation (qemu-user,
  // tools/arm64/cross_test.sh) /proc/self/pagemap describes the emulator's host addresses, not the
  // guest's, and a page just written reads as absent. There the check cannot be made (it runs natively).
  std::vector<char> probe(3 * static_cast<size_t>(sysconf(_SC_PAGESIZE)), 1);
  if (present_pages(probe.data(), probe.size()) == 0) GTEST_SKIP() << "/proc/self/pagemap does not show this process's pages";
  auto f = SafetensorsFile::open(p);
  TensorView v = f->view("big");
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  // Every page read once, so every page is present whether or not the mapping was populated up front
  // (an emulator may drop MAP_POPULATE).
  volatile unsigned char sink = 0;
  for (size_t off = 0; off < v.nbytes; off += page) sink = sink + static_cast<const unsigned char*>(v.data)[off];
  const size_t pages = present_pages(v.data, v.nbytes);
  ASSERT_GE(pages, v.nbytes / page);
  const std::string before(static_cast<const char*>(v.data), v.nbytes);
  f->release_pages("big", v.data, v.nbytes);
  EXPECT_EQ(present_pages(v.data, v.nbytes), 0u);
  EXPECT_EQ(std::memcmp(v.data, before.data(), v.nbytes), 0) << "a released page must fault back in with its bytes";
  EXPECT_EQ(present_pages(v.data, v.nbytes), pages);
  // Part of the tensor: the pages it touches go, the first and last stay.
  const char* mid = static_cast<const char*>(v.data) + 5 * page;
  f->release_pages("big", mid, page);
  EXPECT_LE(present_pages(v.data, v.nbytes), pages - 1);
  EXPECT_EQ(present_pages(v.data, 1), 1u);
  EXPECT_EQ(present_pages(static_cast<const char*>(v.data) + v.nbytes - 1, 1), 1u);
  // Outside the view, or a tensor not mapped: nothing happens.
  const size_t now = present_pages(v.data, v.nbytes);
  f->release_pages("big", static_cast<const char*>(v.data) + 4, v.nbytes);
  f->release_pages("a", v.data, v.nbytes);
  f->release_pages("missing", v.data, v.nbytes);
  EXPECT_EQ(present_pages(v.data, v.nbytes), now);
  EXPECT_EQ(std::memcmp(v.data, before.data(), v.nbytes), 0);
}

}  // namespace
}  // namespace segpipe
