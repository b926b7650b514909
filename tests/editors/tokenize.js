// Tokenizes files with the evt TextMate grammar as VS Code does: vscode-textmate on the
// Oniguruma WASM build. Reads {"grammar": PATH, "files": [PATH, ...]} as JSON on stdin and
// writes {PATH: [[line, start, end, text, scopes], ...]} as JSON on stdout (lines from 1,
// start and end in UTF-16 units of the line). tests/editors/test_textmate.py judges them.
"use strict";

const fs = require("fs");
const path = require("path");
const vsctm = require("vscode-textmate");
const oniguruma = require("vscode-oniguruma");

async function loadGrammar(file) {
  const wasmPath = path.join(path.dirname(require.resolve("vscode-oniguruma")), "onig.wasm");
  const wasm = fs.readFileSync(wasmPath);
  await oniguruma.loadWASM(wasm.buffer.slice(wasm.byteOffset, wasm.byteOffset + wasm.byteLength));
  const registry = new vsctm.Registry({
    onigLib: Promise.resolve({
      createOnigScanner: (patterns) => new oniguruma.OnigScanner(patterns),
      createOnigString: (text) => new oniguruma.OnigString(text),
    }),
    loadGrammar: async (scopeName) =>
      scopeName === "source.evt"
        ? vsctm.parseRawGrammar(fs.readFileSync(file, "utf8"), file)
        : null,
  });
  return registry.loadGrammar("source.evt");
}

function tokenize(grammar, text) {
  const out = [];
  let stack = vsctm.INITIAL;
  text.split(/\r\n|\r|\n/).forEach((line, i) => {
    const result = grammar.tokenizeLine(line, stack);
    for (const t of result.tokens) {
      const end = Math.min(t.endIndex, line.length);
      out.push([i + 1, t.startIndex, end, line.slice(t.startIndex, end), t.scopes]);
    }
    stack = result.ruleStack;
  });
  return out;
}

async function main() {
  const input = JSON.parse(fs.readFileSync(0, "utf8"));
  const grammar = await loadGrammar(input.grammar);
  if (!grammar) throw new Error(`no grammar in ${input.grammar}`);
  const out = {};
  for (const file of input.files) out[file] = tokenize(grammar, fs.readFileSync(file, "utf8"));
  process.stdout.write(JSON.stringify(out));
}

main().catch((err) => {
  console.error((err && err.stack) || String(err));
  process.exit(1);
});
