//! The built-in `actions/checkout`: copies the workflow's repository (`-C`, or the one the
//! workflow file is in) into the job's workspace, or into `path:` under it.

use super::{EXTRACT_INTO, Execution, StepCall};
use crate::job::JobState;
use crate::observer::Origin;
use crate::workspace::confine;
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;

impl JobState<'_> {
    pub(super) async fn checkout(
        &mut self,
        call: &StepCall<'_>,
        with: &[(String, String)],
        mut log: Option<Box<dyn Write + Send>>,
        exec: &mut Execution,
    ) {
        let StepCall { name, watch, .. } = call;
        let facts = self.env.facts;
        let mut inputs = BTreeMap::new();
        for (k, v) in with {
            match self.render(v).await {
                Ok(value) => {
                    inputs.insert(k.as_str(), value);
                }
                Err(e) => {
                    exec.error = Some(format!("evaluating with.{k}: {e}"));
                    return;
                }
            }
        }
        if let Some(repo) = inputs.get("repository").filter(|r| !r.is_empty())
            && !repo.eq_ignore_ascii_case(&facts.repository)
        {
            exec.error = Some(format!(
                "actions/checkout of another repository ({repo}) is not supported: azlin copies the workflow's own repository"
            ));
            return;
        }
        let path = inputs.get("path").map(String::as_str).unwrap_or_default();
        let dest = match confine(&self.layout.workspace, path) {
            Ok(dest) => dest,
            Err(e) => {
                exec.error = Some(format!("actions/checkout: {e}"));
                return;
            }
        };
        let repo = facts.repo.clone();
        let archive = self
            .env
            .archive
            .get_or_init(|| async move {
                tokio::task::spawn_blocking(move || repo.archive())
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r.map_err(|e| e.to_string()))
                    .map(Arc::new)
            })
            .await
            .clone();
        let archive = match archive {
            Ok(a) => a,
            Err(e) => {
                exec.error = Some(format!(
                    "cannot archive the repository {}: {e}",
                    facts.repo.root.display()
                ));
                return;
            }
        };
        let line = format!(
            "Copying {} ({} KiB) into {dest}",
            facts.repo.root.display(),
            archive.len() / 1024
        );
        if let Some(l) = &mut log {
            let _ = writeln!(l, "{line}");
            let _ = l.flush();
        }
        self.env.observer.output(
            Origin {
                workflow: &facts.workflow.name,
                job: &self.inst.name,
                step: name,
            },
            azlin_remote::OutputStream::Stdout,
            &line,
        );
        let mut out = Vec::new();
        let mut sink = |_, b: &[u8]| out.extend_from_slice(b);
        let args = [dest.as_str()];
        let result = tokio::select! {
            r = self.session.run_with_input(
                EXTRACT_INTO,
                &args,
                &archive,
                &mut sink,
            ) => r,
            interrupt = watch.interrupted() => {
                interrupt.record(exec);
                return;
            }
        };
        match result {
            Ok(code) => {
                exec.exit_code = Some(code);
                if code != 0 {
                    exec.error = Some(format!(
                        "copying the repository failed: {}",
                        String::from_utf8_lossy(&out).trim()
                    ));
                }
            }
            Err(e) => exec.error = Some(format!("copying the repository failed: {e}")),
        }
    }
}
