//! Local actions, `uses: ./PATH`: the folder is in the job's workspace on the VM (GitHub's
//! rule: an earlier step may have written it), and must stay under it. Its `action.yml` (or
//! `action.yaml`) is read from the VM.

use super::{ActionProblem, ResolvedAction};
use crate::action::manifest::ActionManifest;
use crate::job::JobState;
use crate::workspace::confine;
use azlin_remote::OutputStream;
use azlin_remote::quote::sh;
use std::path::Path;

/// What the reading program exits with when neither file exists.
const NOT_FOUND: i32 = 3;

impl JobState<'_> {
    /// Finds and reads the local action `uses`.
    pub(super) async fn local_action(
        &mut self,
        uses: &str,
    ) -> Result<ResolvedAction, ActionProblem> {
        let dir = confine(&self.layout.workspace, uses)
            .map_err(|e| ActionProblem::Unavailable(format!("uses: {e}")))?;
        let d = sh(&dir);
        let program = format!(
            "for f in action.yml action.yaml; do\n  if [ -f {d}/\"$f\" ]; then printf '%s\\n' \"$f\"; exec cat {d}/\"$f\"; fi\ndone\nexit {NOT_FOUND}\n"
        );
        let mut out = Vec::new();
        let mut errors = Vec::new();
        let code = self
            .session
            .run(&program, &mut |stream, bytes| match stream {
                OutputStream::Stdout => out.extend_from_slice(bytes),
                OutputStream::Stderr => errors.extend_from_slice(bytes),
            })
            .await
            .map_err(|e| {
                ActionProblem::Unavailable(format!(
                    "reading the action {uses} on the VM failed: {e}"
                ))
            })?;
        if code == NOT_FOUND {
            return Err(ActionProblem::Invalid(format!(
                "Can't find 'action.yml' or 'action.yaml' under '{dir}'. Did you forget to run actions/checkout before running your local action?"
            )));
        }
        if code != 0 {
            return Err(ActionProblem::Unavailable(format!(
                "reading the action {uses} on the VM failed (exit code {code}): {}",
                String::from_utf8_lossy(&errors).trim()
            )));
        }
        let text = String::from_utf8_lossy(&out);
        let (file, text) = text.split_once('\n').unwrap_or(("action.yml", ""));
        let manifest = ActionManifest::parse(Path::new(&format!("{dir}/{file}")), text)
            .map_err(|e| ActionProblem::Invalid(e.to_string()))?;
        Ok(ResolvedAction {
            manifest,
            dir,
            repository: String::new(),
            git_ref: String::new(),
        })
    }
}
