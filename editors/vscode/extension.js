// The evt extension's client: starts `evt lsp` (the language server of SPEC §17) over
// stdio for .evt files. Plain JavaScript, no build step; the one dependency is
// vscode-languageclient (run `npm install --omit=dev` in this folder once).
"use strict";

const vscode = require("vscode");
const { LanguageClient, TransportKind } = require("vscode-languageclient/node");

let client = null;

// The command that runs the server: `evt.path` (default "evt", looked up on PATH) with
// the `lsp` subcommand.
function serverOptions(config) {
  const command = config.get("path") || "evt";
  const run = { command, args: ["lsp"], transport: TransportKind.stdio };
  return { run, debug: run };
}

function clientOptions() {
  return {
    documentSelector: [
      { scheme: "file", language: "evt" },
      { scheme: "untitled", language: "evt" },
    ],
    outputChannelName: "evt",
    // an imported file changed on the disk: the server checks its importers again
    synchronize: { fileEvents: vscode.workspace.createFileSystemWatcher("**/*.evt") },
  };
}

async function start() {
  const config = vscode.workspace.getConfiguration("evt");
  client = new LanguageClient("evt", "evt", serverOptions(config), clientOptions());
  try {
    await client.start();
  } catch (err) {
    const path = config.get("path") || "evt";
    vscode.window.showErrorMessage(
      `evt: could not start the language server with "${path} lsp" (${err && err.message}). ` +
        "Set evt.path to the evt executable (for example .venv/bin/evt).");
  }
}

async function stop() {
  if (client) {
    const old = client;
    client = null;
    await old.stop();
  }
}

async function activate(context) {
  context.subscriptions.push(
    vscode.workspace.onDidChangeConfiguration(async (event) => {
      if (event.affectsConfiguration("evt.path")) {
        await stop();
        await start();
      }
    }));
  await start();
}

function deactivate() {
  return stop();
}

module.exports = { activate, deactivate, serverOptions, clientOptions };
