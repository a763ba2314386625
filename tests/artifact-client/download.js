// A JavaScript action that downloads an artifact of this run with the official artifact
// client, unmodified. Inputs: name, path.
const { DefaultArtifactClient } = require('@actions/artifact');

function input(name) {
  return (process.env[`INPUT_${name.toUpperCase()}`] || '').trim();
}

async function main() {
  const client = new DefaultArtifactClient();
  const { artifact } = await client.getArtifact(input('name'));
  const { downloadPath } = await client.downloadArtifact(artifact.id, { path: input('path') });
  console.log(`downloaded artifact ${artifact.name} (${artifact.size} bytes) to ${downloadPath}`);
}

main().catch((e) => {
  console.log(`::error::${e.message}`);
  process.exit(1);
});
