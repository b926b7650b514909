// Loads editors/vscode/extension.js with stand-ins for the `vscode` module and
// vscode-languageclient (neither is needed to run this), activates it, and prints what it
// asked for as JSON: the server command for a given evt.path, and the documents it serves.
// Usage: node extension_check.js EXTENSION_JS [EVT_PATH]
"use strict";

const Module = require("module");

const [extensionPath, evtPath] = process.argv.slice(2);
const made = [];

class LanguageClient {
  constructor(id, name, serverOptions, clientOptions) {
    made.push({ id, name, serverOptions, clientOptions, started: false });
  }
  async start() { made[made.length - 1].started = true; }
  async stop() {}
}

const vscode = {
  workspace: {
    getConfiguration: (section) => ({
      get: (key) => (section === "evt" && key === "path" ? evtPath : undefined),
    }),
    onDidChangeConfiguration: () => ({ dispose() {} }),
    createFileSystemWatcher: (glob) => ({ glob, dispose() {} }),
  },
  window: { showErrorMessage: (text) => made.push({ error: text }) },
};
const stubs = {
  vscode,
  "vscode-languageclient/node": { LanguageClient, TransportKind: { stdio: 0 } },
};
const load = Module._load;
Module._load = function (request, parent, isMain) {
  if (Object.prototype.hasOwnProperty.call(stubs, request)) return stubs[request];
  return load.call(this, request, parent, isMain);
};

(async () => {
  const extension = require(extensionPath);
  const context = { subscriptions: [] };
  await extension.activate(context);
  await extension.deactivate();
  process.stdout.write(JSON.stringify({ made, subscriptions: context.subscriptions.length }));
})().catch((err) => {
  console.error((err && err.stack) || String(err));
  process.exit(1);
});
