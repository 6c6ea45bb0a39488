// Starts `icdsl lsp` (the command in the setting icdsl.command) for .icd files.
const vscode = require("vscode");
const { LanguageClient } = require("vscode-languageclient/node");

let client;

function activate(context) {
  const [command, ...args] = vscode.workspace.getConfiguration("icdsl").get("command", ["icdsl", "lsp"]);
  client = new LanguageClient(
    "icdsl",
    "icdsl",
    { command, args },
    { documentSelector: [{ scheme: "file", language: "icdsl" }] }
  );
  context.subscriptions.push({ dispose: () => client && client.stop() });
  return client.start();
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
