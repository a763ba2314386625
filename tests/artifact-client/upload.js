// A JavaScript action that uploads files with the official artifact client, unmodified.
// Inputs: name, files (one path per line, relative to root), root.
const { DefaultArtifactClient } = require('@actions/artifact');
const path = require('path');

function input(name) {
  return (process.env[`INPUT_${name.toUpperCase()}`] || '').trim();
}

async function main() {
  const root = path.resolve(input('root') || '.');
  const files = input('files').split('\n').map((f) => f.trim()).filter(Boolean)
    .map((f) => path.join(root, f));
  const client = new DefaultArtifactClient();
  const { id, size } = await client.uploadArtifact(input('name'), files, root);
  console.log(`uploaded artifact ${input('name')}: id ${id}, ${size} bytes`);
}

main().catch((e) => {
  console.log(`::error::${e.message}`);
  process.exit(1);
});
