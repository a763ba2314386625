//! A job that calls a reusable workflow (`jobs.<id>.uses`): a local file of the repository
//! (`./.github/workflows/X.yml`) or one of another repository
//! (`OWNER/REPO/.github/workflows/X.yml@REF`, fetched like a remote action). The called
//! workflow's jobs run as jobs of this run, with the call's `with:` as typed `inputs`, its
//! `secrets:` (a mapping, or `inherit`), the caller's `github` context, and sessions as
//! `--vm-scope` says (on the caller's VM with `workflow`). Its `on.workflow_call.outputs` become
//! the calling job's outputs.

use super::{Archive, Done, JobDone, Shared, WorkflowRun, skipped_report};
use crate::action::source::RemoteRef;
use crate::expression::{Object, Scope, Template, Value};
use crate::inputs::resolve_call_inputs;
use crate::job::slug;
use crate::model::{CallSecrets, Job, Workflow};
use crate::report::JobResult;
use crate::workspace::confine;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::Mutex;

/// How many workflows may be connected, the caller included (GitHub's limit on github.com).
const MAX_LEVELS: usize = 10;

impl WorkflowRun<'_> {
    /// Runs the reusable workflow `uses` for `job`, whose contexts are `contexts`.
    pub(super) async fn call(
        &self,
        job: &Job,
        uses: &str,
        contexts: &Object,
        shared: Option<&Mutex<Shared>>,
        archive: &Archive,
    ) -> JobDone {
        let called = match self.called_workflow(uses).await {
            Ok(called) => called,
            Err(e) => return self.call_failed(job, format!("jobs.{}.uses: {e}", job.id)),
        };
        let facts = match self.callee_facts(job, called, contexts) {
            Ok(facts) => facts,
            Err(e) => return self.call_failed(job, format!("calling {uses}: {e}")),
        };
        let selected = facts.workflow.jobs.iter().map(|j| j.id.clone()).collect();
        let child = WorkflowRun {
            facts: &facts,
            manager: self.manager,
            observer: self.observer,
            cancel: self.cancel,
            stop: self.stop.clone(),
            scope: self.scope,
            runner_labels: self.runner_labels,
            selected,
            actions: self.actions,
            uploaded: self.uploaded,
            services: self.services,
        };
        let (mut reports, sessions, done) = Box::pin(child.run_jobs(shared, archive)).await;
        for report in &mut reports {
            report.name = format!("{} / {}", job.id, report.name);
            report.id = job.id.clone();
        }
        let outputs = workflow_outputs(&facts.workflow, contexts, &facts.inputs, &done);
        JobDone::new(job, reports, sessions, outputs)
    }

    /// Reads the workflow `uses` names.
    async fn called_workflow(&self, uses: &str) -> Result<Workflow, String> {
        if self.facts.depth + 1 >= MAX_LEVELS {
            return Err(format!(
                "reusable workflows can be connected at most {MAX_LEVELS} levels deep"
            ));
        }
        let path: PathBuf = if uses.starts_with("./") {
            let root = self.facts.repo.root.to_string_lossy().into_owned();
            PathBuf::from(confine(&root, uses)?)
        } else {
            let reference = RemoteRef::parse(uses).map_err(|e| e.to_string())?;
            if reference.path.is_none() {
                return Err(format!(
                    "'{uses}' names no workflow file: expected OWNER/REPO/.github/workflows/FILE.yml@REF"
                ));
            }
            self.actions
                .fetch(&reference)
                .await
                .map_err(|e| e.to_string())?
                .dir
        };
        let called = Workflow::load(&path).map_err(|e| e.to_string())?;
        if !called.triggered_by("workflow_call") {
            return Err(format!(
                "{} is not a reusable workflow: its `on` has no workflow_call",
                path.display()
            ));
        }
        Ok(called)
    }

    /// The facts the called workflow runs with: the caller's, with the called workflow, its
    /// typed inputs and the secrets passed to it.
    fn callee_facts(
        &self,
        job: &Job,
        called: Workflow,
        contexts: &Object,
    ) -> Result<crate::context::RunFacts, String> {
        let scope = Scope::new(contexts);
        let evaluate = |what: &str, template: &str| {
            Template::parse(template)
                .and_then(|t| t.evaluate(&scope))
                .map_err(|e| format!("evaluating {what}: {}", e.message))
        };
        let mut given = Vec::new();
        for (name, template) in &job.with {
            given.push((name.clone(), evaluate(&format!("with.{name}"), template)?));
        }
        let declared = called
            .event_setting("workflow_call", "inputs")
            .cloned()
            .unwrap_or_default();
        let inputs = resolve_call_inputs(&declared, given).map_err(|e| e.to_string())?;
        let secrets = match &job.secrets {
            CallSecrets::None => Object::new(),
            CallSecrets::Inherit => self.facts.secrets.clone(),
            CallSecrets::Map(map) => {
                let mut secrets = Object::new();
                for (name, template) in map {
                    let value = evaluate(&format!("secrets.{name}"), template)?;
                    secrets.insert(name.clone(), value);
                }
                secrets
            }
        };
        let mut facts = self.facts.clone();
        facts.logs_dir = self.facts.logs_dir.join(slug(&job.id));
        facts.workflow = Arc::new(called);
        facts.inputs = inputs;
        facts.secrets = secrets;
        facts.depth += 1;
        Ok(facts)
    }

    fn call_failed(&self, job: &Job, message: String) -> JobDone {
        let report = skipped_report(job, job.id.clone(), message, JobResult::Failure);
        self.observer
            .job_finished(&self.facts.workflow.name, &report);
        JobDone::new(job, vec![report], Vec::new(), Object::new())
    }
}

/// The called workflow's outputs, evaluated with the `jobs` context of its finished jobs.
fn workflow_outputs(
    workflow: &Workflow,
    contexts: &Object,
    inputs: &Object,
    done: &std::collections::HashMap<String, Done>,
) -> Object {
    let mut jobs = Object::new();
    for (id, d) in done {
        jobs.insert(
            id.clone(),
            crate::context::needs_entry(d.result.as_str(), &d.outputs),
        );
    }
    let mut contexts = contexts.clone();
    contexts.insert("jobs", Value::Object(jobs));
    contexts.insert("inputs", Value::Object(inputs.clone()));
    let scope = Scope::new(&contexts);
    let mut outputs = Object::new();
    let declared = workflow.event_setting("workflow_call", "outputs");
    for (name, spec) in declared.into_iter().flat_map(Object::iter) {
        let Some(Value::String(template)) = spec.as_object().and_then(|s| s.get("value")) else {
            continue;
        };
        match Template::parse(template.as_str()).and_then(|t| t.render(&scope)) {
            Ok(value) => outputs.insert(name.clone(), Value::String(value)),
            Err(e) => {
                tracing::warn!(output = %name, error = %e.message, "cannot evaluate a workflow output")
            }
        }
    }
    outputs
}
