#include "orchestrator/reports/report_html.h"

namespace segpipe {

namespace {

// Kept in one raw string: the page is data + a small renderer.
const char* kPage = R"HTML(<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>segpipe memory report</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1100px}
h1{font-size:20px}h2{font-size:16px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#f4f4f4}td.l,th.l{text-align:left}.bad{color:#b00;font-weight:bold}.ok{color:#070}
svg{background:#fff;border:1px solid #eee;margin:6px 0}.note{color:#666;font-size:12px}
</style></head><body>
<h1>segpipe memory report</h1>
<div id="meta" class="note"></div>
<div id="content"></div>
<div id="render-errors"></div>
<script type="application/json" id="report-data">@DATA@</script>
<script>
"use strict";
var errors = [];
window.onerror = function (m, s, l) { errors.push(String(m) + " (line " + l + ")"); };
var MiB = 1048576, charts = 0;
var D = JSON.parse(document.getElementById("report-data").textContent);
var M = D.memory || {}, S = D.sweep || {};
var C = document.getElementById("content");
function el(tag, attrs, text) {
  var e = document.createElement(tag);
  for (var k in (attrs || {})) e.setAttribute(k, attrs[k]);
  if (text !== undefined) e.textContent = text;
  return e;
}
function svg(tag, attrs, text) {
  var e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (var k in (attrs || {})) e.setAttribute(k, attrs[k]);
  if (text !== undefined) e.textContent = text;
  return e;
}
function mib(b) { return (b / MiB).toFixed(1); }
function h2(t) { C.appendChild(el("h2", {}, t)); }
function table(id, head, rows) {
  var t = el("table", { id: id }), tr = el("tr");
  head.forEach(function (h, i) { tr.appendChild(el("th", { class: i ? "" : "l" }, h)); });
  t.appendChild(tr);
  rows.forEach(function (r) {
    var row = el("tr");
    r.forEach(function (c, i) {
      var td = el("td", { class: i ? "" : "l" }, c.text !== undefined ? c.text : c);
      if (c.value !== undefined) td.setAttribute("data-value", c.value);
      if (c.cls) td.className += " " + c.cls;
      row.appendChild(td);
    });
    t.appendChild(row);
  });
  C.appendChild(t);
}
// Grouped/stacked bar chart. series: [{name, color, values[]}]; stacked when stack is true.
function bars(id, title, labels, series, stack, unit) {
  var W = 900, H = 300, L = 70, B = 60, T = 30, n = labels.length;
  var max = 0;
  for (var i = 0; i < n; i++) {
    var s = 0;
    series.forEach(function (se) { s = stack ? s + se.values[i] : Math.max(s, se.values[i]); });
    max = Math.max(max, s);
  }
  if (max <= 0) max = 1;
  var g = svg("svg", { id: id, width: W, height: H, viewBox: "0 0 " + W + " " + H });
  g.appendChild(svg("text", { x: 8, y: 18, "font-size": 13 }, title));
  for (var k = 0; k <= 4; k++) {
    var y = T + (H - T - B) * (1 - k / 4);
    g.appendChild(svg("line", { x1: L, x2: W - 10, y1: y, y2: y, stroke: "#eee" }));
    g.appendChild(svg("text", { x: L - 6, y: y + 4, "font-size": 10, "text-anchor": "end" }, (max * k / 4).toFixed(1)));
  }
  g.appendChild(svg("text", { x: 8, y: T + 10, "font-size": 10 }, unit));
  var slot = (W - L - 10) / Math.max(1, n), bw = stack ? slot * 0.6 : slot * 0.7 / series.length;
  for (var i2 = 0; i2 < n; i2++) {
    var base = H - B, x0 = L + slot * i2 + slot * 0.15;
    series.forEach(function (se, si) {
      var v = se.values[i2], h = (H - T - B) * v / max;
      var x = stack ? x0 : x0 + si * bw, y = stack ? base - h : H - B - h;
      var r = svg("rect", { x: x, y: y, width: Math.max(1, bw - 2), height: Math.max(0, h), fill: se.color });
      r.appendChild(svg("title", {}, labels[i2] + " " + se.name + ": " + v.toFixed(2) + " " + unit));
      g.appendChild(r);
      if (stack) base -= h;
    });
    g.appendChild(svg("text", { x: x0 + slot * 0.3, y: H - B + 14, "font-size": 10, "text-anchor": "middle" }, labels[i2]));
  }
  series.forEach(function (se, si) {
    g.appendChild(svg("rect", { x: L + si * 150, y: H - 22, width: 10, height: 10, fill: se.color }));
    g.appendChild(svg("text", { x: L + si * 150 + 14, y: H - 13, "font-size": 11 }, se.name));
  });
  C.appendChild(g);
  charts++;
}
function heatmap(id, router) {
  var layers = router.layers || [], E = router.num_experts || 0;
  if (!layers.length || !E) return;
  var cw = Math.max(6, Math.min(28, 800 / E)), ch = 18, L = 70, T = 30;
  var W = L + cw * E + 20, H = T + ch * layers.length + 30, max = 1;
  layers.forEach(function (l) { l.counts.forEach(function (c) { max = Math.max(max, c); }); });
  var g = svg("svg", { id: id, width: W, height: H });
  g.appendChild(svg("text", { x: 8, y: 18, "font-size": 13 }, "expert usage per layer (slots routed; white = never used)"));
  layers.forEach(function (l, r) {
    g.appendChild(svg("text", { x: L - 6, y: T + ch * r + 13, "font-size": 10, "text-anchor": "end" }, "layer " + l.layer));
    l.counts.forEach(function (c, e) {
      var a = c / max, col = c === 0 ? "#fff" : "rgb(" + Math.round(255 - 200 * a) + "," + Math.round(240 - 180 * a) + ",255)";
      var r2 = svg("rect", { x: L + cw * e, y: T + ch * r, width: cw - 1, height: ch - 1, fill: col, stroke: "#ddd" });
      r2.appendChild(svg("title", {}, "layer " + l.layer + " expert " + e + ": " + c));
      g.appendChild(r2);
    });
  });
  for (var e = 0; e < E; e += Math.max(1, Math.ceil(E / 16)))
    g.appendChild(svg("text", { x: L + cw * e + cw / 2, y: H - 12, "font-size": 9, "text-anchor": "middle" }, e));
  C.appendChild(g);
  charts++;
}
function memorySection() {
  if (!M.segments) return;
  document.getElementById("meta").textContent = "pipeline " + M.pipeline + " | model " + M.model + " | " + (M.gpu || "");
  h2("Memory per segment process");
  var segs = M.segments, names = segs.map(function (s) { return s.name; });
  bars("chart-memory", "resident memory per process (MiB): mapped weights, anonymous, shm arena, other", names, [
    { name: "weights (file)", color: "#4a78c2", values: segs.map(function (s) { return s.rss_weights_bytes / MiB; }) },
    { name: "anonymous", color: "#e3a33b", values: segs.map(function (s) { return s.rss_anon_bytes / MiB; }) },
    { name: "shm arena", color: "#6bb36b", values: segs.map(function (s) { return s.rss_arena_bytes / MiB; }) },
    { name: "other", color: "#bbb", values: segs.map(function (s) { return s.rss_other_bytes / MiB; }) }], true, "MiB");
  var rows = segs.map(function (s) {
    return [s.name, s.kind, String(s.pid), { text: mib(s.weight_bytes), value: s.weight_bytes },
      { text: mib(s.rss_bytes), value: s.rss_bytes }, { text: mib(s.pss_bytes), value: s.pss_bytes },
      { text: mib(s.rss_weights_bytes), value: s.rss_weights_bytes }, { text: mib(s.rss_anon_bytes), value: s.rss_anon_bytes },
      { text: mib(s.rss_arena_bytes), value: s.rss_arena_bytes }, { text: mib(s.peak_rss_bytes), value: s.peak_rss_bytes },
      { text: mib(s.kv_cache_bytes), value: s.kv_cache_bytes }, String(s.weights_resident.foreign_pages),
      { text: s.target.met ? "met" : "MISSED", cls: s.target.met ? "ok" : "bad" }];
  });
  table("table-segments", ["segment", "kind", "pid", "weights", "rss", "pss", "rss weights", "anon", "arena", "peak", "kv cache",
    "foreign pages", "target"], rows);
  var t = M.totals;
  table("table-totals", ["total", "MiB"], [
    ["PSS, all processes (shared pages once)", { text: mib(t.pss_bytes), value: t.pss_bytes }],
    ["PSS, segment processes", { text: mib(t.segments_pss_bytes), value: t.segments_pss_bytes }],
    ["RSS summed (shared pages repeated)", { text: mib(t.rss_bytes_double_counted), value: t.rss_bytes_double_counted }],
    ["weights", { text: mib(t.weight_bytes), value: t.weight_bytes }],
    ["shm arena file", { text: mib(t.arena_allocated_bytes), value: t.arena_allocated_bytes }]]);
  if (M.inproc) {
    var im = M.inproc.memory;
    table("table-inproc", ["in-process run of the same pipeline", "MiB"], [
      ["RSS", { text: mib(im.rss_bytes), value: im.rss_bytes }], ["PSS", { text: mib(im.pss_bytes), value: im.pss_bytes }],
      ["weights resident", { text: mib(im.rss_weights_bytes), value: im.rss_weights_bytes }],
      ["anonymous", { text: mib(im.rss_anon_bytes), value: im.rss_anon_bytes }],
      ["peak", { text: mib(im.peak_rss_bytes), value: im.peak_rss_bytes }]]);
  }
  C.appendChild(el("p", { class: "note" }, "decode " + M.run.decode_tokens_per_s.toFixed(1) + " tokens/s segmented" +
    (M.inproc ? ", " + M.inproc.decode_tokens_per_s.toFixed(1) + " in-process" : "") + ". " + (t.note || "")));
  if (M.router) { h2("Router: expert usage"); heatmap("chart-heatmap", M.router); }
}
function sweepSection() {
  if (!S.cuts) return;
  h2("Sweep: finer cuts");
  var labels = S.cuts.map(function (c) { return c.layer_groups + "g/" + c.expert_banks + "b"; });
  bars("chart-sweep-memory", "total PSS and largest process PSS by cut (layer groups / expert banks)", labels, [
    { name: "total PSS", color: "#4a78c2", values: S.cuts.map(function (c) { return c.total_pss_bytes / MiB; }) },
    { name: "largest process", color: "#e3a33b", values: S.cuts.map(function (c) { return c.max_process_pss_bytes / MiB; }) }], false, "MiB");
  bars("chart-sweep-speed", "decode tokens/s by cut", labels, [
    { name: "decode tokens/s", color: "#6bb36b", values: S.cuts.map(function (c) { return c.decode_tokens_per_s; }) }], false, "tokens/s");
  table("table-cuts", ["cut", "processes", "total PSS MiB", "largest MiB", "decode tok/s", "same logits"], S.cuts.map(function (c, i) {
    return [labels[i], String(c.processes), { text: mib(c.total_pss_bytes), value: c.total_pss_bytes },
      { text: mib(c.max_process_pss_bytes), value: c.max_process_pss_bytes },
      { text: c.decode_tokens_per_s.toFixed(1), value: c.decode_tokens_per_s }, c.identical_logits ? "yes" : "NO"];
  }));
  if (S.selective_loading && S.selective_loading.length) {
    h2("Selective expert loading");
    var sl = S.selective_loading, ml = sl.map(function (e) { return e.max_resident_experts ? "M=" + e.max_resident_experts : "all"; });
    bars("chart-resident-hit", "hit rate (%) and weights resident (MiB) against M", ml, [
      { name: "hit rate %", color: "#4a78c2", values: sl.map(function (e) { return 100 * e.hit_rate; }) },
      { name: "weights resident MiB", color: "#e3a33b", values: sl.map(function (e) { return e.weights_resident_bytes / MiB; }) }], false, "");
    bars("chart-resident-speed", "decode tokens/s against M", ml, [
      { name: "decode tokens/s", color: "#6bb36b", values: sl.map(function (e) { return e.decode_tokens_per_s; }) }], false, "tokens/s");
    table("table-resident", ["M", "hit rate", "loads", "evictions", "MiB read", "weights resident MiB", "decode tok/s", "output"], sl.map(function (e, i) {
      return [ml[i], (100 * e.hit_rate).toFixed(1) + "%", String(e.loads), String(e.evictions),
        { text: mib(e.bytes_loaded), value: e.bytes_loaded }, { text: mib(e.weights_resident_bytes), value: e.weights_resident_bytes },
        { text: e.decode_tokens_per_s.toFixed(1), value: e.decode_tokens_per_s }, e.identical_to_full_residency ? "bit-identical" : "DIFFERS"];
    }));
  }
  if (S.router) { h2("Expert residency: experts each layer touched over the prompts"); heatmap("chart-residency", S.router); }
}
try { memorySection(); sweepSection(); } catch (e) { errors.push(String(e && e.stack || e)); }
var out = document.getElementById("render-errors");
if (errors.length) { errors.forEach(function (m) { out.appendChild(el("div", { class: "bad" }, m)); }); }
else { var ok = el("div", { id: "render-ok", "data-charts": String(charts) }, "rendered " + charts + " charts"); ok.className = "note"; document.body.appendChild(ok); }
</script></body></html>
)HTML";

}  // namespace

std::string render_report_html(const nlohmann::json& memory, const nlohmann::json& sweep) {
  nlohmann::json d{{"memory", memory.is_null() ? nlohmann::json::object() : memory},
                   {"sweep", sweep.is_null() ? nlohmann::json::object() : sweep}};
  std::string data = d.dump();
  // Inside <script>, "</" could end the element early: escape it.
  std::string safe;
  for (size_t i = 0; i < data.size(); i++) {
    if (data[i] == '<' && i + 1 < data.size() && data[i + 1] == '/') {
      safe += "<\\/";
      i++;
    } else {
      safe += data[i];
    }
  }
  std::string page = kPage;
  page.replace(page.find("@DATA@"), 6, safe);
  return page;
}

}  // namespace segpipe
