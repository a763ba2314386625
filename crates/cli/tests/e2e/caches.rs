//! The cache and artifact services with the real clients: `actions/cache@v4` from the bundle,
//! and the official `@actions/artifact` client from npm (bundled by `scripts/test.sh` into
//! `tests/artifact-client/dist`) in two small JavaScript actions written here.

use crate::support::Azlin;
use azlin_testkit::ActionRepos;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Saves generated files under `gen-$KEY` (generating them when `$MAKE` is `yes`), restoring
/// by the key or by the prefix `gen-`; then prints whether the key hit and a digest of what
/// is in `gen/`.
const CACHE_WORKFLOW: &str = r#"on: push
jobs:
  cache:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - if: env.MAKE == 'yes'
        run: mkdir -p gen/sub && for i in 1 2 3; do head -c 1500000 /dev/urandom > gen/f$i; done && echo small > gen/sub/s
      - uses: actions/cache@v4
        id: cache
        with:
          path: gen
          key: gen-${{ env.KEY }}
          restore-keys: gen-
      - run: |
          echo "hit=${{ steps.cache.outputs.cache-hit }}"
          if [ -d gen ]; then echo "sum=$(cd gen && find . -type f | sort | xargs sha256sum | sha256sum | cut -c1-64)"; else echo "sum=none"; fi
"#;

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .current_dir(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A git repository holding `files`, made in `dir`.
fn repository(dir: &Path, files: &[(&str, &[u8])]) {
    for (path, bytes) in files {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    git(dir, &["init", "-q", "-b", "main"]);
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-qm", "init"]);
}

/// A folder with the cache workflow's repository in `app/`.
fn cache_repository() -> (tempfile::TempDir, PathBuf) {
    let parent = tempfile::tempdir().unwrap();
    let repo = parent.path().join("app");
    repository(
        &repo,
        &[(".github/workflows/cache.yml", CACHE_WORKFLOW.as_bytes())],
    );
    (parent, repo)
}

/// The value of `name=` printed by a step.
fn printed(stderr: &str, name: &str) -> String {
    let prefix = format!("{name}=");
    stderr
        .lines()
        .filter_map(|l| l.split("] ").nth(1))
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {name}= in\n{stderr}"))
        .trim()
        .to_string()
}

struct CacheRun {
    hit: String,
    sum: String,
    vm: String,
    caches: Value,
}

fn run_cache(
    azlin: &Azlin,
    provider: &str,
    repo: &Path,
    actions: &ActionRepos,
    env: &str,
    extra: &[&str],
) -> CacheRun {
    let env_file = repo.join("../run.env");
    std::fs::write(&env_file, env).unwrap();
    let workflow = repo.join(".github/workflows/cache.yml");
    let mut args = vec![
        "-o",
        "json",
        "run",
        workflow.to_str().unwrap(),
        "--provider",
        provider,
        "-C",
        repo.to_str().unwrap(),
        "--env-file",
        env_file.to_str().unwrap(),
    ];
    let url = actions.file_url();
    args.extend(["--actions-url", &url]);
    args.extend(extra);
    let run = azlin.run(&args).expect(0);
    let report = run.json();
    let job = &report["workflows"][0]["jobs"][0];
    CacheRun {
        hit: printed(&run.stderr, "hit"),
        sum: printed(&run.stderr, "sum"),
        vm: job["vm"].as_str().unwrap().to_string(),
        caches: job["caches"].clone(),
    }
}

fn outcomes(caches: &Value) -> Vec<String> {
    caches
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| {
                    format!(
                        "{} {}",
                        c["outcome"].as_str().unwrap(),
                        c["key"].as_str().unwrap()
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn actions_cache_restores_on_another_vm_by_key_and_by_prefix_and_never_for_another_repository() {
    let azlin = Azlin::new();
    let actions = ActionRepos::new();
    let (_parent, repo) = cache_repository();
    let run = |env: &str, extra: &[&str]| run_cache(&azlin, "nspawn", &repo, &actions, env, extra);

    let saved = run("MAKE=yes\nKEY=one\n", &["--repository", "octo/app"]);
    // actions/cache leaves `cache-hit` empty on a miss.
    assert_eq!(saved.hit, "");
    assert_eq!(outcomes(&saved.caches), ["miss gen-one", "saved gen-one"]);

    // A new run on a new VM restores the same bytes by the exact key.
    let exact = run("MAKE=no\nKEY=one\n", &["--repository", "octo/app"]);
    assert_ne!(exact.vm, saved.vm);
    assert_eq!(exact.hit, "true");
    assert_eq!(exact.sum, saved.sum);
    assert_eq!(outcomes(&exact.caches), ["hit gen-one"]);

    // Another key restores by the `gen-` prefix: not a hit of the key, the same bytes.
    let prefix = run("MAKE=no\nKEY=two\n", &["--repository", "octo/app"]);
    assert_eq!(prefix.hit, "false");
    assert_eq!(prefix.sum, saved.sum);
    assert_eq!(outcomes(&prefix.caches)[0], "restore-key-hit gen-two");

    // Another repository sees none of it.
    let stranger = run("MAKE=no\nKEY=one\n", &["--repository", "evil/app"]);
    assert_eq!((stranger.hit.as_str(), stranger.sum.as_str()), ("", "none"));
    assert_eq!(outcomes(&stranger.caches), ["miss gen-one"]);

    let listed = azlin
        .run(&["-o", "json", "cache", "list", "--repository", "octo/app"])
        .expect(0);
    let mut keys: Vec<String> = listed
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["key"].as_str().unwrap().to_string())
        .collect();
    keys.sort();
    assert_eq!(keys, ["gen-one", "gen-two"]);
    azlin.run(&["cache", "delete", "gen-two"]).expect(0);
    azlin.run(&["cache", "delete", "gen-two"]).expect(64);
    azlin.assert_no_vms();
}

#[test]
fn actions_cache_speaks_protocol_v1_too() {
    let azlin = Azlin::new();
    azlin.config("[cache]\nprotocol = \"v1\"\n");
    let actions = ActionRepos::new();
    let (_parent, repo) = cache_repository();
    let saved = run_cache(&azlin, "sim", &repo, &actions, "MAKE=yes\nKEY=one\n", &[]);
    assert_eq!(outcomes(&saved.caches), ["miss gen-one", "saved gen-one"]);
    let restored = run_cache(&azlin, "sim", &repo, &actions, "MAKE=no\nKEY=one\n", &[]);
    assert_eq!((restored.hit.as_str(), restored.sum), ("true", saved.sum));
}

/// The bundled artifact client actions, built by `scripts/test.sh`.
fn artifact_client(script: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/artifact-client/dist")
        .join(script);
    assert!(
        path.is_file(),
        "{} is missing: scripts/test.sh installs and bundles the artifact client",
        path.display()
    );
    path
}

const UPLOAD_ACTION: &str = "name: upload\ninputs:\n  name: {required: true}\n  files: {required: true}\n  root: {required: false}\nruns:\n  using: node20\n  main: index.js\n";
const DOWNLOAD_ACTION: &str = "name: download\ninputs:\n  name: {required: true}\n  path: {required: true}\nruns:\n  using: node20\n  main: index.js\n";

/// One job makes files (one of 50 MB) and uploads them; a job that needs it, on another VM,
/// downloads them and compares digests.
const ARTIFACT_WORKFLOW: &str = r#"on: push
jobs:
  up:
    runs-on: ubuntu-latest
    outputs:
      sum: ${{ steps.sum.outputs.sum }}
    steps:
      - uses: actions/checkout@v4
      - run: mkdir -p out/sub && head -c 52428800 /dev/urandom > out/big.bin && echo hello > out/a.txt && echo deep > out/sub/b.txt
      - id: sum
        run: echo "sum=$(cd out && sha256sum big.bin a.txt sub/b.txt | sha256sum | cut -c1-64)" >> "$GITHUB_OUTPUT"
      - uses: ./.github/actions/upload
        with:
          name: dist
          root: out
          files: |
            big.bin
            a.txt
            sub/b.txt
  down:
    needs: up
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - uses: ./.github/actions/download
        with:
          name: dist
          path: got
      - run: test "$(cd got && sha256sum big.bin a.txt sub/b.txt | sha256sum | cut -c1-64)" = "${{ needs.up.outputs.sum }}" && echo "sum=${{ needs.up.outputs.sum }}"
"#;

#[test]
fn artifacts_uploaded_by_one_job_download_byte_equal_on_another_vm_and_from_the_cli() {
    let upload = std::fs::read(artifact_client("upload.js")).unwrap();
    let download = std::fs::read(artifact_client("download.js")).unwrap();
    let repo = tempfile::tempdir().unwrap();
    repository(
        repo.path(),
        &[
            (
                ".github/workflows/artifacts.yml",
                ARTIFACT_WORKFLOW.as_bytes(),
            ),
            (
                ".github/actions/upload/action.yml",
                UPLOAD_ACTION.as_bytes(),
            ),
            (".github/actions/upload/index.js", &upload),
            (
                ".github/actions/download/action.yml",
                DOWNLOAD_ACTION.as_bytes(),
            ),
            (".github/actions/download/index.js", &download),
        ],
    );
    let azlin = Azlin::new();
    let workflow = repo.path().join(".github/workflows/artifacts.yml");
    let run = azlin
        .run(&[
            "-o",
            "json",
            "run",
            workflow.to_str().unwrap(),
            "--provider",
            "nspawn",
            "--vm-scope",
            "job",
            "-C",
            repo.path().to_str().unwrap(),
        ])
        .expect(0);
    let report = run.json();
    let jobs = report["workflows"][0]["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 2);
    assert_ne!(jobs[0]["vm"], jobs[1]["vm"], "the jobs ran on one VM");
    let sum = printed(&run.stderr, "sum");
    // The client says nothing while it downloads; azlin reports the progress in its log.
    assert!(
        run.stderr
            .contains("azlin: artifact 'dist' sent 52.4 of 52.4 MB (100%)"),
        "{}",
        run.stderr
    );
    let run_id = report["run_id"].as_str().unwrap();

    // The same bytes through the CLI.
    let listed = azlin
        .run(&["-o", "json", "artifacts", "list", run_id])
        .expect(0);
    assert_eq!(listed.json()[0]["name"], "dist");
    let out = tempfile::tempdir().unwrap();
    azlin
        .run(&[
            "artifacts",
            "download",
            run_id,
            "--dir",
            out.path().to_str().unwrap(),
        ])
        .expect(0);
    let digest = Command::new("sh")
        .current_dir(out.path().join("dist"))
        .args([
            "-c",
            "sha256sum big.bin a.txt sub/b.txt | sha256sum | cut -c1-64",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&digest.stdout).trim(), sum);
    azlin
        .run(&["artifacts", "download", run_id, "nothing"])
        .expect(64);
    azlin.assert_no_vms();
}
