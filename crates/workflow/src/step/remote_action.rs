//! Remote actions, `uses: OWNER/REPO[/PATH]@REF`: fetched on the host through the run's
//! [`crate::action::source::ActionSource`] (cached by commit), read there, and copied to the
//! VM once per VM under `_actions/OWNER/REPO/REF`, as GitHub's runner lays them out.

use super::{ActionProblem, EXTRACT_INTO, ResolvedAction};
use crate::action::manifest::ActionManifest;
use crate::action::source::RemoteRef;
use crate::job::JobState;
use crate::repository::archive_dir;
use std::path::PathBuf;

impl JobState<'_> {
    /// Fetches the remote action `uses` and copies it to the VM.
    pub(super) async fn remote_action(
        &mut self,
        uses: &str,
    ) -> Result<ResolvedAction, ActionProblem> {
        let unavailable = |e: &dyn std::fmt::Display| ActionProblem::Unavailable(e.to_string());
        // A malformed reference is an invalid action, as act counts it.
        let reference =
            RemoteRef::parse(uses).map_err(|e| ActionProblem::Invalid(e.to_string()))?;
        let fetched = self
            .env
            .actions
            .fetch(&reference)
            .await
            .map_err(|e| unavailable(&e))?;
        let manifest = ActionManifest::load(&fetched.dir)
            .map_err(|e| ActionProblem::Invalid(e.to_string()))?;
        let root = format!(
            "{}/{}/{}/{}",
            self.layout.actions, reference.owner, reference.repo, reference.git_ref
        );
        self.upload(&fetched.root, &root)
            .await
            .map_err(ActionProblem::Unavailable)?;
        let dir = match &reference.path {
            Some(path) => format!("{root}/{path}"),
            None => root,
        };
        Ok(ResolvedAction {
            manifest,
            dir,
            repository: reference.repository(),
            git_ref: reference.git_ref.clone(),
        })
    }

    /// Copies the host folder `from` to `to` on the VM, unless it already was.
    async fn upload(&mut self, from: &std::path::Path, to: &str) -> Result<(), String> {
        let key = format!("{}:{to}", self.session.vm().name);
        let copied = |set: &std::collections::HashSet<String>| set.contains(&key);
        if copied(&self.env.uploaded.lock().unwrap_or_else(|p| p.into_inner())) {
            return Ok(());
        }
        let from: PathBuf = from.to_path_buf();
        let archive = tokio::task::spawn_blocking(move || archive_dir(&from))
            .await
            .map_err(|e| format!("archiving the action failed: {e}"))?
            .map_err(|e| format!("archiving the action failed: {e}"))?;
        let mut out = Vec::new();
        let code = self
            .session
            .run_with_input(EXTRACT_INTO, &[to], &archive, &mut |_, b| {
                out.extend_from_slice(b)
            })
            .await
            .map_err(|e| format!("copying the action to the VM failed: {e}"))?;
        if code != 0 {
            return Err(format!(
                "copying the action to the VM failed: {}",
                String::from_utf8_lossy(&out).trim()
            ));
        }
        self.env
            .uploaded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key);
        Ok(())
    }
}
