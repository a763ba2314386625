//! A secret given to `azlin run` is used by the steps and appears nowhere: not in stdout or
//! stderr, not in step logs, the JSON report, state files or session records.

use crate::support::*;
use std::path::{Path, PathBuf};

const SECRET: &str = "s3cr3t-Value-4242-zq";

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                dirs.push(path);
            } else if kind.is_file() {
                files.push(path);
            }
        }
    }
    files
}

#[test]
fn a_secret_used_by_steps_is_found_in_no_output_log_or_file() {
    let azlin = Azlin::new();
    let home = azlin.home.path();
    let workflow = home.join("secret.yml");
    std::fs::write(
        &workflow,
        "on: push\njobs:\n  build:\n    runs-on: ubuntu-latest\n    env:\n      TOKEN: ${{ secrets.API_TOKEN }}\n    steps:\n      - name: prints it\n        run: echo \"token is $TOKEN\"\n      - name: gets it passed\n        env:\n          GIVEN: ${{ secrets.API_TOKEN }}\n        run: |\n          test \"$GIVEN\" = \"$TOKEN\" && test -n \"$GIVEN\" && echo given-ok\n          echo \"inline ${{ secrets.API_TOKEN }}\"\n",
    )
    .unwrap();
    let logs = home.join("logs");
    let secret = format!("API_TOKEN={SECRET}");
    let run = azlin.run(&[
        "run",
        workflow.to_str().unwrap(),
        "--provider",
        "sim",
        "--secret",
        &secret,
        "--log-dir",
        logs.to_str().unwrap(),
        "-o",
        "json",
    ]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    std::fs::write(home.join("report.json"), &run.stdout).unwrap();
    // The secret reached the steps (they compared it) and was masked where printed.
    assert!(run.stderr.contains("given-ok"), "{}", run.stderr);
    assert!(run.stderr.contains("token is ***"), "{}", run.stderr);
    assert!(!run.stdout.contains(SECRET), "stdout: {}", run.stdout);
    assert!(!run.stderr.contains(SECRET), "stderr: {}", run.stderr);

    let files = files_under(home);
    assert!(
        files.iter().any(|f| f.starts_with(&logs)),
        "step logs were written under {}",
        logs.display()
    );
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        assert!(
            !bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
            "the secret is in {}",
            file.display()
        );
    }
    azlin.assert_no_vms();
}
