//! Composite actions: their steps run in a [`Frame`] of their own (their `steps` and `inputs`
//! contexts, the calling step's environment, `github.action_path`), one after another with the
//! usual `if` rules; a failed step fails the calling step, not the job directly. Variables they
//! write to `GITHUB_ENV` and `GITHUB_PATH` reach the job, their step environment does not.
//! Their outputs are evaluated in their frame, also after a failure.

use super::{Execution, ResolvedAction, StepCall};
use crate::action::manifest::Runs;
use crate::context::object_of;
use crate::expression::{Object, Value};
use crate::job::{Frame, JobState};
use crate::model::Step;
use crate::observer::Origin;
use crate::report::StepReport;
use std::future::Future;
use std::pin::Pin;

/// How deeply composite actions may call each other (GitHub's limit).
const MAX_DEPTH: usize = 10;

impl JobState<'_> {
    /// Runs the composite `action` as the step `call`, with its evaluated `inputs`.
    pub(super) async fn composite(
        &mut self,
        call: &StepCall<'_>,
        action: &ResolvedAction,
        inputs: Vec<(String, String)>,
        exec: &mut Execution,
    ) {
        let Runs::Composite { steps } = &action.manifest.runs else {
            return;
        };
        if self.frame.depth >= MAX_DEPTH {
            exec.error = Some(format!(
                "composite actions are nested more than {MAX_DEPTH} deep at {}",
                action.manifest.path.display()
            ));
            return;
        }
        let frame = Frame {
            steps: Object::new(),
            inputs: object_of(&inputs),
            env: call.env.to_vec(),
            action_env: action.variables(),
            failed: false,
            depth: self.frame.depth + 1,
            log_prefix: format!("{}{:02}.", self.frame.log_prefix, call.step.index + 1),
        };
        let outer = self.enter_frame(frame);
        let mut failure = None;
        for step in steps {
            let report = self.inner_step(step).await;
            if failure.is_none() && self.frame.failed {
                failure = Some(report.name.clone());
            }
            self.env.observer.step_finished(
                Origin {
                    workflow: &self.env.facts.workflow.name,
                    job: &self.inst.name,
                    step: &format!("{} / {}", call.name, report.name),
                },
                &report,
            );
        }
        let mut outputs = Object::new();
        for (name, output) in &action.manifest.outputs {
            let Some(template) = &output.value else {
                continue;
            };
            match self.render(template).await {
                Ok(value) => outputs.insert(name.clone(), Value::String(value)),
                Err(e) => {
                    tracing::warn!(output = %name, error = %e, "cannot evaluate an action output")
                }
            }
        }
        self.leave_frame(outer);
        exec.outputs = outputs;
        if self.is_cancelled() {
            exec.cancelled = true;
            exec.error = Some("The run was cancelled".to_string());
        } else if let Some(step) = failure {
            exec.exit_code = Some(1);
            exec.error = Some(format!("the action's step '{step}' failed"));
        } else {
            exec.exit_code = Some(0);
        }
    }

    /// A step of a composite action (boxed: a composite action may use another).
    fn inner_step<'s>(
        &'s mut self,
        step: &'s Step,
    ) -> Pin<Box<dyn Future<Output = StepReport> + Send + 's>> {
        Box::pin(self.step(step))
    }
}
