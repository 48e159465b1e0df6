#include "orchestrator/reports/memory_report.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "segments/core/errors.h"
#include "segments/encoders/encoder_tensors.h"
#include "segments/kinds/layers.h"
#include "segments/model/tensor_map.h"

namespace segpipe {

namespace fs = std::filesystem;

namespace {

const uint64_t kPage = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));

uint64_t kb_field(const std::string& line) {
  // "Rss:                 1234 kB"
  auto c = line.find(':');
  return std::strtoull(line.c_str() + c + 1, nullptr, 10) * 1024;
}

bool starts(const std::string& s, const char* p) { return s.rfind(p, 0) == 0; }

std::string canonical(const std::string& p) {
  std::error_code ec;
  auto c = fs::weakly_canonical(p, ec);
  return ec ? p : c.string();
}

}  // namespace

uint64_t pss_of(long pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/smaps_rollup");
  if (!in) throw RuntimeFailure("process " + std::to_string(pid) + " is gone (no /proc/" + std::to_string(pid) + "/smaps_rollup)");
  std::string line;
  while (std::getline(in, line))
    if (starts(line, "Pss:")) return kb_field(line);
  return 0;
}

ProcMemory read_proc_memory(long pid) {
  ProcMemory m;
  m.pid = pid;
  std::string base = "/proc/" + std::to_string(pid);
  {
    std::ifstream in(base + "/smaps_rollup");
    if (!in) throw RuntimeFailure("process " + std::to_string(pid) + " is gone (cannot read " + base + "/smaps_rollup)");
    std::string line;
    while (std::getline(in, line)) {
      if (starts(line, "Rss:")) m.rss = kb_field(line);
      else if (starts(line, "Pss:")) m.pss = kb_field(line);
      else if (starts(line, "Pss_Anon:")) m.pss_anon = kb_field(line);
      else if (starts(line, "Pss_File:")) m.pss_file = kb_field(line);
      else if (starts(line, "Pss_Shmem:")) m.pss_shmem = kb_field(line);
    }
  }
  {
    std::ifstream in(base + "/smaps");
    std::string line;
    MappingMemory* cur = nullptr;
    while (std::getline(in, line)) {
      if (line.empty()) continue;
      // Header lines start with a hex range "start-end perms offset dev inode [path]".
      if (std::isxdigit(static_cast<unsigned char>(line[0])) && line.find('-') != std::string::npos &&
          line.find(':') > line.find(' ')) {
        std::istringstream ss(line);
        std::string range, perms, off, dev, inode, path;
        ss >> range >> perms >> off >> dev >> inode;
        std::getline(ss, path);
        path.erase(0, path.find_first_not_of(' '));
        MappingMemory mm;
        mm.start = std::stoull(range.substr(0, range.find('-')), nullptr, 16);
        mm.end = std::stoull(range.substr(range.find('-') + 1), nullptr, 16);
        mm.offset = std::stoull(off, nullptr, 16);
        mm.path = path;
        m.maps.push_back(mm);
        cur = &m.maps.back();
        continue;
      }
      if (!cur) continue;
      if (starts(line, "Rss:")) cur->rss = kb_field(line);
      else if (starts(line, "Pss:")) cur->pss = kb_field(line);
      else if (starts(line, "Anonymous:")) cur->anonymous = kb_field(line);
    }
  }
  for (auto& mm : m.maps) {
    bool weights = mm.path.size() > 12 && mm.path.compare(mm.path.size() - 12, 12, ".safetensors") == 0;
    // The run's arena is a memfd ("/memfd:segpipe-arena (deleted)"); a named one lives in /dev/shm.
    bool arena = starts(mm.path, "/memfd:segpipe-arena") || starts(mm.path, "/dev/shm/segpipe-");
    if (weights) {
      m.rss_weights += mm.rss;
      m.pss_weights += mm.pss;
    } else if (arena) {
      m.rss_arena += mm.rss;
      m.pss_arena += mm.pss;
    } else {
      m.rss_anon += mm.anonymous;
      m.pss_anon_maps += mm.anonymous ? mm.pss : 0;
      m.rss_other += mm.rss - mm.anonymous;
    }
  }
  {
    std::ifstream in(base + "/status");
    std::string line;
    while (std::getline(in, line))
      if (starts(line, "VmHWM:")) m.peak_rss = kb_field(line);
  }
  return m;
}

std::vector<WeightRange> segment_weight_ranges(Checkpoint& ck, const ModelConfig& cfg, const SegmentDesc& d) {
  std::vector<WeightRange> out;
  std::map<std::string, uint64_t> data_start;  // file -> first byte of the data region
  auto start_of = [&](const std::string& file) {
    auto it = data_start.find(file);
    if (it != data_start.end()) return it->second;
    std::ifstream in(file, std::ios::binary);
    unsigned char b[8] = {};
    in.read(reinterpret_cast<char*>(b), 8);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | b[i];
    return data_start[file] = 8 + n;
  };
  auto add = [&](const std::string& name, uint64_t lo, uint64_t hi) {  // lo/hi: within the tensor
    const TensorEntry& e = ck.entry(name);
    std::string f = canonical(ck.file_of(name));
    uint64_t s = start_of(f) + e.begin;
    out.push_back({f, s + lo, s + std::min(hi, e.end - e.begin)});
  };
  auto whole = [&](const TensorRole& r) { add(r.name, 0, UINT64_MAX); };
  auto experts = [&](int l0, int l1, int e0, int e1) {
    for (int l = l0; l <= l1; l++) {
      if (!cfg.is_moe_layer(l)) continue;
      ExpertLayout lay = expert_layout(ck, cfg, l);
      for (int e = e0; e <= e1; e++) {
        auto roles = expert_roles(cfg, l, e, lay);
        if (lay == ExpertLayout::PerExpert) {
          for (auto& r : roles) whole(r);
        } else {
          // Fused [E, 2I, H] and [E, H, I]: expert e's slices.
          uint64_t H = static_cast<uint64_t>(cfg.hidden), I = static_cast<uint64_t>(cfg.moe_intermediate);
          uint64_t gs = 2 * I * H * dtype_size(ck.entry(roles[0].name).dtype);
          uint64_t ds = H * I * dtype_size(ck.entry(roles[1].name).dtype);
          add(roles[0].name, static_cast<uint64_t>(e) * gs, static_cast<uint64_t>(e + 1) * gs);
          add(roles[1].name, static_cast<uint64_t>(e) * ds, static_cast<uint64_t>(e + 1) * ds);
        }
      }
    }
  };
  switch (d.kind) {
    case SegmentKind::embeddings: whole(embed_role(cfg)); break;
    case SegmentKind::lm_head:
      whole(final_norm_role(cfg));
      if (cfg.tie_word_embeddings) whole(embed_role(cfg));
      else for (auto& r : lm_head_roles(cfg)) whole(r);
      break;
    case SegmentKind::experts: experts(d.layer_first, d.layer_last, d.expert_first, d.expert_last); break;
    case SegmentKind::layers:
      for (int l = d.layer_first; l <= d.layer_last; l++)
        for (auto& r : layer_roles(cfg, l)) whole(r);
      if (!d.banks) experts(d.layer_first, d.layer_last, 0, cfg.num_experts - 1);
      break;
    case SegmentKind::audio_encoder:
    case SegmentKind::vision_encoder: {
      const std::string prefix = encoder_tensor_prefix(d.kind);
      for (const std::string& name : ck.tensor_names())
        if (name.rfind(prefix, 0) == 0) add(name, 0, UINT64_MAX);
      break;
    }
  }
  std::sort(out.begin(), out.end(), [](const WeightRange& a, const WeightRange& b) {
    return a.file != b.file ? a.file < b.file : a.begin < b.begin;
  });
  return out;
}

ExpertResidencyBound expert_residency_bound(Checkpoint& ck, const ModelConfig& cfg, const SegmentDesc& d) {
  ExpertResidencyBound b;
  const int M = d.max_resident_experts;
  b.max_resident_experts = M;
  uint64_t total = 0;
  const auto ranges = segment_weight_ranges(ck, cfg, d);
  for (auto& r : ranges) total += r.end - r.begin;
  uint64_t all_experts = 0, expert_tensors = 0, resident_expert_tensors = 0;
  const bool holds_experts = d.kind == SegmentKind::experts || (d.kind == SegmentKind::layers && !d.banks);
  if (holds_experts && M > 0) {
    const int e0 = d.kind == SegmentKind::experts ? d.expert_first : 0;
    const int e1 = d.kind == SegmentKind::experts ? d.expert_last : cfg.num_experts - 1;
    for (int l = d.layer_first; l <= d.layer_last; l++) {
      if (!cfg.is_moe_layer(l)) continue;
      ExpertLayout lay = expert_layout(ck, cfg, l);
      std::vector<uint64_t> sizes;
      for (int e = e0; e <= e1; e++) {
        uint64_t s = 0;
        auto roles = expert_roles(cfg, l, e, lay);
        if (lay == ExpertLayout::PerExpert) {
          for (auto& r : roles) s += ck.entry(r.name).end - ck.entry(r.name).begin;
        } else {
          for (auto& r : roles) s += (ck.entry(r.name).end - ck.entry(r.name).begin) / static_cast<uint64_t>(cfg.num_experts);
        }
        sizes.push_back(s);
        all_experts += s;
        expert_tensors += roles.size();
      }
      std::sort(sizes.rbegin(), sizes.rend());
      const size_t keep = std::min(sizes.size(), static_cast<size_t>(M));
      for (size_t i = 0; i < keep; i++) b.expert_bytes += sizes[i];
      resident_expert_tensors += keep * (lay == ExpertLayout::PerExpert ? 3 : 2);
    }
  }
  b.non_expert_bytes = total - std::min(total, all_experts);
  const uint64_t non_expert_tensors = ranges.size() - std::min<uint64_t>(ranges.size(), expert_tensors);
  b.slack_bytes = 2 * kPage * (non_expert_tensors + resident_expert_tensors) + (1ull << 20);
  return b;
}

WeightResidency check_weight_residency(const ProcMemory& pm, const std::vector<WeightRange>& own) {
  WeightResidency r;
  int fd = ::open(("/proc/" + std::to_string(pm.pid) + "/pagemap").c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw RuntimeFailure("cannot read /proc/" + std::to_string(pm.pid) + "/pagemap");
  std::map<std::string, std::vector<std::pair<uint64_t, uint64_t>>> by_file;
  for (auto& w : own) by_file[w.file].push_back({w.begin, w.end});
  for (const MappingMemory& mm : pm.maps) {
    if (mm.path.size() <= 12 || mm.path.compare(mm.path.size() - 12, 12, ".safetensors") != 0) continue;
    r.weight_mappings++;
    if (mm.rss == 0) continue;
    const auto& ranges = by_file[canonical(mm.path)];
    uint64_t pages = (mm.end - mm.start) / kPage;
    std::vector<uint64_t> pm_entries(pages);
    ssize_t got = pread(fd, pm_entries.data(), pages * 8, static_cast<off_t>(mm.start / kPage * 8));
    if (got != static_cast<ssize_t>(pages * 8)) continue;
    for (uint64_t p = 0; p < pages; p++) {
      if (!(pm_entries[p] >> 63 & 1)) continue;  // not present
      uint64_t lo = mm.offset + p * kPage, hi = lo + kPage;
      // Bytes of this page that belong to the segment.
      uint64_t mine = 0;
      auto it = std::upper_bound(ranges.begin(), ranges.end(), std::make_pair(lo, UINT64_MAX));
      if (it != ranges.begin()) --it;
      for (; it != ranges.end() && it->first < hi; ++it)
        if (it->second > lo) mine += std::min(hi, it->second) - std::max(lo, it->first);
      if (mine == 0) {
        r.foreign_resident_pages++;
        if (r.foreign_examples.size() < 5) r.foreign_examples.push_back(mm.path + "@" + std::to_string(lo));
      } else if (mine < kPage) {
        r.edge_resident_pages++;
        r.own_resident_bytes += mine;
      } else {
        r.own_resident_bytes += kPage;
      }
    }
  }
  ::close(fd);
  return r;
}

nlohmann::json proc_memory_json(const ProcMemory& m) {
  return {{"pid", m.pid},
          {"rss_bytes", m.rss},
          {"pss_bytes", m.pss},
          {"rss_weights_bytes", m.rss_weights},
          {"pss_weights_bytes", m.pss_weights},
          {"rss_anon_bytes", m.rss_anon},
          {"rss_arena_bytes", m.rss_arena},
          {"pss_arena_bytes", m.pss_arena},
          {"rss_other_bytes", m.rss_other},
          {"peak_rss_bytes", m.peak_rss}};
}

SegmentMemory measure_segment_memory(long pid, Checkpoint& ck, const ModelConfig& cfg, const SegmentDesc& d) {
  SegmentMemory m;
  m.proc = read_proc_memory(pid);
  m.residency = check_weight_residency(m.proc, segment_weight_ranges(ck, cfg, d));
  return m;
}

namespace {

// The scalar figures of both structs, listed once for both directions (P, R: const for the writer).
template <class P, class R, class F>
void each_memory_field(P& p, R& r, F&& f) {
  f("pid", p.pid);
  f("rss", p.rss);
  f("pss", p.pss);
  f("pss_anon", p.pss_anon);
  f("pss_file", p.pss_file);
  f("pss_shmem", p.pss_shmem);
  f("rss_weights", p.rss_weights);
  f("pss_weights", p.pss_weights);
  f("rss_anon", p.rss_anon);
  f("pss_anon_maps", p.pss_anon_maps);
  f("rss_arena", p.rss_arena);
  f("pss_arena", p.pss_arena);
  f("rss_other", p.rss_other);
  f("peak_rss", p.peak_rss);
  f("own_resident_bytes", r.own_resident_bytes);
  f("edge_resident_pages", r.edge_resident_pages);
  f("foreign_resident_pages", r.foreign_resident_pages);
  f("weight_mappings", r.weight_mappings);
  f("foreign_examples", r.foreign_examples);
}

}  // namespace

nlohmann::json segment_memory_to_json(const SegmentMemory& m) {
  nlohmann::json j = nlohmann::json::object();
  each_memory_field(m.proc, m.residency, [&](const char* key, const auto& v) { j[key] = v; });
  return j;
}

SegmentMemory segment_memory_from_json(const nlohmann::json& j) {
  SegmentMemory m;
  each_memory_field(m.proc, m.residency, [&](const char* key, auto& v) { j.at(key).get_to(v); });
  return m;
}

uint64_t kv_bytes(const ModelConfig& cfg, const SegmentDesc& d, int64_t positions) {
  if (d.kind != SegmentKind::layers) return 0;
  uint64_t n = static_cast<uint64_t>(d.layer_last - d.layer_first + 1);
  uint64_t per = static_cast<uint64_t>(positions) * static_cast<uint64_t>(cfg.kv_dim()) * 4;  // K or V of one layer
  per = (per + kPage - 1) / kPage * kPage;
  return n * 2 * per;
}

}  // namespace segpipe
